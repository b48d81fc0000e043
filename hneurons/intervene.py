"""Scaling chosen FFN neurons at inference time (paper Eq. 5: z_j <- alpha * z_j).

A removable forward pre-hook on each affected layer's output projection
(``FFNBlock.down``, whose input is z: float[..., d_ffn]) multiplies the chosen
neurons' activations by ``alpha`` at every token position, prompt and generated
tokens alike, in every forward pass. This is equivalent to the authors' in-place
``down_proj.weight[:, idx] *= alpha`` but leaves the weights untouched, so
``alpha`` can be swept without reloading the model.

Flat neuron index: ``flat = layer * d_ffn + neuron`` (see hneurons.models).
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch
from torch import nn

from hneurons.errors import HNeuronsError
from hneurons.models import FFNBlock, ffn_blocks


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
    by exactly 1.0, so they are untouched.
    """

    def __init__(self, model: nn.Module, flat_indices: Iterable[int], alpha: float = 1.0,
                 d_ffn: int | None = None) -> None:
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

    def _install(self, block: FFNBlock, neurons: np.ndarray):
        layer = block.layer

        def hook(module: nn.Module, args: tuple):
            if self._alpha == 1.0:
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

    def __enter__(self) -> "NeuronScaler":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
