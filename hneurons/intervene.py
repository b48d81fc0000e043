"""Scaling chosen FFN neurons at inference time (paper Eq. 5: z_j <- alpha * z_j).

A removable forward pre-hook on each affected layer's output projection
(``FFNBlock.down``, whose input is z: float[..., d_ffn]) multiplies the chosen
neurons' activations by ``alpha`` at every token position, prompt and generated
tokens alike, in every forward pass. This is equivalent to the authors' in-place
``down_proj.weight[:, idx] *= alpha`` but leaves the weights untouched, so
``alpha`` can be swept without reloading the model.

``positions="response"`` (a deviation offered as an option; the paper and [C]
scale every position) scales z only in incremental decoding passes, i.e. at the
positions of generated tokens: a forward pass is a decoding step when its query
has one token and its KV cache is not empty (what hneurons.generate does after
the prefill). Prompt positions, and hence the logits that pick the first
response token, are then unchanged; a forward pass without a cache (teacher
forcing) is left unscaled.

Flat neuron index: ``flat = layer * d_ffn + neuron`` (see hneurons.models).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from hneurons import layout
from hneurons.errors import HNeuronsError
from hneurons.models import FFNBlock, ffn_blocks

POSITIONS = ("all", "response")


def group_by_layer(flat_indices: Iterable[int], n_layers: int, d_ffn: int) -> dict[int, np.ndarray]:
    """{layer: sorted unique int64[k] neuron indices within the layer} for flat indices.

    Raises HNeuronsError for an index outside [0, n_layers * d_ffn).
    """
    flat = np.unique(np.asarray(list(flat_indices), dtype=np.int64))
    n_total = n_layers * d_ffn
    if flat.size and (flat[0] < 0 or flat[-1] >= n_total):
        bad = int(flat[0] if flat[0] < 0 else flat[-1])
        raise HNeuronsError(f"neuron index {bad} outside [0, {n_total}) for {n_layers} layers x {d_ffn} neurons")
    layers = flat // d_ffn
    return {int(layer): flat[layers == layer] % d_ffn for layer in np.unique(layers)}


class NeuronScaler:
    """Multiply chosen neurons' z by ``alpha`` via forward pre-hooks on FFN output projections.

    ``NeuronScaler(model, flat_indices)`` installs the hooks (alpha = 1, i.e. no
    change); set ``scaler.alpha`` at any time; ``scaler.remove()`` (or leaving a
    ``with`` block) removes every hook. With alpha == 1 the hooks are no-ops, so
    outputs are bit-identical to the unhooked model. Other neurons are multiplied
    by exactly 1.0, so they are untouched. ``positions``: "all" (paper) or
    "response" (generated tokens only, see the module docstring). alpha must be
    finite and >= 0 (paper Eq. 5: alpha in [0, 3]; 0 = ablation).
    """

    def __init__(self, model: nn.Module, flat_indices: Iterable[int], alpha: float = 1.0,
                 d_ffn: int | None = None, positions: str = "all") -> None:
        if positions not in POSITIONS:
            raise HNeuronsError(f"positions={positions!r}: expected one of {', '.join(POSITIONS)}")
        self.positions = positions
        self._active = positions == "all"
        blocks = ffn_blocks(model)
        width = blocks[0].d_ffn
        if d_ffn is not None and d_ffn != width:
            raise HNeuronsError(f"neuron indices use d_ffn={d_ffn} but the model's FFN width is {width}")
        self.n_layers = len(blocks)
        self.d_ffn = width
        self.neurons_by_layer = group_by_layer(flat_indices, self.n_layers, width)
        self._alpha = 1.0
        self._scales: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}
        self._handles = [self._install(blocks[layer], neurons) for layer, neurons in self.neurons_by_layer.items()]
        if positions == "response":
            self._handles.append(model.register_forward_pre_hook(self._mark_pass, with_kwargs=True))
        self.alpha = alpha

    @property
    def n_neurons(self) -> int:
        return int(sum(len(v) for v in self.neurons_by_layer.values()))

    @property
    def alpha(self) -> float:
        return self._alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value):
            raise HNeuronsError(f"alpha must be finite (got {value})")
        if value < 0:
            raise HNeuronsError(f"alpha must be >= 0 (got {value}; paper Eq. 5 uses alpha in [0, 3])")
        self._alpha = value
        self._scales.clear()

    def _scale(self, layer: int, neurons: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        """float[d_ffn] vector: alpha at the layer's chosen neurons, 1 elsewhere (cached per device/dtype)."""
        key = (layer, like.device, like.dtype)
        scale = self._scales.get(key)
        if scale is None:
            scale = torch.ones(self.d_ffn, dtype=like.dtype, device=like.device)
            scale[torch.as_tensor(neurons, device=like.device)] = self._alpha
            self._scales[key] = scale
        return scale

    def _mark_pass(self, module: nn.Module, args: tuple, kwargs: dict):
        """Model-level pre-hook (positions="response"): scale this pass iff it decodes one new token."""
        self._active = is_decoding_step(args, kwargs)
        return None

    def _install(self, block: FFNBlock, neurons: np.ndarray):
        layer = block.layer

        def hook(module: nn.Module, args: tuple):
            if self._alpha == 1.0 or not self._active:
                return None
            z = args[0]
            return (z * self._scale(layer, neurons, z),) + tuple(args[1:])

        return block.down.register_forward_pre_hook(hook)

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._scales.clear()

    def __enter__(self) -> NeuronScaler:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def is_decoding_step(args: tuple, kwargs: dict) -> bool:
    """True for a causal-LM forward call that feeds one token per row on top of a non-empty KV cache."""
    ids = kwargs.get("input_ids", args[0] if args else None)
    if ids is None:
        ids = kwargs.get("inputs_embeds")
    if ids is None or ids.dim() < 2 or ids.shape[1] != 1:
        return False
    for name in ("past_key_values", "cache"):
        cache = kwargs.get(name)
        if cache is not None and hasattr(cache, "get_seq_length"):
            return int(cache.get_seq_length()) > 0
    return False


def layer_matched_neuron_sets(exclude: np.ndarray, n_layers: int, d_ffn: int, seeds: Sequence[int]) -> list[np.ndarray]:
    """One layer-matched random set per seed: as many neurons in each layer as ``exclude`` (the
    H-Neurons) has there, drawn uniformly from that layer's other neurons (so disjoint from it).

    exclude: flat indices ``layer * d_ffn + neuron``; returns sorted int64[len(exclude)] per seed.
    Uses hneurons.probe_baselines.draw_layer_matched (the probe's layer-matched baseline) with numpy
    default_rng(seed), so a seed gives the probe's and the sweep's control the same neurons.
    Raises HNeuronsError for an index outside [0, n_layers * d_ffn) or a layer without enough
    other neurons.
    """
    from hneurons.probe_baselines import draw_layer_matched

    exclude = np.unique(np.asarray(exclude, dtype=np.int64))
    group_by_layer(exclude, n_layers, d_ffn)  # range check, one-line error
    return [draw_layer_matched(exclude, d_ffn, n_layers, np.random.default_rng(int(seed))) for seed in seeds]


def h_neurons(family: str, n_layers: int, d_ffn: int) -> np.ndarray:
    """The probe's H-Neurons (``models/probe/<family>``: flat indices with a positive weight); one-line
    errors for an empty or mismatched set."""
    from hneurons.probe import load_probe

    directory = layout.probe_dir(family)
    probe, _ = load_probe(directory)
    if probe.n_features_in_ != n_layers * d_ffn:
        raise HNeuronsError(f"{directory}: probe has {probe.n_features_in_} features but the model has "
                            f"{n_layers} x {d_ffn} = {n_layers * d_ffn} neurons")
    flat = np.asarray(probe.positive_, dtype=np.int64)
    if flat.size == 0:
        raise HNeuronsError(f"{directory}: the probe has no H-Neurons (no positive weight); nothing to scale "
                            f"(try a larger probe C)")
    return flat
