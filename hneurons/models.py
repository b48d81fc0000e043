"""Loading causal LMs and resolving their FFN blocks per architecture.

The neuron activation ``z`` of a layer is the input of its FFN output projection
(``down_proj`` for gated MLPs, ``c_proj`` for GPT-2, ``dense_4h_to_h`` for
GPT-NeoX). Decoder layers are resolved explicitly per architecture, never by
searching module names, so vision towers or adapters are never picked up and the
layer index comes from the model structure, not from hook firing order.

Flat neuron index: ``flat = layer * d_ffn + neuron``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hneurons.errors import HNeuronsError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class FFNBlock:
    """One decoder layer's FFN.

    ``down``'s input is z: float[..., d_ffn]; its output is the FFN output h:
    float[..., d_model]. ``up``/``gate`` map the layer input to d_ffn.
    ``conv1d`` marks GPT-2's transposed Conv1D weights.
    """

    layer: int
    mlp: nn.Module
    up: nn.Module
    down: nn.Module
    gate: nn.Module | None
    d_ffn: int
    conv1d: bool = False

    def down_weight(self) -> torch.Tensor:
        """W_down as float[d_model, d_ffn] (column j = neuron j's output weights)."""
        weight = self.down.weight
        return weight.t() if self.conv1d else weight

    def up_weight(self) -> torch.Tensor:
        """W_up as float[d_ffn, d_model] (row j = neuron j's input weights)."""
        weight = self.up.weight
        return weight.t() if self.conv1d else weight


def _decoder_layers_gated(model: nn.Module) -> nn.ModuleList:
    inner = getattr(model, "model", None)
    if inner is None:
        raise AttributeError("model.model")
    # Gemma 3 multimodal checkpoints keep the text tower under language_model.
    language = getattr(inner, "language_model", None)
    if language is not None and hasattr(language, "layers"):
        return language.layers
    return inner.layers


def _gated(layers_fn: Callable[[nn.Module], nn.ModuleList]):
    def resolve(model: nn.Module) -> list[FFNBlock]:
        blocks = []
        for index, layer in enumerate(layers_fn(model)):
            mlp = layer.mlp
            blocks.append(FFNBlock(index, mlp, mlp.up_proj, mlp.down_proj, mlp.gate_proj,
                                   mlp.down_proj.in_features))
        return blocks
    return resolve


def _gpt2(model: nn.Module) -> list[FFNBlock]:
    blocks = []
    for index, layer in enumerate(model.transformer.h):
        mlp = layer.mlp
        blocks.append(FFNBlock(index, mlp, mlp.c_fc, mlp.c_proj, None, mlp.c_proj.weight.shape[0],
                               conv1d=True))
    return blocks


def _gpt_neox(model: nn.Module) -> list[FFNBlock]:
    blocks = []
    for index, layer in enumerate(model.gpt_neox.layers):
        mlp = layer.mlp
        blocks.append(FFNBlock(index, mlp, mlp.dense_h_to_4h, mlp.dense_4h_to_h, None,
                               mlp.dense_4h_to_h.in_features))
    return blocks


_RESOLVERS: dict[str, Callable[[nn.Module], list[FFNBlock]]] = {
    "llama": _gated(_decoder_layers_gated),
    "mistral": _gated(_decoder_layers_gated),
    "qwen2": _gated(_decoder_layers_gated),
    "gemma2": _gated(_decoder_layers_gated),
    "gemma3_text": _gated(_decoder_layers_gated),
    "gemma3": _gated(_decoder_layers_gated),
    "gpt2": _gpt2,
    "gpt_neox": _gpt_neox,
}

SUPPORTED_ARCHITECTURES = tuple(sorted(_RESOLVERS))


def ffn_blocks(model: nn.Module) -> list[FFNBlock]:
    """The decoder layers' FFN blocks in layer order.

    Raises HNeuronsError for an architecture outside SUPPORTED_ARCHITECTURES or a
    model whose modules do not have the expected layout.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    resolver = _RESOLVERS.get(model_type)
    if resolver is None:
        raise HNeuronsError(
            f"unsupported architecture {model_type!r}: FFN access is defined for "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    try:
        blocks = resolver(model)
    except AttributeError as exc:
        raise HNeuronsError(f"model of type {model_type!r} lacks the expected FFN layout ({exc})") from None
    if not blocks:
        raise HNeuronsError(f"model of type {model_type!r} has no decoder layers")
    widths = {block.d_ffn for block in blocks}
    if len(widths) != 1:
        raise HNeuronsError(f"model of type {model_type!r} has FFN widths {sorted(widths)}; one width is required")
    return blocks


def ffn_shape(model: nn.Module) -> tuple[int, int]:
    """(n_layers, d_ffn) of the model's FFN neurons."""
    blocks = ffn_blocks(model)
    return len(blocks), blocks[0].d_ffn


def flat_to_layer_neuron(flat_index, d_ffn: int):
    """Map flat neuron indices to (layer, neuron); works on ints and numpy arrays."""
    return flat_index // d_ffn, flat_index % d_ffn


def input_device(model: nn.Module) -> torch.device:
    """Device of the input embeddings (right for models split over devices)."""
    return model.get_input_embeddings().weight.device


def check_device(device: str, where: str = "compute.device") -> str:
    """``device`` if this torch can place a model there: cpu, auto (device_map "auto"), cuda, cuda:N or mps."""
    if not isinstance(device, str) or not re.fullmatch(r"cpu|auto|mps|cuda(:\d+)?", device):
        raise HNeuronsError(f"{where}={device!r}: expected cpu, cuda, cuda:N, mps or auto")
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise HNeuronsError(f"{where}={device!r}: torch {torch.__version__} sees "
                                f"{torch.cuda.device_count() if torch.cuda.is_available() else 'no'} CUDA device(s)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise HNeuronsError(f"{where}='mps': torch {torch.__version__} has no MPS device here")
    return device


def load_causal_lm(path: str | Path, dtype: str = "float32", device: str = "cpu"):
    """Load a materialized model directory: returns (model in eval mode, tokenizer).

    dtype: one of DTYPES (use float32 on CPU). device: cpu, cuda, cuda:N or mps (weights are loaded
    straight onto it), or auto (``device_map="auto"``: split over the visible GPUs, then the CPU).
    """
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not (path / "config.json").is_file():
        raise HNeuronsError(f"{path}: not a materialized model directory (no config.json); run the model stage")
    if dtype not in DTYPES:
        raise HNeuronsError(f"compute.dtype={dtype!r}: expected one of {sorted(DTYPES)}")
    check_device(device)
    tokenizer = load_tokenizer(path)
    kwargs = {"dtype": DTYPES[dtype]}
    if device == "auto":
        kwargs["device_map"] = "auto"
    elif device != "cpu":
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    model.eval()
    return model, tokenizer


def load_tokenizer(path: str | Path):
    """The tokenizer of a materialized model directory, as :func:`load_causal_lm` returns it (pad = EOS
    when the tokenizer has no pad token)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise HNeuronsError(f"{path}: not a materialized model directory (no config.json); run the model stage")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
