"""L1 probe, C selection, stability selection and baselines on synthetic CETT-like data."""

import numpy as np
import pytest

from hneurons import probe as probe_mod
from hneurons.errors import HNeuronsError
from hneurons.probe import L1Probe, column_stats, h_neuron_frame, load_probe, save_probe, training_labels, xt_dot
from hneurons.probe_baselines import draw_layer_matched, draw_random_neurons, random_baselines
from hneurons.probe_selection import bootstrap_weights, check_C_grid, select_C, stability_selection


def cett_like(n=500, d=1200, n_pos=8, n_neg=4, seed=0):
    """Positive, skewed features (~1e-3, like mean CETT) with planted informative columns.

    Returns X float32[n, d], y int8[n] (25% positives), planted positive and negative column indices.
    """
    rng = np.random.default_rng(seed)
    X = rng.lognormal(mean=-7.0, sigma=0.5, size=(n, d)).astype(np.float32)
    y = (rng.random(n) < 0.25).astype(np.int8)
    cols = rng.choice(d, size=n_pos + n_neg, replace=False)
    pos, neg = np.sort(cols[:n_pos]), np.sort(cols[n_pos:])
    unit = np.exp(-7.0)
    X[:, pos] += (1.5 * unit * y[:, None] * rng.lognormal(0, 0.3, (n, n_pos))).astype(np.float32)
    X[:, neg] += (1.5 * unit * (1 - y[:, None]) * rng.lognormal(0, 0.3, (n, n_neg))).astype(np.float32)
    return X, y, pos, neg


@pytest.fixture(scope="module")
def generated():
    return cett_like(n=700)


@pytest.fixture(scope="module")
def data(generated):
    """Training part: the first 500 rows."""
    X, y, pos, neg = generated
    return X[:500], y[:500], pos, neg


@pytest.fixture(scope="module")
def heldout(generated):
    """Held-out part (same planted columns): the last 200 rows."""
    X, y, _, _ = generated
    return X[500:], y[500:]


def test_working_set_recovers_planted_neurons_and_matches_full_liblinear(data):
    X, y, pos, neg = data
    before = X.copy()
    fast = L1Probe(C=2000.0, screen_size=5, max_add=5).fit(X, y)
    full = L1Probe(C=2000.0, solver="liblinear").fit(X, y)
    assert np.array_equal(X, before), "the fit must not modify X"
    assert fast.n_rounds_ > 1 and fast.kkt_converged_
    assert fast.kkt_max_violation_ <= fast.kkt_tol
    assert set(pos) <= set(fast.positive_)
    assert set(neg) <= set(fast.support_) - set(fast.positive_)
    assert np.array_equal(fast.support_, full.support_)
    assert np.array_equal(fast.positive_, full.positive_)
    rel = np.abs(fast.coef_ - full.coef_).max() / np.abs(full.coef_).max()
    assert rel < 0.05
    agree = np.mean(fast.predict(X) == full.predict(X))
    assert agree > 0.98


def test_standardized_fit_matches_full_liblinear_on_zscored_data(data):
    X, y, pos, _ = data
    fast = L1Probe(C=0.05, standardize=True, screen_size=3, max_add=3).fit(X, y)
    mean, sd = X.astype(np.float64).mean(0), X.astype(np.float64).std(0)
    ref = L1Probe(C=0.05).fit(((X - mean) / sd).astype(np.float32), y)
    np.testing.assert_allclose(fast.mean_, mean, rtol=1e-6)
    np.testing.assert_allclose(fast.scale_, sd, rtol=1e-5)
    assert np.array_equal(fast.positive_, ref.positive_)
    assert set(pos) <= set(fast.positive_)
    z = ((X - mean) / sd) @ fast.coef_[0] + fast.intercept_[0]
    np.testing.assert_allclose(fast.decision_function(X), z, rtol=1e-6, atol=1e-8)


def test_small_C_selects_nothing_and_large_C_selects_more(data):
    X, y, _, _ = data
    counts = [L1Probe(C=C).fit(X, y).positive_.size for C in (1.0, 300.0, 3000.0, 30000.0)]
    assert counts[0] == 0
    assert counts == sorted(counts) and counts[-1] > counts[1]


def test_predict_api(data):
    X, y, _, _ = data
    fitted = L1Probe(C=2000.0).fit(X, y)
    proba = fitted.predict_proba(X[:20])
    assert proba.shape == (20, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    expected = X[:20].astype(np.float64) @ fitted.coef_[0] + fitted.intercept_[0]
    np.testing.assert_allclose(fitted.decision_function(X[:20]), expected, rtol=1e-9)
    assert fitted.predict(X[:20]).tolist() == (proba[:, 1] >= 0.5).astype(int).tolist()
    assert fitted.score(X, y) > 0.9
    assert fitted.get_params()["C"] == 2000.0
    with pytest.raises(HNeuronsError, match="features"):
        fitted.predict_proba(X[:, :10])


def test_zero_weight_rows_are_ignored(data):
    X, y, _, _ = data
    w = np.zeros(len(y))
    w[::2] = 1.0
    weighted = L1Probe(C=2000.0).fit(X, y, sample_weight=w)
    subset = L1Probe(C=2000.0).fit(X[::2], y[::2])
    assert np.array_equal(weighted.positive_, subset.positive_)
    np.testing.assert_allclose(weighted.coef_, subset.coef_, rtol=0.05, atol=1e-3 * np.abs(subset.coef_).max())


def test_training_labels_schemes():
    region = np.array(["answer", "other", "answer", "other"])
    label = np.array([1, 1, 0, 0])
    keep, y = training_labels(region, label, "3-vs-1")
    assert keep.all() and y.tolist() == [1, 0, 0, 0]
    keep, y = training_labels(region, label, "1-vs-1")
    assert keep.tolist() == [True, False, True, False] and y[keep].tolist() == [1, 0]
    with pytest.raises(HNeuronsError, match="labelling"):
        training_labels(region, label, "2-vs-2")
    with pytest.raises(HNeuronsError, match="region"):
        training_labels(np.array(["prompt"]), np.array([1]), "3-vs-1")


def test_streaming_passes_match_dense_numpy(data):
    X, y, _, _ = data
    r = np.random.default_rng(3).normal(size=len(y))
    np.testing.assert_allclose(xt_dot(X, r), X.astype(np.float64).T @ r, rtol=1e-10)
    R = np.column_stack([r, r ** 2])
    mu, sd = X.mean(0).astype(np.float64), X.std(0).astype(np.float64)
    Z = (X.astype(np.float64) - mu) / sd
    np.testing.assert_allclose(xt_dot(X, R, mu, sd), (Z.T @ R).T, rtol=1e-7, atol=1e-9)
    w = np.random.default_rng(4).random(len(y))
    mean, scale = column_stats(X, w)
    X64 = X.astype(np.float64)
    ref_mean = w @ X64 / w.sum()
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-10)
    np.testing.assert_allclose(scale, np.sqrt(w @ (X64 - ref_mean) ** 2 / w.sum()), rtol=1e-6)
    X64_before = X64.copy()
    column_stats(X64, w)
    assert np.array_equal(X64, X64_before), "column_stats must not modify a float64 input"
    const = np.ones((5, 2), dtype=np.float32)
    assert column_stats(const, np.ones(5))[1].tolist() == [1.0, 1.0]


def test_bad_input_is_a_one_line_error(data, monkeypatch):
    X, y, _, _ = data
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(HNeuronsError, match="C must be"):
            L1Probe(C=bad).fit(X, y)
    with pytest.raises(HNeuronsError, match=r"probe.C_grid: every C must be .* > 0 \(got 0\)"):
        check_C_grid([1.0, 0], "probe.C_grid")
    with pytest.raises(HNeuronsError, match="C_grid"):
        check_C_grid([], "probe.C_grid")
    with pytest.raises(HNeuronsError, match="no hallucinated"):
        L1Probe().fit(X, np.zeros(len(y)))
    with pytest.raises(HNeuronsError, match="no hallucinated"):
        L1Probe().fit(X, y, sample_weight=np.where(y == 1, 0.0, 1.0))
    with pytest.raises(HNeuronsError, match="solver"):
        L1Probe(solver="saga").fit(X, y)
    monkeypatch.setattr(probe_mod, "LIBLINEAR_MAX_NNZ", 100_000)
    with pytest.raises(HNeuronsError, match="int32"):
        L1Probe(solver="liblinear").fit(X, y)
    with pytest.raises(HNeuronsError, match="int32"):
        L1Probe(screen_size=400).fit(X, y)


def test_select_C_uses_the_papers_sum_and_skips_empty_sets(data, heldout):
    X, y, pos, _ = data
    X_val, y_val = heldout
    calls = []

    def task_accuracy(flat):
        calls.append(tuple(flat))
        return 0.9 - 0.001 * len(flat)  # suppressing more neurons costs task accuracy

    grid = [3000.0, 1.0, 30000.0, 1.0]
    sel = select_C(L1Probe(), X, y, X_val, y_val, grid, task_accuracy)
    table = sel.table
    assert [row["C"] for row in table] == [1.0, 3000.0, 30000.0]
    assert table[0]["n_positive"] == 0 and not table[0]["chosen"]
    assert len(calls) == len(set(calls)), "an identical neuron set is evaluated once"
    for row in table:
        assert row["score"] == pytest.approx(row["val_accuracy"] + row["task_accuracy"])
        assert row["per_mille"] == pytest.approx(1000 * row["n_positive"] / X.shape[1])
    eligible = [row for row in table if row["n_positive"] > 0]
    assert sel.table[sel.best_index]["score"] == max(row["score"] for row in eligible)
    assert sum(row["chosen"] for row in table) == 1
    assert np.array_equal(sel.best_probe.positive_, L1Probe(C=sel.best_C).fit(X, y).positive_)
    with pytest.raises(HNeuronsError, match="probe.C_grid: no C"):
        select_C(L1Probe(), X, y, X_val, y_val, [0.1, 1.0], None, where="probe.C_grid")


def test_bootstrap_weights_move_groups_together_and_keep_strata():
    groups = np.repeat(np.arange(40), 2)  # two rows (regions) per question
    strata = np.repeat(np.arange(40) % 2, 2)
    rng = np.random.default_rng(0)
    w = bootstrap_weights(groups, rng, strata)
    assert np.array_equal(w[0::2], w[1::2])
    assert w.sum() == len(groups)
    for s in (0, 1):
        assert w[strata == s].sum() == np.sum(strata == s)
    assert (w == 0).any() and (w > 1).any()
    again = bootstrap_weights(groups, np.random.default_rng(0), strata)
    assert np.array_equal(w, again)


def test_stability_selection_ranks_planted_neurons_first(data):
    X, y, pos, _ = data
    groups = np.arange(len(y)) // 2
    freq = stability_selection(L1Probe(C=2000.0), X, y, groups, n_boot=6, seed=1, strata=None)
    assert freq.shape == (X.shape[1],)
    assert freq[pos].min() >= 0.8
    others = np.setdiff1d(np.arange(X.shape[1]), pos)
    assert freq[others].mean() < 0.05
    assert np.array_equal(freq, stability_selection(L1Probe(C=2000.0), X, y, groups, n_boot=6, seed=1))
    assert not stability_selection(L1Probe(C=2000.0), X, y, groups, n_boot=0, seed=1).any()


def test_random_draws_exclude_h_neurons_and_match_layers():
    rng = np.random.default_rng(0)
    exclude = np.array([0, 1, 2, 45, 99])
    drawn = draw_random_neurons(100, exclude, 5, rng)
    assert drawn.size == 5 and not np.isin(drawn, exclude).any() and len(set(drawn)) == 5
    matched = draw_layer_matched(exclude, d_ffn=20, n_layers=5, rng=rng)
    assert np.bincount(matched // 20, minlength=5).tolist() == np.bincount(exclude // 20, minlength=5).tolist()
    assert not np.isin(matched, exclude).any()
    with pytest.raises(HNeuronsError, match="cannot draw"):
        draw_random_neurons(6, exclude, 5, rng)


def test_h_neurons_beat_random_neurons(data, heldout):
    X, y, pos, _ = data
    X_te, y_te = heldout
    from hneurons.probe_baselines import dense_probe_scores
    from hneurons.stats import auroc

    h_auc = auroc(y_te, dense_probe_scores(X[:, pos], y, X_te[:, pos]))
    runs = random_baselines(X, y, X_te, pos, seeds=[1, 2, 3, 4, 5], d_ffn=100)
    assert len(runs) == 5 and all(r.neurons.size == pos.size for r in runs)
    assert all(not np.isin(r.neurons, pos).any() for r in runs)
    rand_auc = [auroc(y_te, r.scores) for r in runs]
    assert h_auc > 0.9 and max(rand_auc) < 0.75
    again = random_baselines(X, y, X_te, pos, seeds=[1, 2, 3, 4, 5], d_ffn=100)
    assert all(np.array_equal(a.neurons, b.neurons) for a, b in zip(runs, again))
    matched = random_baselines(X, y, X_te, pos, seeds=[1], d_ffn=100, layer_matched=True)[0]
    assert np.bincount(matched.neurons // 100, minlength=12).tolist() == np.bincount(pos // 100, minlength=12).tolist()


@pytest.mark.parametrize("standardize", [False, True])
def test_save_and_load_roundtrip_without_pickle(data, tmp_path, standardize):
    X, y, _, _ = data
    fitted = L1Probe(C=0.05 if standardize else 2000.0, standardize=standardize).fit(X, y)
    save_probe(fitted, tmp_path, {"family": "synthetic"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probe.json", "probe.safetensors"]
    loaded, meta = load_probe(tmp_path)
    assert meta == {"family": "synthetic"}
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    assert np.array_equal(loaded.positive_, fitted.positive_)
    first = (tmp_path / "probe.safetensors").read_bytes()
    save_probe(fitted, tmp_path, {"family": "synthetic"})
    assert (tmp_path / "probe.safetensors").read_bytes() == first, "byte-identical on rewrite"
    with pytest.raises(HNeuronsError, match="not found"):
        load_probe(tmp_path / "missing")


def test_h_neuron_frame(data):
    X, y, pos, _ = data
    fitted = L1Probe(C=2000.0).fit(X, y)
    freq = np.zeros(X.shape[1])
    freq[pos] = 0.75
    frame = h_neuron_frame(fitted, d_ffn=100, frequency=freq)
    assert list(frame.columns) == ["layer", "neuron", "flat_index", "weight", "selection_frequency"]
    assert np.array_equal(frame["flat_index"], fitted.positive_)
    assert (frame["layer"] * 100 + frame["neuron"] == frame["flat_index"]).all()
    assert (frame["weight"] > 0).all()
    assert frame.set_index("flat_index").loc[pos, "selection_frequency"].eq(0.75).all()


# ------------------------------------------------------------------ the stage, end to end

N_LAYERS, D_FFN = 2, 48  # the tiny llama of tests/tiny.py
PLANTED = np.array([5, 50, 70])


def write_stage_inputs(root, model_dir, n_questions=90, seed=0):
    """A workspace for `stages.probe tiny`: params.yaml, activations, samples, model link."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    from hneurons.activations import write_activations
    from hneurons.generate import chat_prompt_ids
    from hneurons.models import load_causal_lm

    rng = np.random.default_rng(seed)
    ids = [f"q{i:03d}" for i in range(n_questions)]
    label = np.arange(n_questions) % 2
    pattern = np.array(["train", "train", "train", "validation", "test"])
    split = pattern[(np.arange(n_questions) // 2) % 5]  # per class: 3/5 train, 1/5 validation, 1/5 test
    frame = pd.DataFrame({
        "example_id": np.repeat(ids, 2), "dataset": "triviaqa", "label": np.repeat(label, 2).astype(np.int8),
        "region": ["answer", "other"] * n_questions, "split": np.repeat(split, 2),
        "n_tokens": rng.integers(1, 5, 2 * n_questions).astype(np.int32),
        "response_tokens": np.repeat(rng.integers(2, 20, n_questions), 2).astype(np.int32)})
    X = rng.lognormal(np.log(0.02), 0.4, (2 * n_questions, N_LAYERS * D_FFN)).astype(np.float32)
    hallucinated_answer = ((frame["region"] == "answer") & (frame["label"] == 1)).to_numpy()
    X[np.ix_(hallucinated_answer, PLANTED)] *= 3.0
    acts = root / "data/activations/tiny/instruct/triviaqa/tiny-instruct-triviaqa"
    write_activations(acts, [(frame.iloc[i:i + 40], X[i:i + 40]) for i in range(0, len(frame), 40)],
                      N_LAYERS, D_FFN, metadata={"fingerprint": "synthetic"})

    (root / "models/llm/tiny").mkdir(parents=True)
    (root / "models/llm/tiny/instruct").symlink_to(model_dir)
    _, tokenizer = load_causal_lm(model_dir)
    questions = [f"What is the capital of France {i}?" for i in range(n_questions)]
    samples = pa.table({
        "example_id": ids, "question": questions, "answers": [["Paris"]] * n_questions,
        "prompt_ids": [chat_prompt_ids(tokenizer, q) for q in questions], "split": split.tolist()})
    (root / "data/samples/tiny").mkdir(parents=True)
    pq.write_table(samples, root / "data/samples/tiny/triviaqa.parquet")

    with open(ROOT_PARAMS, encoding="utf-8") as handle:
        params = yaml.safe_load(handle)
    params["base"]["threads"] = 1
    params["probe"].update({"families": {"tiny": {}}, "C_grid": [0.3, 3, 30, 300], "n_bootstrap": 3,
                            "n_ci_boot": 50, "screen_size": 10,
                            "task": {"alpha": 0.0, "n_questions": 6, "max_new_tokens": 4, "batch_size": 8}})
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    return params


from pathlib import Path  # noqa: E402

ROOT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory, tiny_model_dir):
    """Run the probe stage twice in one synthetic workspace; return (root, outputs of run 1 as bytes)."""
    import os

    from stages import probe as stage

    root = tmp_path_factory.mktemp("probe_stage")
    write_stage_inputs(root, tiny_model_dir)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        stage.main(["tiny"])
        first = {p.relative_to(root).as_posix(): p.read_bytes()
                 for base in ("models/probe", "reports/probe") for p in sorted((root / base).rglob("*"))
                 if p.is_file()}
        stage.main(["tiny"])
    finally:
        os.chdir(cwd)
    return root, first


def test_stage_writes_h_neurons_probe_and_reports(stage_run):
    import json

    import pandas as pd

    from hneurons.io import read_parquet_metadata

    root, _ = stage_run
    model_out, report = root / "models/probe/tiny", root / "reports/probe/tiny"
    assert sorted(p.name for p in model_out.iterdir()) == [
        "h_neurons.parquet", "neurons_by_C.parquet", "probe.json", "probe.safetensors", "stability.parquet"]
    assert sorted(p.name for p in report.iterdir()) == [
        "baselines.csv", "c_grid.csv", "count_vs_C.csv", "count_vs_C.png", "metric_vs_C.png", "metrics.json",
        "per_layer.csv", "per_layer.png"]
    h = pd.read_parquet(model_out / "h_neurons.parquet")
    assert set(PLANTED) <= set(h["flat_index"])
    assert (h["layer"] * D_FFN + h["neuron"] == h["flat_index"]).all() and (h["weight"] > 0).all()
    assert h["selection_frequency"].between(0, 1).all()
    assert read_parquet_metadata(model_out / "h_neurons.parquet")["family"] == "tiny"
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n_h_neurons"] == len(h)
    assert metrics["per_mille"] == pytest.approx(1000 * len(h) / (N_LAYERS * D_FFN))
    assert metrics["chosen_C"] in [0.3, 3, 30, 300]
    grid = metrics["C_selection"]["grid"]
    assert [row["C"] for row in grid] == [0.3, 3, 30, 300] and sum(row["chosen"] for row in grid) == 1
    for row in grid:
        assert 0 <= row["task_accuracy"] <= 1
        assert row["score"] == pytest.approx(row["val_accuracy"] + row["task_accuracy"])
    test = metrics["test"]
    assert test["probe"]["accuracy"] > 0.8 and test["probe"]["auroc"] > 0.9
    lo, hi = test["probe"]["auroc_ci95"]
    assert lo <= test["probe"]["auroc"] <= hi
    assert test["h_neurons_l2"]["auroc"] > 0.9
    for variant in ("random", "random_layer_matched"):
        assert test[variant]["n_seeds"] == 5 and len(test[variant]["per_seed"]) == 5
        assert test[variant]["auroc"]["mean"] < test["h_neurons_l2"]["auroc"]
    assert set(test["length"]) == {"response_tokens", "response_and_answer_tokens"}
    assert test["length"]["response_tokens"]["auroc"] < 0.8  # length carries no signal in this data
    baselines = pd.read_csv(report / "baselines.csv")
    assert len(baselines) == 10
    per_layer = pd.read_csv(report / "per_layer.csv")
    assert per_layer["n_h_neurons"].sum() == len(h)
    by_C = pd.read_parquet(model_out / "neurons_by_C.parquet")
    assert set(by_C["C"]) <= {0.3, 3.0, 30.0, 300.0}


def test_stage_outputs_are_byte_identical_on_rerun(stage_run):
    root, first = stage_run
    second = {p.relative_to(root).as_posix(): p.read_bytes()
              for base in ("models/probe", "reports/probe") for p in sorted((root / base).rglob("*")) if p.is_file()}
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_saved_probe_reproduces_the_reported_test_accuracy(stage_run):
    import json

    from hneurons.activations import read_activations
    from hneurons.stats import accuracy

    root, _ = stage_run
    loaded, meta = load_probe(root / "models/probe/tiny")
    assert meta["d_ffn"] == D_FFN
    frame, X = read_activations(root / "data/activations/tiny/instruct/triviaqa",
                                {"split": "test", "region": "answer"})
    metrics = json.loads((root / "reports/probe/tiny/metrics.json").read_text())
    assert accuracy(frame["label"].to_numpy(), loaded.predict_proba(X)[:, 1]) == metrics["test"]["probe"]["accuracy"]


def test_stage_bad_params_and_too_few_rows_are_one_line_errors(tmp_path, tiny_model_dir, monkeypatch):
    import yaml

    from stages import probe as stage

    params = write_stage_inputs(tmp_path, tiny_model_dir, n_questions=10)
    monkeypatch.chdir(tmp_path)
    for key, value, pattern in (("C_grid", [1.0, -3], r"probe.C_grid: every C must be"),
                                ("labelling", "2-vs-2", r"probe.labelling='2-vs-2'"),
                                ("n_random_seeds", 2, r"probe.n_random_seeds=2: expected an integer >= 5")):
        bad = {**params, "probe": {**params["probe"], key: value}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
        with pytest.raises(HNeuronsError, match=pattern):
            stage.main(["tiny"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    with pytest.raises(HNeuronsError, match=r"split 'validation' has 1 hallucinated answer rows"):
        stage.main(["tiny"])
    with pytest.raises(HNeuronsError, match=r"^probe.families: 'other-family' is not listed \(tiny\)$"):
        stage.main(["other-family"])
    assert not (tmp_path / "models/probe").exists()


def test_working_set_reaches_full_liblinears_objective_when_many_columns_enter(data):
    """Labels without signal: dozens of noise columns enter over several KKT rounds; same optimum."""
    X, y, _, _ = data
    y = np.random.default_rng(0).permutation(y)

    def objective(fitted):
        margin = fitted.decision_function(X)
        return (np.abs(fitted.coef_).sum() + abs(fitted.intercept_[0])
                + fitted.C * np.logaddexp(0.0, -(2.0 * y - 1.0) * margin).sum())

    fast = L1Probe(C=100.0, screen_size=20, max_add=20).fit(X, y)
    full = L1Probe(C=100.0, solver="liblinear").fit(X, y)
    assert fast.support_.size > 40 and fast.n_rounds_ >= 3 and fast.kkt_converged_
    assert fast.effective_tol_ > fast.tol  # rescaled to liblinear's whole-matrix stopping rule
    assert objective(fast) == pytest.approx(objective(full), rel=1e-4)
    overlap = len(set(fast.support_) & set(full.support_)) / len(set(fast.support_) | set(full.support_))
    assert overlap > 0.9


def _activation_set(root, X, y, rows_per_part=40, dtype="float16"):
    """X, y written as an activation set of train answer rows (d_ffn 400), parts of ``rows_per_part`` rows."""
    import pandas as pd

    from hneurons.activations import write_activations

    n = len(y)
    frame = pd.DataFrame({"example_id": [f"q{i}" for i in range(n)], "dataset": "t", "label": y.astype(np.int8),
                          "region": "answer", "split": "train", "n_tokens": np.int32(3),
                          "response_tokens": np.int32(5)})
    blocks = [(frame.iloc[i:i + rows_per_part], X[i:i + rows_per_part]) for i in range(0, n, rows_per_part)]
    write_activations(root / "set" / "run", blocks, X.shape[1] // 400, 400, dtype)
    return root / "set"


def test_fit_streamed_from_disk_equals_the_in_memory_fit(tmp_path, monkeypatch):
    """Planted signal, float16 parts: the fit on rows read back from disk in small row blocks (never the whole
    matrix) has the in-memory fit's support, signs and weights, and finds the planted neurons."""
    from hneurons import activations
    from hneurons.activation_rows import RowMatrix, spill_activations
    from hneurons.activations import read_activations

    X, y, pos, neg = cett_like(n=300, d=1200, seed=3)
    acts = _activation_set(tmp_path, X, y)
    _, X_memory = read_activations(acts, {"split": "train"})
    frame, rows = spill_activations(acts, tmp_path, {"split": "train"})
    assert frame["label"].tolist() == y.tolist() and rows.shape == X_memory.shape
    original = probe_mod.row_blocks
    monkeypatch.setattr(probe_mod, "row_blocks", lambda n, c, itemsize=8, budget=0: original(n, c, itemsize, 64 << 10))
    monkeypatch.setattr(activations, "_BLOCK_BYTES", 16 << 10)

    def densify(*args, **kwargs):
        raise AssertionError("the streamed fit read the whole matrix")

    monkeypatch.setattr(RowMatrix, "__array__", densify)
    for C in (30.0, 300.0):
        memory = L1Probe(C=C, screen_size=20, max_add=20).fit(X_memory, y)
        streamed = L1Probe(C=C, screen_size=20, max_add=20).fit(rows, y)
        np.testing.assert_array_equal(streamed.coef_, memory.coef_)
        assert streamed.intercept_[0] == memory.intercept_[0] and streamed.n_rounds_ == memory.n_rounds_
        np.testing.assert_array_equal(streamed.predict_proba(rows), memory.predict_proba(X_memory))
    assert set(pos) <= set(memory.positive_) and set(neg) & set(np.flatnonzero(memory.coef_[0] < 0))


def test_random_baselines_read_columns_lazily_with_the_same_result(tmp_path):
    from hneurons.activation_rows import ActivationColumns
    from hneurons.activations import read_activations

    X, y, pos, _ = cett_like(n=120, d=1200, seed=4)
    acts = _activation_set(tmp_path, X, y, dtype="float32")
    _, X_memory = read_activations(acts)
    lazy = ActivationColumns(acts, {"split": "train"})
    evaluate = X_memory[:30]
    for matched in (False, True):
        eager = random_baselines(X_memory, y, evaluate, pos, [1, 2, 3], 400, layer_matched=matched)
        streamed = random_baselines(lazy, y, evaluate, pos, [1, 2, 3], 400, layer_matched=matched)
        for a, b in zip(eager, streamed):
            np.testing.assert_array_equal(a.neurons, b.neurons)
            np.testing.assert_array_equal(a.scores, b.scores)
