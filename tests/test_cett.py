"""CETT hooks against a by-hand recomputation from the module weights, on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.activations import ACT2FN

from hneurons.cett import (
    EPS,
    REGIONS,
    CETTRecorder,
    cett_features,
    extract_activations,
    pad_batch,
    plan_counts,
    plan_rows,
    region_masks,
)
from hneurons.errors import HNeuronsError
from hneurons.models import ffn_blocks
from hneurons.spans import SpanExample
from tiny import make_model

ARCHS = ("llama", "gemma3_text", "gpt2")
VOCAB = 120


def _examples(seed: int = 0, n: int = 5) -> list[SpanExample]:
    """Random prompts/responses of different lengths with answer spans inside the response."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        prompt = rng.integers(3, VOCAB, size=int(rng.integers(4, 12)))
        response = rng.integers(3, VOCAB, size=int(rng.integers(2, 9)))
        start = int(rng.integers(0, len(response)))
        end = int(rng.integers(start + 1, len(response) + 1))
        out.append(SpanExample(f"ex{i}", i % 2, "train", prompt, response, (start, end)))
    return out


def _activation(model) -> callable:
    config = model.config
    name = (getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", None)
            or config.activation_function)
    return ACT2FN[name]


def _naive_cett(model, ids: np.ndarray) -> np.ndarray:
    """float64[n_layers, T, d_ffn] CETT recomputed by hand from each MLP's input and weights."""
    blocks = ffn_blocks(model)
    inputs: dict[int, torch.Tensor] = {}
    handles = [b.mlp.register_forward_pre_hook(
        lambda module, args, layer=b.layer: inputs.__setitem__(layer, args[0][0].detach().double()))
        for b in blocks]
    with torch.no_grad():
        model(input_ids=torch.as_tensor(ids)[None])
    for handle in handles:
        handle.remove()
    act = _activation(model)
    out = []
    for b in blocks:
        out.append(_naive_block(b, inputs[b.layer], act))
    return np.stack(out)


@torch.no_grad()
def _naive_block(b, x: torch.Tensor, act) -> np.ndarray:
    """float64[T, d_ffn]: gate/up, activation and down done by hand from x float64[T, d_model]."""
    w_up = b.up_weight().detach().double()
    w_down = b.down_weight().detach().double()  # [d_model, d_ffn]
    up = x @ w_up.T + (b.up.bias.double() if getattr(b.up, "bias", None) is not None else 0)
    z = act(x @ b.gate.weight.double().T) * up if b.gate is not None else act(up)
    h = z @ w_down.T + (b.down.bias.double() if getattr(b.down, "bias", None) is not None else 0)
    cett = z.abs() * w_down.norm(dim=0) / (h.norm(dim=-1, keepdim=True) + EPS)
    return cett.numpy()


def _naive_readout(cett: np.ndarray, mask: np.ndarray, readout: str) -> np.ndarray:
    """cett float[L, T, F], mask bool[T] -> float[L * F]."""
    positions = np.flatnonzero(mask)
    if readout == "mean":
        value = cett[:, positions].mean(axis=1)
    elif readout == "max":
        value = cett[:, positions].max(axis=1)
    else:
        value = cett[:, positions[-1]]
    return value.reshape(-1)


def _run(model, examples, readout="mean", batch_size=3, variant="with_prompt"):
    plan = plan_rows(examples, variant)
    sequences = [np.concatenate([e.prompt_ids, e.response_ids]) for e in examples]
    with CETTRecorder(model, readout) as recorder:
        return cett_features(recorder, sequences, plan.masks, batch_size), plan, sequences


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("readout", ["mean", "max", "last"])
def test_hook_cett_equals_naive_recomputation(arch, readout):
    model = make_model(arch, vocab_size=VOCAB, seed=1)
    examples = _examples()
    features, plan, sequences = _run(model, examples, readout)
    for i, seq in enumerate(sequences):
        naive = _naive_cett(model, seq)
        for k in range(len(REGIONS)):
            expected = _naive_readout(naive, plan.masks[i][k], readout)
            np.testing.assert_allclose(features[i, k], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_equals_unbatched(arch):
    model = make_model(arch, vocab_size=VOCAB, seed=2)
    examples = _examples(seed=3, n=6)
    one, _, _ = _run(model, examples, batch_size=1)
    many, _, _ = _run(model, examples, batch_size=4)
    np.testing.assert_allclose(many, one, rtol=1e-5, atol=1e-7)


def test_padding_never_contributes():
    model = make_model("llama", vocab_size=VOCAB, seed=4)
    examples = _examples(seed=5, n=2)
    plan = plan_rows(examples)
    sequences = [np.concatenate([e.prompt_ids, e.response_ids]) for e in examples]
    ids, masks = pad_batch(sequences, plan.masks, pad_id=7)
    ids_other = ids.clone()
    ids_other[~masks.any(dim=1)] = 11  # different padding ids, same real tokens
    with CETTRecorder(model) as recorder:
        np.testing.assert_array_equal(recorder.run(ids, masks), recorder.run(ids_other, masks))


@pytest.mark.parametrize("arch", ["llama", "gemma3_text"])
def test_flat_index_zeroed_neuron(arch):
    """Silencing neuron (l, j) zeroes exactly column l * d_ffn + j; earlier layers stay unchanged."""
    model = make_model(arch, vocab_size=VOCAB, seed=6, n_layers=3)
    blocks = ffn_blocks(model)
    d_ffn = blocks[0].d_ffn
    layer, neuron = 1, 17
    examples = _examples(seed=7, n=3)
    before, _, _ = _run(model, examples)

    def silence(module, args):
        z = args[0].clone()
        z[..., neuron] = 0
        return (z,)

    handle = blocks[layer].down.register_forward_pre_hook(silence)
    after, _, _ = _run(model, examples)
    handle.remove()
    flat = layer * d_ffn + neuron
    assert np.all(after[:, :, flat] == 0)
    assert np.count_nonzero((after == 0).all(axis=(0, 1))) == 1
    np.testing.assert_array_equal(after[:, :, :layer * d_ffn], before[:, :, :layer * d_ffn])
    assert not np.allclose(after[:, :, (layer + 1) * d_ffn:], before[:, :, (layer + 1) * d_ffn:])


def test_flat_index_scaled_neuron():
    """z_j * a with column j / a leaves h unchanged: only column l * d_ffn + j scales by a."""
    model = make_model("llama", vocab_size=VOCAB, seed=8, n_layers=3)
    blocks = ffn_blocks(model)
    d_ffn = blocks[0].d_ffn
    layer, neuron, alpha = 2, 5, 3.0
    examples = _examples(seed=9, n=3)
    plan = plan_rows(examples)
    sequences = [np.concatenate([e.prompt_ids, e.response_ids]) for e in examples]
    with CETTRecorder(model) as recorder:  # column norms are taken here, before the edit
        before = cett_features(recorder, sequences, plan.masks, 2)
        with torch.no_grad():
            blocks[layer].down.weight[:, neuron] /= alpha

        def scale(module, args):
            z = args[0].clone()
            z[..., neuron] *= alpha
            return (z,)

        handle = blocks[layer].down.register_forward_pre_hook(scale, prepend=True)
        after = cett_features(recorder, sequences, plan.masks, 2)
        handle.remove()
    flat = layer * d_ffn + neuron
    np.testing.assert_allclose(after[:, :, flat], alpha * before[:, :, flat], rtol=1e-5)
    others = np.delete(np.arange(after.shape[-1]), flat)
    np.testing.assert_allclose(after[:, :, others], before[:, :, others], rtol=1e-4, atol=1e-7)


def test_zero_ffn_output_gives_finite_values():
    model = make_model("llama", vocab_size=VOCAB, seed=10)
    blocks = ffn_blocks(model)
    handles = [b.down.register_forward_hook(lambda m, a, out: torch.zeros_like(out)) for b in blocks]
    features, _, _ = _run(model, _examples(seed=11, n=3))
    for handle in handles:
        handle.remove()
    assert np.isfinite(features).all()
    assert features.max() > 1e3  # |z| * ||W[:, j]|| / 1e-8: large, finite


def test_region_masks_variants():
    masks = region_masks(4, 5, (1, 3), "with_prompt")
    assert masks.shape == (2, 9)
    assert masks[0].tolist() == [False] * 5 + [True, True] + [False] * 2
    assert masks[1].tolist() == [True] * 5 + [False, False] + [True] * 2
    only = region_masks(4, 5, (1, 3), "response_only")
    assert only[1].tolist() == [False] * 4 + [True] + [False, False] + [True] * 2
    with pytest.raises(HNeuronsError, match="region_variant"):
        region_masks(4, 5, (1, 3), "everything")


def test_readout_and_batch_size_are_checked():
    model = make_model("llama", vocab_size=VOCAB)
    with pytest.raises(HNeuronsError, match="readout"):
        CETTRecorder(model, "median")
    with pytest.raises(HNeuronsError, match="batch_size"):
        _run(model, _examples(n=1), batch_size=0)


def test_hooks_are_removed_after_use():
    model = make_model("llama", vocab_size=VOCAB)
    blocks = ffn_blocks(model)
    with CETTRecorder(model):
        assert all(len(b.down._forward_hooks) == 1 for b in blocks)
    assert all(len(b.down._forward_hooks) == 0 for b in blocks)


def test_extract_activations_rows_in_plan_order_and_empty_regions_dropped():
    model = make_model("llama", vocab_size=VOCAB, seed=12)
    examples = _examples(seed=13, n=5)
    whole = SpanExample("whole", 1, "test", np.arange(3, 9), np.arange(10, 14), (0, 4))  # no 'other' response token
    examples.insert(2, whole)
    plan = plan_rows(examples, "response_only")
    assert plan_counts(plan)["empty_regions"]["other"] >= 1
    blocks = list(extract_activations(model, plan, dataset="toy", batch_size=2, group_examples=4, progress=False))
    frame = np.concatenate([f.to_numpy() for f, _ in blocks])
    X = np.concatenate([x for _, x in blocks])
    assert len(frame) == plan.n_rows == X.shape[0]
    assert list(dict.fromkeys(frame[:, 0])) == [e.example_id for e in examples]
    whole_rows = frame[frame[:, 0] == "whole"]
    assert whole_rows[:, 3].tolist() == ["answer"]
    # rows equal a direct computation on the same sequences
    direct, _, _ = _run(model, examples, variant="response_only")
    keep = plan.n_tokens > 0
    np.testing.assert_allclose(X, direct[keep], rtol=1e-5, atol=1e-7)
