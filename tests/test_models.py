"""FFN access per architecture, on tiny random models built in-process."""

import pytest
import torch
from torch import nn

from hneurons.errors import HNeuronsError
from hneurons.models import SUPPORTED_ARCHITECTURES, ffn_blocks, ffn_shape, flat_to_layer_neuron, load_causal_lm
from tiny import ARCHITECTURES, make_model


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_ffn_blocks_find_every_decoder_layer(arch):
    model = make_model(arch, vocab_size=64, n_layers=3, d_model=32, d_ffn=40)
    blocks = ffn_blocks(model)
    assert [b.layer for b in blocks] == [0, 1, 2]
    assert ffn_shape(model) == (3, 40)
    for block in blocks:
        assert tuple(block.down_weight().shape) == (32, 40)
        assert tuple(block.up_weight().shape) == (40, 32)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_down_input_is_the_neuron_activation(arch):
    """The captured input of `down` times W_down (+ bias) reproduces the FFN output h."""
    model = make_model(arch, vocab_size=64, n_layers=2, d_model=32, d_ffn=40)
    blocks = ffn_blocks(model)
    seen = {}

    def hook(block):
        def fn(module, inputs, output):
            seen[block.layer] = (inputs[0].detach(), output.detach())
        return fn

    handles = [b.down.register_forward_hook(hook(b)) for b in blocks]
    with torch.no_grad():
        model(input_ids=torch.tensor([[3, 5, 7, 11]]))
    for h in handles:
        h.remove()
    for block in blocks:
        z, out = seen[block.layer]
        assert z.shape[-1] == 40
        bias = getattr(block.down, "bias", None)
        recon = z @ block.down_weight().t() + (bias if bias is not None else 0)
        torch.testing.assert_close(recon, out, rtol=1e-5, atol=1e-5)


def test_gemma3_multimodal_layout_resolves_text_tower():
    model = make_model("gemma3_text", vocab_size=64, n_layers=2)
    wrapper = nn.Module()
    wrapper.config = type("Cfg", (), {"model_type": "gemma3"})()
    wrapper.model = nn.Module()
    wrapper.model.language_model = model.model
    wrapper.model.vision_tower = nn.Module()
    blocks = ffn_blocks(wrapper)
    assert [b.layer for b in blocks] == [0, 1]
    assert blocks[0].mlp is model.model.layers[0].mlp


def test_unsupported_architecture_is_one_line_error():
    from transformers import BertConfig, BertLMHeadModel

    model = BertLMHeadModel(BertConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, intermediate_size=24, is_decoder=True))
    with pytest.raises(HNeuronsError, match="unsupported architecture 'bert'") as info:
        ffn_blocks(model)
    assert "\n" not in str(info.value)
    assert "llama" in str(info.value)


def test_flat_index_maps_to_layer_and_neuron():
    import numpy as np

    layer, neuron = flat_to_layer_neuron(np.array([0, 47, 48, 95]), 48)
    assert layer.tolist() == [0, 0, 1, 1]
    assert neuron.tolist() == [0, 47, 0, 47]
    assert "llama" in SUPPORTED_ARCHITECTURES and "gpt2" in SUPPORTED_ARCHITECTURES


def test_compute_device_is_checked_and_reaches_the_loader(tmp_path):
    import torch

    from hneurons.models import check_device
    from stages._common import compute_settings
    from tiny import save_tiny_model

    params = {"compute": {"families": {"big": {"device": "auto", "dtype": "bfloat16"}}, "device": "cpu",
                          "dtype": "float32"}}
    assert compute_settings(params, "big") == ("auto", "bfloat16")
    assert compute_settings(params, "small") == ("cpu", "float32")
    with pytest.raises(HNeuronsError, match=r"compute.families.big.devise: not an overridable key"):
        compute_settings({"compute": {**params["compute"], "families": {"big": {"devise": "cpu"}}}}, "big")
    for bad, message in (("gpu", "expected cpu, cuda, cuda:N, mps or auto"), ("cuda:7", "CUDA device")):
        if bad.startswith("cuda") and torch.cuda.device_count() > 7:
            continue
        with pytest.raises(HNeuronsError, match=message):
            check_device(bad)
    path = save_tiny_model(tmp_path / "tiny")
    cpu, _ = load_causal_lm(path, "float32", "cpu")
    auto, _ = load_causal_lm(path, "bfloat16", "auto")          # device_map="auto": the CPU on this machine
    assert next(cpu.parameters()).device.type == "cpu" and next(cpu.parameters()).dtype == torch.float32
    assert next(auto.parameters()).dtype == torch.bfloat16 and next(auto.parameters()).device.type == "cpu"
