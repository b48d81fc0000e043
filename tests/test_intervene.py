"""NeuronScaler: removable pre-hooks scaling chosen FFN neurons, on tiny random models."""

import numpy as np
import pytest
import torch

from hneurons.errors import HNeuronsError
from hneurons.intervene import NeuronScaler, group_by_layer
from hneurons.models import ffn_blocks
from tiny import ARCHITECTURES, make_model

IDS = torch.tensor([[3, 5, 7, 11, 13, 17], [19, 23, 29, 31, 37, 41]])
D_FFN = 40


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def capture_z(model) -> dict[int, torch.Tensor]:
    """Each layer's z as seen by `down` (after any pre-hooks)."""
    seen, handles = {}, []
    for block in ffn_blocks(model):
        def fn(module, inputs, output, layer=block.layer):
            seen[layer] = inputs[0].detach().clone()
        handles.append(block.down.register_forward_hook(fn))
    logits(model)
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_alpha_one_is_identity_and_alpha_zero_equals_zeroed_weight_columns(arch):
    model = make_model(arch, vocab_size=64, n_layers=3, d_model=32, d_ffn=D_FFN)
    flat = [0, 5, D_FFN + 7, 2 * D_FFN + 39]
    reference = logits(model)
    with NeuronScaler(model, flat) as scaler:
        assert torch.equal(logits(model), reference)
        scaler.alpha = 0.0
        suppressed = logits(model)
        assert not torch.allclose(suppressed, reference)
    assert torch.equal(logits(model), reference), "hooks must be gone after the with block"

    blocks = ffn_blocks(model)
    with torch.no_grad():
        for layer, neurons in group_by_layer(flat, len(blocks), D_FFN).items():
            blocks[layer].down_weight()[:, torch.as_tensor(neurons)] = 0.0
    torch.testing.assert_close(suppressed, logits(model), rtol=1e-5, atol=1e-6)


def test_alpha_scales_only_the_chosen_neurons_at_every_position():
    model = make_model("llama", vocab_size=64, n_layers=2, d_model=32, d_ffn=D_FFN)
    flat = np.array([3, D_FFN + 10, D_FFN + 11])
    blocks = ffn_blocks(model)
    # z of layer 0 does not depend on layer-0 scaling of itself; compare it with the hook applied.
    base = capture_z(model)
    with NeuronScaler(model, flat, alpha=2.5):
        scaled = capture_z(model)
    chosen0 = torch.zeros(D_FFN, dtype=torch.bool)
    chosen0[3] = True
    torch.testing.assert_close(scaled[0][..., chosen0], 2.5 * base[0][..., chosen0])
    assert torch.equal(scaled[0][..., ~chosen0], base[0][..., ~chosen0])
    # layer 1: its input changed through layer 0, so check the ratio against the unhooked z of this run.
    raw = {}
    handle = blocks[1].down.register_forward_pre_hook(lambda m, a: raw.__setitem__(1, a[0].detach().clone()))
    with NeuronScaler(model, flat, alpha=2.5):
        hooked = capture_z(model)
    handle.remove()
    # capture_z's forward hook sees the scaled z; the pre-hook registered first saw the raw z.
    torch.testing.assert_close(hooked[1][..., [10, 11]], 2.5 * raw[1][..., [10, 11]])
    others = [j for j in range(D_FFN) if j not in (10, 11)]
    assert torch.equal(hooked[1][..., others], raw[1][..., others])


def test_alpha_can_be_changed_without_reinstalling():
    model = make_model("llama", vocab_size=64, n_layers=2, d_model=32, d_ffn=D_FFN)
    scaler = NeuronScaler(model, [1, 2, 50])
    outs = {}
    for alpha in (0.0, 1.0, 3.0, 0.0):
        scaler.alpha = alpha
        outs.setdefault(alpha, []).append(logits(model))
    scaler.remove()
    scaler.remove()  # idempotent
    assert torch.equal(outs[0.0][0], outs[0.0][1])
    assert not torch.allclose(outs[3.0][0], outs[1.0][0])
    assert scaler.n_neurons == 3


def test_bad_indices_and_alpha_are_one_line_errors():
    model = make_model("llama", vocab_size=64, n_layers=2, d_model=32, d_ffn=D_FFN)
    with pytest.raises(HNeuronsError, match="outside"):
        NeuronScaler(model, [2 * D_FFN])
    with pytest.raises(HNeuronsError, match="outside"):
        NeuronScaler(model, [-1])
    with pytest.raises(HNeuronsError, match="d_ffn"):
        NeuronScaler(model, [0], d_ffn=41)
    with pytest.raises(HNeuronsError, match="finite"):
        NeuronScaler(model, [0], alpha=float("nan"))
    empty = NeuronScaler(model, [], alpha=0.0)
    assert empty.n_neurons == 0
    empty.remove()


def test_group_by_layer():
    groups = group_by_layer([41, 0, 40, 0, 79], n_layers=2, d_ffn=40)
    assert list(groups) == [0, 1]
    assert groups[0].tolist() == [0]
    assert groups[1].tolist() == [0, 1, 39]


# ---------------------------------------------------------------- issue 7 additions

def test_negative_alpha_and_unknown_positions_are_one_line_errors():
    model = make_model("llama", vocab_size=64, n_layers=2, d_model=32, d_ffn=D_FFN)
    with pytest.raises(HNeuronsError, match=">= 0"):
        NeuronScaler(model, [0], alpha=-0.5)
    scaler = NeuronScaler(model, [0])
    with pytest.raises(HNeuronsError, match=">= 0"):
        scaler.alpha = -1
    scaler.remove()
    with pytest.raises(HNeuronsError, match="positions"):
        NeuronScaler(model, [0], positions="prompt")


def _chat_model(tiny_model_dir):
    from hneurons.models import load_causal_lm

    return load_causal_lm(tiny_model_dir)


def test_response_only_leaves_prompt_logits_unchanged_and_scales_generated_tokens(tiny_model_dir):
    from hneurons.generate import DecodingSettings, chat_prompt_ids, generate

    model, tok = _chat_model(tiny_model_dir)
    n_layers, d_ffn = len(ffn_blocks(model)), ffn_blocks(model)[0].d_ffn
    every = np.arange(n_layers * d_ffn)
    prompts = [chat_prompt_ids(tok, q) for q in ("Where was Judi Dench born?", "What is the capital of France?")]
    ids = torch.tensor([prompts[0]])
    with torch.no_grad():
        reference = model(input_ids=ids).logits
    settings = DecodingSettings(temperature=0, max_new_tokens=8)
    plain = generate(model, tok, prompts, settings, None, batch_size=2)
    with NeuronScaler(model, every, alpha=0.0, positions="response"):
        with torch.no_grad():
            teacher_forced = model(input_ids=ids).logits       # no cache: every position is prompt
        response_only = generate(model, tok, prompts, settings, None, batch_size=2)
    with NeuronScaler(model, every, alpha=0.0, positions="all"):
        everywhere = generate(model, tok, prompts, settings, None, batch_size=2)
    assert torch.equal(teacher_forced, reference)
    for a, b in zip(plain, response_only):
        assert a[0] == b[0], "the first response token is picked from prompt logits, which must be unchanged"
    assert response_only != plain, "generated positions must be scaled"
    assert everywhere != response_only


def test_random_neuron_sets_match_size_avoid_h_and_are_seeded():
    from hneurons.intervene import random_neuron_sets

    h = np.array([3, 50, 51, 700])
    sets = random_neuron_sets(h, 1000, [1, 2, 3])
    assert [s.size for s in sets] == [4, 4, 4]
    assert all(not set(s) & set(h) for s in sets)
    assert len({tuple(s) for s in sets}) == 3
    again = random_neuron_sets(h, 1000, [1, 2, 3])
    assert all(np.array_equal(a, b) for a, b in zip(sets, again))
