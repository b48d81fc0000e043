"""Weight drift and backward-transfer pieces on tiny random base/instruct pairs."""

import copy

import numpy as np
import pytest
import torch

from hneurons import origin
from hneurons.errors import HNeuronsError
from hneurons.models import ffn_blocks
from tiny import make_model, make_tokenizer


def _perturbed(model, scale: float, seed: int):
    """A copy with every up row / down column nudged by relative noise of ``scale``."""
    twin = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in ffn_blocks(twin):
            for weight in (block.up.weight, block.down.weight, block.gate.weight if block.gate is not None else None):
                if weight is not None:
                    weight.add_(scale * weight.std() * torch.randn(weight.shape, generator=gen))
    return twin


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "gpt2"])
def test_identical_models_have_zero_drift(arch):
    model = make_model(arch)
    up, down = origin.neuron_drift(model, copy.deepcopy(model))
    assert up.shape == down.shape == (2 * 48,)
    np.testing.assert_allclose(up, 0.0, atol=1e-12)
    np.testing.assert_allclose(down, 0.0, atol=1e-12)


def test_drift_matches_one_minus_cosine_of_rows_and_columns():
    base = make_model("llama", seed=0)
    inst = _perturbed(base, 0.1, seed=1)
    up, down = origin.neuron_drift(base, inst)
    b, i = ffn_blocks(base)[1], ffn_blocks(inst)[1]
    j = 7
    cos_up = torch.nn.functional.cosine_similarity(b.mlp.up_proj.weight[j], i.mlp.up_proj.weight[j], dim=0).detach()
    cos_down = torch.nn.functional.cosine_similarity(b.mlp.down_proj.weight[:, j], i.mlp.down_proj.weight[:, j], dim=0).detach()
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
    inst = _perturbed(base, 0.01, seed=2)
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
    newline = origin.newline_token_ids(tokenizer)
    assert all("\n" in tokenizer.decode([int(i)]) for i in newline)
    generated = tokenizer(" Paris is the capital\nThe quick brown fox\n").input_ids
    cut = origin.cut_at_newline(generated, newline)
    assert tokenizer.decode(cut) == " Paris is the capital"
    assert origin.cut_at_newline(tokenizer("\nParis").input_ids, newline) == []
    no_newline = tokenizer(" Paris").input_ids
    assert origin.cut_at_newline(no_newline, newline) == no_newline


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
