"""Weight drift and backward-transfer pieces on tiny random base/instruct pairs."""

import copy

import numpy as np
import pytest
import torch

from hneurons import origin
from hneurons.errors import HNeuronsError
from hneurons.models import ffn_blocks
from hneurons.stats import empirical_p
from tiny import make_model, make_tokenizer, perturbed_copy


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
def test_identical_models_have_zero_drift(arch):
    model = make_model(arch)
    up, down = origin.neuron_drift(model, copy.deepcopy(model))
    assert up.shape == down.shape == (2 * 48,)
    np.testing.assert_allclose(up, 0.0, atol=1e-12)
    np.testing.assert_allclose(down, 0.0, atol=1e-12)


def test_drift_matches_one_minus_cosine_of_rows_and_columns():
    base = make_model("llama", seed=0)
    inst = perturbed_copy(base, 0.1, seed=1)
    up, down = origin.neuron_drift(base, inst)
    b, i = ffn_blocks(base)[1], ffn_blocks(inst)[1]
    j = 7
    cos_up = torch.nn.functional.cosine_similarity(b.mlp.up_proj.weight[j], i.mlp.up_proj.weight[j], dim=0).detach()
    cos_down = torch.nn.functional.cosine_similarity(b.mlp.down_proj.weight[:, j], i.mlp.down_proj.weight[:, j],
                                                     dim=0).detach()
    assert up[48 + j] == pytest.approx(1 - float(cos_up), rel=1e-4)
    assert down[48 + j] == pytest.approx(1 - float(cos_down), rel=1e-4)


def test_gate_changes_do_not_count():
    base = make_model("llama", seed=0)
    inst = copy.deepcopy(base)
    with torch.no_grad():
        ffn_blocks(inst)[0].gate.weight.mul_(-1.0)
    up, down = origin.neuron_drift(base, inst)
    assert np.abs(up).max() < 1e-12 and np.abs(down).max() < 1e-12


def test_a_perturbed_neuron_ranks_least_stable():
    base = make_model("gemma3_text", seed=0)
    inst = perturbed_copy(base, 0.01, seed=2)
    layer, j = 1, 30
    with torch.no_grad():
        block = ffn_blocks(inst)[layer]
        block.up.weight[j] += torch.randn(block.up.weight.shape[1], generator=torch.Generator().manual_seed(3))
        block.down.weight[:, j] += torch.randn(block.down.weight.shape[0], generator=torch.Generator().manual_seed(4))
    table = origin.DriftTable.from_models(base, inst)
    flat = layer * 48 + j
    assert int(np.argmax(table.delta)) == flat
    assert table.rank[flat] == 0.0 and table.rank_layer[flat] == 0.0
    assert table.rank.max() == 1.0 and table.rank.min() == 0.0
    frame = table.frame([flat])
    assert frame.loc[flat, "is_selected"] and frame["is_selected"].sum() == 1
    assert (frame.loc[flat, "layer"], frame.loc[flat, "neuron"]) == (layer, j)


def test_zscore_average_and_rank_by_hand():
    up = np.array([0.0, 1.0, 2.0, 3.0])
    down = np.array([3.0, 3.0, 3.0, 7.0])
    delta = origin.drift_delta(up, down)
    z_up = (up - 1.5) / np.sqrt(1.25)
    z_down = (down - 4.0) / np.sqrt(3.0)
    np.testing.assert_allclose(delta, (z_up + z_down) / 2)
    rank = origin.normalized_rank(delta)
    # largest delta (index 3) -> 0, smallest (index 0) -> 1
    np.testing.assert_allclose(rank, [1.0, 2 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(origin.normalized_rank(np.array([1.0, 1.0, 0.0])), [0.25, 0.25, 1.0])


def test_per_layer_variant_ranks_within_each_layer():
    rng = np.random.default_rng(0)
    up = np.concatenate([rng.random(10), 100 + rng.random(10)])  # layer 1 drifts far more
    down = np.concatenate([rng.random(10), 100 + rng.random(10)])
    table = origin.DriftTable.from_drifts(up, down, d_ffn=10)
    assert table.rank[:10].min() > table.rank[10:].max()  # globally, layer 0 is the stable one
    for layer in range(2):
        part = table.rank_layer[layer * 10:(layer + 1) * 10]
        assert part.min() == 0.0 and part.max() == 1.0


def test_stable_set_is_significant_and_changed_set_is_not():
    rng = np.random.default_rng(1)
    up, down = rng.random(2000), rng.random(2000)
    table = origin.DriftTable.from_drifts(up, down, d_ffn=500)
    order = np.argsort(table.delta)
    stable = origin.set_drift_summary(table, order[:40])
    changed = origin.set_drift_summary(table, order[-40:])
    assert stable["n"] == 40 and stable["mean_rank"] > 0.95 and stable["p_value"] < 1e-6 and stable["t"] > 0
    assert changed["mean_rank"] < 0.05 and changed["p_value"] > 0.99
    report = origin.drift_report(table, order[:40], random_seeds=list(range(20)))
    assert report["global"]["h_neurons"]["mean_rank"] == stable["mean_rank"]
    assert 0.4 < report["global"]["random"]["mean_rank"]["mean"] < 0.6
    assert report["global"]["random"]["share_p_below_0.05"] <= 0.2
    assert report["per_layer"]["h_neurons"]["n"] == 40 and len(report["per_layer"]["random"]["runs"]) == 20


def test_random_sets_avoid_the_excluded_neurons_and_are_seeded():
    table = origin.DriftTable.from_drifts(np.arange(100.0), np.arange(100.0)[::-1] ** 2, d_ffn=50)
    exclude = np.arange(0, 100, 2)
    a = origin.random_set_summaries(table, exclude, 10, [5, 6])
    b = origin.random_set_summaries(table, exclude, 10, [5, 6])
    assert a == b and a[0] != a[1]
    with pytest.raises(HNeuronsError, match="cannot draw 60 random neurons from 50"):
        origin.random_set_summaries(table, exclude, 60, [0])


def test_empirical_p_is_one_sided_toward_stable_and_matches_the_runs():
    rng = np.random.default_rng(1)
    table = origin.DriftTable.from_drifts(rng.random(2000), rng.random(2000), d_ffn=500)
    order = np.argsort(table.delta)
    stable = origin.drift_report(table, order[:40], random_seeds=list(range(30)), layer_matched_seeds=[7, 8])
    changed = origin.drift_report(table, order[-40:], random_seeds=list(range(30)))
    for scope in ("global", "per_layer"):
        h, rand = stable[scope]["h_neurons"], stable[scope]["random"]
        # recomputed from the runs: (1 + #random sets with mean rank >= the H-Neurons') / (1 + n_sets)
        ranks = np.array([r["mean_rank"] for r in rand["runs"]])
        assert h["p_empirical"] == rand["p_empirical"] == (1 + np.sum(ranks >= h["mean_rank"])) / 31 == 1 / 31
        assert rand["n_as_stable"] == 0 and rand["n_sets"] == 30
        assert stable[scope]["random_layer_matched"]["n_sets"] == 2 and h["p_empirical_layer_matched"] == 1 / 3
        assert changed[scope]["h_neurons"]["p_empirical"] == 1.0                 # the wrong direction
        assert np.isnan(changed[scope]["h_neurons"]["p_empirical_layer_matched"])  # no layer-matched sets
        # each random set's own leave-one-out p
        for i, run in enumerate(rand["runs"]):
            others = np.delete(ranks, i)
            assert run["p_empirical"] == (1 + np.sum(others >= ranks[i])) / 30
        assert rand["share_empirical_p_below_0.05"] == np.mean([r["p_empirical"] < 0.05 for r in rand["runs"]])
        assert "p_value" in h and "t" in h                                         # Welch kept as secondary


def test_empirical_p_is_calibrated_where_welch_is_not():
    # heavy-tailed drift, no effect: the "H-Neurons" are just more random sets
    rng = np.random.default_rng(7)
    table = origin.DriftTable.from_drifts(rng.lognormal(sigma=1.5, size=2000), rng.lognormal(sigma=1.5, size=2000),
                                          d_ffn=500)
    null = origin.random_set_summaries(table, [], 22, range(1000))
    tested = origin.random_set_summaries(table, [], 22, range(1000, 1200))
    null_ranks = np.array([r["mean_rank"] for r in null])
    p = np.array([empirical_p(r["mean_rank"], null_ranks) for r in tested])
    assert 0.02 <= np.mean(p < 0.05) <= 0.09
    assert 0.4 <= np.mean(p < 0.5) <= 0.6
    assert np.mean([r["p_value"] < 0.05 for r in null]) > 0.1                   # Welch: ~18% false positives


def test_layer_matched_random_sets_keep_the_layer_counts():
    table = origin.DriftTable.from_drifts(np.arange(200.0), np.arange(200.0) ** 0.5, d_ffn=50)
    h = np.array([1, 2, 3, 60, 199])
    runs = origin.random_set_summaries(table, h, 5, [1, 2, 3], layer_matched=True)
    from hneurons.probe_baselines import draw_layer_matched
    for seed, run in zip([1, 2, 3], runs):
        drawn = draw_layer_matched(h, 50, 4, np.random.default_rng(seed))
        assert np.bincount(drawn // 50, minlength=4).tolist() == [3, 1, 0, 1] and not set(drawn) & set(h)
        assert run["mean_rank"] == pytest.approx(table.rank[drawn].mean())
    with pytest.raises(HNeuronsError, match="layer-matched"):
        origin.random_set_summaries(table, h, 4, [1], layer_matched=True)


def test_out_of_range_neurons_are_one_line_errors():
    table = origin.DriftTable.from_drifts(np.zeros(8), np.zeros(8), d_ffn=4)
    with pytest.raises(HNeuronsError, match=r"neuron indices must lie in \[0, 8\)"):
        origin.set_drift_summary(table, [3, 8])


def test_mismatched_pairs_are_one_line_errors_naming_both():
    llama, gemma = make_model("llama"), make_model("gemma3_text")
    with pytest.raises(HNeuronsError, match=r"^base model B/base and instruct model I/inst differ in architecture "
                                            r"or FFN shape \(model_type gemma3_text vs llama\)"):
        origin.check_pair(gemma, llama, "B/base", "I/inst")
    wide = make_model("llama", d_ffn=64)
    with pytest.raises(HNeuronsError, match=r"d_ffn 48 vs 64"):
        origin.check_pair(llama, wide, "b", "i")
    assert origin.check_pair(llama, copy.deepcopy(llama), "b", "i") == {
        "model_type": "llama", "n_layers": 2, "d_ffn": 48, "d_model": 32}


def test_base_prompt_and_newline_cut():
    tokenizer = make_tokenizer()
    assert origin.base_prompt("Who wrote Hamlet?") == "Who wrote Hamlet?\nAnswer:"
    ids = origin.base_prompt_ids(tokenizer, "Who wrote Hamlet?")
    assert tokenizer.decode(ids) == "Who wrote Hamlet?\nAnswer:"
    lines = origin.line_tokens(tokenizer)
    assert all("\n" in tokenizer.decode([int(i)]) for i in lines.newline)
    assert all(not tokenizer.decode([int(i)]).strip() for i in lines.blank) and set(lines.newline) & set(lines.blank)
    generated = tokenizer(" Paris is the capital\nThe quick brown fox\n").input_ids
    cut = origin.cut_at_newline(generated, lines)
    assert tokenizer.decode(cut) == " Paris is the capital"
    # leading blank lines do not stop the answer; the first line break after it does
    opened = tokenizer("\n \nParis\nLondon").input_ids
    assert tokenizer.decode(origin.cut_at_newline(opened, lines)) == "\n \nParis"
    assert origin.cut_at_newline(tokenizer("\n\n").input_ids, lines) == tokenizer("\n\n").input_ids
    no_newline = tokenizer(" Paris").input_ids
    assert origin.cut_at_newline(no_newline, lines) == no_newline


def test_unchanged_probe_transfers_with_auroc_and_ci():
    from hneurons.probe import L1Probe

    rng = np.random.default_rng(0)
    n, d = 400, 30
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 3] += 1.5 * y  # one informative neuron
    probe = L1Probe(C=0.5).fit(X, y)
    X_base = rng.normal(size=(n, d)).astype(np.float32)
    y_base = rng.integers(0, 2, n)
    X_base[:, 3] = 2.0 * X_base[:, 3] + 4.0 * y_base + 5.0  # rescaled and shifted: AUROC must not care
    out = origin.probe_transfer(probe, X_base, y_base, n_boot=200, seed=0)
    assert out["auroc"] > 0.7 and out["n"] == n
    assert out["auroc_ci95"][0] <= out["auroc"] <= out["auroc_ci95"][1]
    flipped = origin.probe_transfer(probe, X_base, 1 - y_base, n_boot=0, seed=0)
    assert flipped["auroc"] == pytest.approx(1 - out["auroc"])
    assert np.isnan(flipped["auroc_ci95"][0])


def test_strip_plot_is_a_deterministic_png(tmp_path):
    ranks = np.linspace(0.1, 0.9, 25)
    title = f"mean rank {ranks.mean():.3f}, {origin.significance_label(0.004)}"
    origin.plot_drift_strip(ranks, title, tmp_path / "a.png")
    origin.plot_drift_strip(ranks, title, tmp_path / "b.png")
    data = (tmp_path / "a.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data == (tmp_path / "b.png").read_bytes()
    assert title == "mean rank 0.500, p < 0.01"
    assert origin.significance_label(0.2) == "n.s." and origin.significance_label(float("nan")) == "n/a"


# ------------------------------------------------------------------ the stage, end to end

import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pyarrow as pa  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _save_materialized(model, tokenizer, tmp_path: Path, dest: Path) -> None:
    from hneurons.materialize import materialize

    source = tmp_path / f"src-{dest.parent.name}-{dest.name}"
    model.save_pretrained(source)
    tokenizer.save_pretrained(source)
    materialize({"kind": "path", "path": str(source)}, dest, tmp_path / "cache")


def _prepared_tables(directory: Path) -> None:
    from hneurons.answers import normalize
    from hneurons.data import schema_for
    from hneurons.io import write_parquet
    from tiny import CORPUS

    easy = sorted(set(normalize(" ".join(CORPUS)).split())) + list("bcdefghijklmnopqrstuvwxyz")
    for name in ("triviaqa", "nq_open", "bioasq"):
        rows = [{"example_id": f"{name}_{i:03d}", "question": f"Question {i} about {name}?",
                 "answers": easy if i % 2 == 0 else ["zzqqxxvv"]} for i in range(24)]
        write_parquet(directory / f"{name}.parquet", pa.Table.from_pylist(rows, schema=schema_for(name)))


def _instruct_side(project: Path, n_features: int, d_ffn: int) -> None:
    """Samples splits, synthetic instruct activations and a probe fitted on them."""
    import pandas as pd

    from hneurons.activations import write_activations
    from hneurons.cett import META_COLUMNS
    from hneurons.io import write_parquet
    from hneurons.probe import L1Probe, save_probe, training_labels

    ids = [f"triviaqa_{i:03d}" for i in range(24)]
    splits = ["train"] * 8 + ["validation"] * 4 + ["test"] * 12
    write_parquet(project / "data/samples/tiny/triviaqa.parquet",
                  pa.table({"example_id": ids, "split": splits}))
    rng = np.random.default_rng(0)
    rows, feats = [], []
    for i in range(40):
        label = i % 2
        for region in ("answer", "other"):
            rows.append({"example_id": f"q{i}", "dataset": "triviaqa", "label": label, "region": region,
                         "split": "train", "n_tokens": 3, "response_tokens": 5})
            x = rng.random(n_features).astype(np.float32) * 0.1
            x[[5, 50, 70]] += rng.random(3).astype(np.float32) * (label == 1 and region == "answer")
            feats.append(x)
    frame = pd.DataFrame(rows, columns=list(META_COLUMNS))
    X = np.stack(feats)
    meta = {"span_rule": "default", "readout": "mean", "region_variant": "with_prompt"}
    write_activations(project / "data/activations/tiny/instruct/triviaqa/tiny-instruct-triviaqa", [(frame, X)],
                      n_features // d_ffn, d_ffn, "float32", meta)
    keep, y = training_labels(frame["region"].to_numpy(), frame["label"].to_numpy(), "3-vs-1")
    probe = L1Probe(C=10.0).fit(X, y)
    assert probe.positive_.size >= 2
    save_probe(probe, project / "models/probe/tiny")


def _origin_project(tmp_path: Path, instruct_d_ffn: int = 48) -> Path:
    project = tmp_path / "project"
    tokenizer = make_tokenizer()
    base = make_model("llama", vocab_size=len(tokenizer), seed=0)
    _save_materialized(base, tokenizer, tmp_path, project / "models/llm/tiny/base")
    if instruct_d_ffn == 48:
        instruct = perturbed_copy(base, 0.05, seed=9)
    else:
        instruct = make_model("llama", vocab_size=len(tokenizer), seed=1, d_ffn=instruct_d_ffn)
    _save_materialized(instruct, tokenizer, tmp_path, project / "models/llm/tiny/instruct")
    _save_materialized(instruct, tokenizer, tmp_path, project / "models/llm/lonely/instruct")
    _prepared_tables(project / "data/prepared")
    _instruct_side(project, 2 * 48, 48)
    params = {
        "base": {"seed": 4, "threads": 1, "cache_dir": str(tmp_path / "hcache")},
        "compute": {"families": {}, "device": "cpu", "dtype": "float32"},
        "probe": {"dataset": "triviaqa", "labelling": "3-vs-1", "baseline_C": 1.0, "n_random_seeds": 5},
        "origin": {"families": {"tiny": {}, "lonely": {}}, "datasets": ["triviaqa", "nq_open", "bioasq"],
                   "n_questions": {"triviaqa": 12, "nq_open": 10, "bioasq": 16},
                   "decoding": {"temperature": 1.0, "top_k": 50, "top_p": 0.9, "max_new_tokens": 10},
                   "batch_size": 8, "extract_batch_size": 4, "max_per_class": None, "n_boot": 50,
                   "n_random_sets": 10},
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return project


def _run_origin(project: Path, family: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "stages.origin", family], cwd=project, env=env,
                          capture_output=True, text=True)


def test_origin_stage_reports_drift_and_transfer_reproducibly(tmp_path):
    import pandas as pd

    project = _origin_project(tmp_path)
    result = _run_origin(project, "tiny")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((project / "reports/origin/tiny.json").read_text())
    h = metrics["n_h_neurons"]
    assert metrics["n_neurons"] == 96 and h >= 2
    drift = metrics["drift"]["global"]
    assert drift["h_neurons"]["n"] == h and 0 <= drift["h_neurons"]["mean_rank"] <= 1
    assert drift["random"]["n_sets"] == 10 and set(metrics["drift"]) >= {"global", "per_layer"}
    ranks = pd.read_csv(project / "reports/origin/tiny/h_neuron_ranks.csv")
    assert len(ranks) == h and ranks["rank"].mean() == pytest.approx(drift["h_neurons"]["mean_rank"], rel=1e-5)
    table = pd.read_parquet(project / "data/origin/tiny/drift.parquet")
    assert len(table) == 96 and table["is_h_neuron"].sum() == h
    responses = pd.read_parquet(project / "data/origin/tiny/base_responses.parquet")
    trivia = responses[responses["dataset"] == "triviaqa"]
    assert set(trivia["example_id"]) == {f"triviaqa_{i:03d}" for i in range(12, 24)}  # outside train/validation
    assert responses.groupby("dataset").size().to_dict() == {"triviaqa": 12, "nq_open": 10, "bioasq": 16}
    lines = origin.line_tokens(make_tokenizer())
    for ids in responses["response_ids"]:  # no line break once the answer has begun
        begun = np.flatnonzero(~np.isin(ids, lines.blank))
        assert begun.size == 0 or not np.isin(ids[begun[0] + 1:], lines.newline).any()
    assert all(p.endswith("\nAnswer:") for p in responses["prompt_ids"].map(lambda ids: make_tokenizer().decode(ids)))
    for name, entry in metrics["transfer"].items():
        assert entry["n_correct"] + entry["n_wrong"] + entry["n_refusal"] == entry["n_questions"]
        selected = responses[(responses["dataset"] == name) & responses["selected"]]
        assert (selected["label"] == 0).sum() == (selected["label"] == 1).sum() == entry["n_selected"] // 2
        if entry["auroc"] is not None:
            assert 0 <= entry["auroc"] <= 1 and entry["random_neurons"]["n_neurons"] == h
            assert len(entry["random_neurons"]["per_seed"]) == 5
    assert any(entry["auroc"] is not None for entry in metrics["transfer"].values())
    assert (project / "reports/origin/tiny/drift_strip.png").read_bytes()[:4] == b"\x89PNG"
    outputs = sorted(p for d in ("reports/origin", "data/origin") for p in (project / d).rglob("*") if p.is_file())
    first = {p: p.read_bytes() for p in outputs}
    again = _run_origin(project, "tiny")
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.read_bytes() for p in outputs} == first


def test_family_without_base_is_skipped_with_one_line(tmp_path):
    project = _origin_project(tmp_path)
    result = _run_origin(project, "lonely")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((project / "reports/origin/lonely.json").read_text())
    assert metrics["skipped"].startswith("origin skipped for family 'lonely': no base model")
    assert "\n" not in metrics["skipped"]
    assert (project / "data/origin/lonely/skipped.txt").read_text().strip() == metrics["skipped"]


def test_mismatched_pair_stops_the_stage_with_one_line_naming_both(tmp_path):
    project = _origin_project(tmp_path, instruct_d_ffn=64)
    result = _run_origin(project, "tiny")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last == ("error: base model models/llm/tiny/base and instruct model models/llm/tiny/instruct differ in "
                    "architecture or FFN shape (d_ffn 48 vs 64); origin needs a matched pair")
    assert not (project / "reports/origin/tiny.json").exists()


def test_question_counts_are_one_number_or_one_per_dataset():
    from stages import origin
    from stages.config import from_mapping
    from tests.pipeline_utils import tiny_params

    params = {**tiny_params(),
              "origin": {"families": {"f": {}}, "datasets": ["triviaqa", "bioasq"], "n_questions": 7,
                         "decoding": {"temperature": 1.0, "max_new_tokens": 4}, "batch_size": 2,
                         "extract_batch_size": 2, "max_per_class": None, "n_boot": 0, "n_random_sets": 0}}
    read_config = lambda raw: origin.read_config(from_mapping(raw))  # noqa: E731
    assert read_config(params)["n_questions"] == {"triviaqa": 7, "bioasq": 7}
    params["origin"]["n_questions"] = {"triviaqa": 9, "bioasq": 3, "nq_open": 1}
    assert read_config(params)["n_questions"] == {"triviaqa": 9, "bioasq": 3}
    params["origin"]["n_questions"] = {"triviaqa": 9}
    with pytest.raises(HNeuronsError, match=r"^origin.n_questions: no count for bioasq$"):
        read_config(params)
    params["origin"]["n_questions"] = {"triviaqa": 9, "bioasq": 0}
    with pytest.raises(HNeuronsError, match=r"^origin.n_questions.bioasq=0: expected an integer >= 1$"):
        read_config(params)


def _drop_positive_weights(directory: Path) -> None:
    from hneurons.probe import load_probe, save_probe

    probe, metadata = load_probe(directory)
    probe.coef_ = -np.abs(probe.coef_)
    assert probe.positive_.size == 0
    save_probe(probe, directory, metadata)


def _tree(project: Path, *roots: str) -> dict[str, bytes]:
    return {str(p.relative_to(project)): p.read_bytes() for root in roots for p in (project / root).rglob("*")
            if p.is_file()}


def test_a_probe_without_h_neurons_stops_origin_with_one_line_and_keeps_its_outputs(tmp_path):
    project = _origin_project(tmp_path)
    assert _run_origin(project, "tiny").returncode == 0
    before = _tree(project, "data/origin", "reports/origin")
    _drop_positive_weights(project / "models/probe/tiny")
    result = _run_origin(project, "tiny")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: models/probe/tiny: the probe has no positive weights (no H-Neurons to analyse); widen probe.C_grid")
    assert _tree(project, "data/origin", "reports/origin") == before      # nothing rewritten, no temp siblings


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
def test_drift_against_a_stored_checkpoint_equals_the_in_memory_drift(tmp_path, arch):
    from hneurons.checkpoint import Checkpoint

    base = make_model(arch, seed=0)
    inst = perturbed_copy(base, 0.1, seed=1) if arch != "gpt2" else copy.deepcopy(base)
    if arch == "gpt2":
        with torch.no_grad():
            for block in ffn_blocks(inst):
                block.up.weight.add_(0.1 * torch.randn(block.up.weight.shape, generator=torch.Generator().manual_seed(1)))
    inst.save_pretrained(tmp_path / "inst")
    stored = Checkpoint(tmp_path / "inst")
    assert origin.check_pair(base, stored, "b", "i") == origin.check_pair(base, inst, "b", "i")
    up, down = origin.neuron_drift(base, stored)
    ref_up, ref_down = origin.neuron_drift(base, inst)
    np.testing.assert_array_equal(up, ref_up)
    np.testing.assert_array_equal(down, ref_down)
    assert up.max() > 1e-4


def test_a_stored_checkpoint_of_another_shape_is_a_one_line_error(tmp_path):
    from hneurons.checkpoint import Checkpoint

    make_model("llama", d_ffn=64).save_pretrained(tmp_path / "wide")
    llama = make_model("llama")
    with pytest.raises(HNeuronsError, match=r"differ in architecture or FFN shape \(d_ffn 48 vs 64\)"):
        origin.check_pair(llama, Checkpoint(tmp_path / "wide"), "b", "i")
    with pytest.raises(HNeuronsError, match=r"wide: model\.layers\.0\.mlp\.up_proj\.weight has shape \(64, 32\)"):
        origin.neuron_drift(llama, Checkpoint(tmp_path / "wide"))
    make_model("gemma3_text").save_pretrained(tmp_path / "gemma")
    with pytest.raises(HNeuronsError, match=r"model_type llama vs gemma3_text"):
        origin.check_pair(llama, Checkpoint(tmp_path / "gemma"), "b", "i")


def test_checkpoint_names_resolve_through_a_different_decoder_prefix(tmp_path):
    from safetensors.torch import save_file

    from hneurons.checkpoint import Checkpoint

    (tmp_path / "config.json").write_text('{"model_type": "gemma3", "text_config": {"num_hidden_layers": 2}}')
    weight = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    save_file({"language_model.model.layers.1.mlp.up_proj.weight": weight}, str(tmp_path / "model.safetensors"))
    stored = Checkpoint(tmp_path)
    assert stored.n_layers == 2
    assert stored.shape("model.language_model.layers.1.mlp.up_proj.weight") == (2, 3)
    torch.testing.assert_close(stored.tensor("model.language_model.layers.1.mlp.up_proj.weight"), weight)
    with pytest.raises(HNeuronsError, match=r"no tensor for parameter 'model.layers.0.mlp.up_proj.weight'"):
        stored.tensor("model.layers.0.mlp.up_proj.weight")


def test_drift_against_a_checkpoint_holds_at_most_two_layers_of_instruct_weights(tmp_path):
    import weakref

    from hneurons.checkpoint import Checkpoint

    class Counting(Checkpoint):
        """Counts the bytes of the tensors it has handed out that are still alive."""

        live = peak = total = 0

        def _free(self, n: int) -> None:
            self.live -= n

        def tensor(self, name):
            out = super().tensor(name)
            n = out.numel() * out.element_size()
            self.live, self.total = self.live + n, self.total + n
            self.peak = max(self.peak, self.live)
            weakref.finalize(out, self._free, n)
            return out

    base = make_model("llama", seed=0, n_layers=6)
    perturbed_copy(base, 0.1, seed=1).save_pretrained(tmp_path / "inst")
    stored = Counting(tmp_path / "inst")
    origin.neuron_drift(base, stored)
    layer = sum(m.weight.numel() * m.weight.element_size() for m in (ffn_blocks(base)[0].up, ffn_blocks(base)[0].down))
    assert stored.total == 6 * layer                 # every layer's up and down weights were read once
    assert stored.peak <= 2 * layer < stored.total   # never more than two layers at a time
    assert stored.live == 0
