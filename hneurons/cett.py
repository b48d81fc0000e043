"""CETT of every FFN neuron, read out per token region, from removable forward hooks.

For layer l, neuron j and token t (paper Eq. 2; Zhang et al. 2024):

    CETT[l, j, t] = |z[j, t]| * ||W_down[:, j]||_2 / (||h_t||_2 + EPS)

where z_t: float[d_ffn] is the input of the FFN output projection and
h_t: float[d_model] its output (before any post-FFN norm, e.g. Gemma 3's). The
column norms are computed once per block; everything is accumulated in float32
whatever the model's dtype. ``EPS = 1e-8`` is added to ||h_t|| as in the
authors' code, so ||h_t|| = 0 gives 0 (z = 0) or a large finite value, never NaN
or inf.

Readouts over a region's positions (paper Eq. 3 is ``mean``): ``mean``, ``max``
and ``last`` (the region's last position). Nothing per token is kept: the hooks
reduce each layer's [batch, tokens, d_ffn] CETT to [batch, regions, d_ffn] at once.

Regions of one example (the sequence is prompt + response ids, teacher forced):

- ``answer``: the answer span's positions;
- ``other``: with ``region_variant="with_prompt"`` (the authors' default) every
  other position, prompt and template included; with ``"response_only"`` only
  the response positions outside the answer span.

Deviation from the authors' code: the sequence ends with the last kept response
id; the authors re-apply the chat template, so their "other" region also holds
the end-of-turn suffix (minus its final token). Batches are right padded and run
without an attention mask: with causal attention real positions never see the
padding, so batched results equal unbatched ones; padding positions are in no
region, so they never contribute.

Flat feature index: ``flat = layer * d_ffn + neuron`` (layer from the FFNBlock).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from hneurons.errors import HNeuronsError
from hneurons.models import FFNBlock, ffn_blocks, input_device
from hneurons.spans import SpanExample

EPS = 1e-8
READOUTS = ("mean", "max", "last")
REGIONS = ("answer", "other")
REGION_VARIANTS = ("with_prompt", "response_only")
META_COLUMNS = ("example_id", "dataset", "label", "region", "split", "n_tokens", "response_tokens")


# ---------------------------------------------------------------- regions


def region_masks(n_prompt: int, n_response: int, answer: tuple[int, int],
                 variant: str = "with_prompt") -> np.ndarray:
    """bool[len(REGIONS), n_prompt + n_response]: which positions each region holds.

    ``answer`` is ``[start, end)`` in response positions.
    """
    if variant not in REGION_VARIANTS:
        raise HNeuronsError(f"region_variant={variant!r}: expected one of {', '.join(REGION_VARIANTS)}")
    masks = np.zeros((len(REGIONS), n_prompt + n_response), dtype=bool)
    masks[0, n_prompt + answer[0]:n_prompt + answer[1]] = True
    masks[1, 0 if variant == "with_prompt" else n_prompt:] = True
    masks[1] &= ~masks[0]
    return masks


# ---------------------------------------------------------------- hooks


class CETTRecorder:
    """Forward hooks on every FFN output projection that reduce CETT per region.

    Use as a context manager (hooks are removed on exit), then call
    :meth:`run` per batch. ``readout``: one of READOUTS.
    """

    def __init__(self, model: nn.Module, readout: str = "mean", eps: float = EPS):
        if readout not in READOUTS:
            raise HNeuronsError(f"readout={readout!r}: expected one of {', '.join(READOUTS)}")
        self.model = model
        self.readout = readout
        self.eps = eps
        self.blocks: list[FFNBlock] = ffn_blocks(model)
        self.d_ffn = self.blocks[0].d_ffn
        self.n_layers = len(self.blocks)
        with torch.no_grad():
            self.col_norms = [torch.linalg.vector_norm(b.down_weight().detach().float(), dim=0)
                              for b in self.blocks]  # float32[d_ffn] per block, on the block's device
        self._handles: list = []
        self._masks: dict[torch.device, torch.Tensor] = {}
        self._region_masks: torch.Tensor | None = None
        self._out: dict[int, torch.Tensor] = {}

    @property
    def n_features(self) -> int:
        return self.n_layers * self.d_ffn

    def __enter__(self) -> CETTRecorder:
        for block, norms in zip(self.blocks, self.col_norms):
            self._handles.append(block.down.register_forward_hook(self._hook(block.layer, norms)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._masks.clear()
        self._out.clear()

    def _masks_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._masks:
            self._masks[device] = self._region_masks.to(device)
        return self._masks[device]

    def _hook(self, layer: int, norms: torch.Tensor):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if self._region_masks is None:
                return
            masks = self._masks_on(output.device)  # bool[B, R, T]
            magnitude = args[0].abs().float()  # |z|: float32[B, T, d_ffn]
            inverse = 1.0 / (torch.linalg.vector_norm(output.float(), dim=-1) + self.eps)  # float32[B, T]
            self._out[layer] = self._reduce(magnitude, inverse, norms, masks)
        return hook

    def _reduce(self, magnitude: torch.Tensor, inverse: torch.Tensor, norms: torch.Tensor,
                masks: torch.Tensor) -> torch.Tensor:
        """Readout of CETT = |z| * norms * inverse over each region -> float32[B, R, d_ffn].

        magnitude: |z| float32[B, T, F]; inverse: 1 / (||h|| + eps) float32[B, T];
        norms: ||W_down[:, j]|| float32[F]; masks: bool[B, R, T]. The mean folds the
        per-token factor into the averaging weights (one matmul, no [B, T, F] product).
        """
        if self.readout == "mean":
            weights = masks.to(magnitude.dtype)
            weights = weights * inverse[:, None, :] / weights.sum(-1, keepdim=True).clamp_min(1.0)
            return torch.bmm(weights, magnitude) * norms
        if self.readout == "max":
            cett = magnitude.mul_(inverse[..., None]).mul_(norms)
            return torch.stack([cett.masked_fill(~masks[:, r, :, None], 0.0).amax(dim=1)
                                for r in range(masks.shape[1])], dim=1)
        positions = torch.arange(masks.shape[-1], device=masks.device)
        last = torch.where(masks, positions, -1).amax(dim=-1).clamp_min(0)  # int[B, R]
        picked = torch.gather(magnitude, 1, last[..., None].expand(-1, -1, magnitude.shape[-1]))
        return picked * torch.gather(inverse, 1, last)[..., None] * norms

    @torch.inference_mode()
    def run(self, input_ids: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
        """One teacher-forced forward pass -> float32[B, R, n_layers * d_ffn].

        input_ids: int64[B, T] (right padded); masks: bool[B, R, T] (padding in no region).
        """
        if not self._handles:
            raise RuntimeError("CETTRecorder.run outside its context (hooks not registered)")
        self._region_masks = masks
        self._masks.clear()
        self._out.clear()
        try:
            self.model(input_ids=input_ids.to(input_device(self.model)), use_cache=False, logits_to_keep=1)
            missing = [b.layer for b in self.blocks if b.layer not in self._out]
            if missing:
                raise HNeuronsError(f"FFN output projection of layer(s) {missing} did not run")
            out = np.empty((input_ids.shape[0], masks.shape[1], self.n_layers, self.d_ffn), dtype=np.float32)
            for block in self.blocks:
                out[:, :, block.layer, :] = self._out[block.layer].cpu().numpy()
        finally:
            self._region_masks = None
            self._masks.clear()
            self._out.clear()
        return out.reshape(out.shape[0], out.shape[1], -1)


# ---------------------------------------------------------------- batching


def pad_batch(sequences: Sequence[np.ndarray], masks: Sequence[np.ndarray],
              pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad: (ids int64[B, T_max], masks bool[B, R, T_max]); padding is in no region."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    regions = np.zeros((len(sequences), masks[0].shape[0], width), dtype=bool)
    for i, (seq, mask) in enumerate(zip(sequences, masks)):
        ids[i, :len(seq)] = seq
        regions[i, :, :len(seq)] = mask
    return torch.from_numpy(ids), torch.from_numpy(regions)


def cett_features(recorder: CETTRecorder, sequences: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                  batch_size: int, pad_id: int = 0) -> np.ndarray:
    """CETT readouts of sequences in input order: float32[n, R, n_layers * d_ffn].

    Sequences are batched in order of length (less padding); results are put
    back in input order. ``recorder`` must be entered.
    """
    if batch_size < 1:
        raise HNeuronsError(f"batch_size={batch_size}: must be >= 1")
    order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i]), i))
    out = np.empty((len(sequences), len(REGIONS), recorder.n_features), dtype=np.float32)
    for first in range(0, len(order), batch_size):
        chosen = order[first:first + batch_size]
        ids, regions = pad_batch([sequences[i] for i in chosen], [masks[i] for i in chosen], pad_id)
        out[chosen] = recorder.run(ids, regions)
    return out


# ---------------------------------------------------------------- rows


@dataclass(frozen=True)
class RowPlan:
    """The rows an extraction will write: per example, its region masks and token counts."""

    examples: list[SpanExample]
    masks: list[np.ndarray]      # bool[R, T_i] per example
    n_tokens: np.ndarray         # int64[n_examples, R]

    @property
    def n_rows(self) -> int:
        return int((self.n_tokens > 0).sum())


def plan_rows(examples: Sequence[SpanExample], region_variant: str = "with_prompt") -> RowPlan:
    """Region masks and token counts for every example; a region with 0 tokens gives no row."""
    masks = [region_masks(len(e.prompt_ids), len(e.response_ids), e.answer, region_variant) for e in examples]
    n_tokens = np.array([m.sum(axis=1) for m in masks], dtype=np.int64).reshape(len(examples), len(REGIONS))
    return RowPlan(list(examples), masks, n_tokens)


def plan_counts(plan: RowPlan) -> dict:
    """Row and example counts by region, label and split (for metadata and reports)."""
    rows = []
    for example, counts in zip(plan.examples, plan.n_tokens):
        for region, n in zip(REGIONS, counts):
            if n > 0:
                rows.append((region, example.label, example.split, int(n)))
    frame = pd.DataFrame(rows, columns=["region", "label", "split", "n_tokens"])
    labels = [e.label for e in plan.examples]
    return {
        "n_examples": len(plan.examples),
        "n_rows": len(frame),
        "examples_by_label": {str(k): labels.count(k) for k in sorted(set(labels))},
        "rows_by_region_label_split": {
            f"{r}/label={lab}/split={s or '-'}": int(n)
            for (r, lab, s), n in frame.groupby(["region", "label", "split"]).size().items()},
        "empty_regions": {region: int((plan.n_tokens[:, k] == 0).sum()) for k, region in enumerate(REGIONS)},
        "mean_tokens_by_region_label": {
            f"{r}/label={lab}": round(float(v), 4)
            for (r, lab), v in frame.groupby(["region", "label"])["n_tokens"].mean().items()},
    }


def plan_groups(plan: RowPlan, group_examples: int) -> list[range]:
    """Consecutive example ranges of ``group_examples`` (the last may be shorter): the units of work
    (batches form inside a group; one row group per split it holds) and of sharding."""
    if group_examples < 1:
        raise HNeuronsError(f"group_examples={group_examples}: must be >= 1")
    n = len(plan.examples)
    return [range(first, min(first + group_examples, n)) for first in range(0, n, group_examples)]


def shard_groups(groups: Sequence[range], shard: int, shards: int) -> tuple[int, list[range]]:
    """Shard ``shard`` of ``shards``: (index of its first group, its contiguous run of groups). Groups are dealt
    in contiguous runs of near-equal example counts, so concatenating the shards in order gives ``groups`` and
    every batch is formed as without shards."""
    if not (0 <= shard < shards):
        raise HNeuronsError(f"shard {shard} of {shards}: expected 0 <= shard < shards")
    cut = np.concatenate([[0], np.cumsum([len(g) for g in groups])])  # examples before group i
    bounds = [int(np.argmin(np.abs(cut - cut[-1] * k / shards))) for k in range(shards + 1)]
    return bounds[shard], list(groups[bounds[shard]:bounds[shard + 1]])


def extract_activations(model: nn.Module, plan: RowPlan, *, dataset: str, readout: str = "mean",
                        batch_size: int = 8, group_examples: int = 32, pad_id: int = 0,
                        eps: float = EPS, progress: bool = True,
                        groups: Sequence[range] | None = None) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """Yield (frame, cett) per group of examples, rows in plan order.

    Groups: ``groups`` (example ranges of the plan) or :func:`plan_groups` with
    ``group_examples``. frame: META_COLUMNS, one row per (example, non-empty
    region), answer row first; cett: float32[n_rows, n_layers * d_ffn],
    row-aligned with frame. Memory holds one group's rows at a time.
    """
    from tqdm import tqdm

    examples = plan.examples
    if groups is None:
        groups = plan_groups(plan, group_examples)
    with CETTRecorder(model, readout, eps) as recorder, \
            tqdm(total=sum(len(g) for g in groups), desc=f"extract {dataset}", unit="ex", file=sys.stderr,
                 disable=not progress) as bar:
        for group in groups:
            sequences = [np.concatenate([examples[i].prompt_ids, examples[i].response_ids]) for i in group]
            features = cett_features(recorder, sequences, [plan.masks[i] for i in group], batch_size, pad_id)
            keep = plan.n_tokens[group.start:group.stop] > 0  # bool[n_group, R]
            rows = [{"example_id": examples[i].example_id, "dataset": dataset, "label": examples[i].label,
                     "region": region, "split": examples[i].split, "n_tokens": int(plan.n_tokens[i, k]),
                     "response_tokens": len(examples[i].response_ids)}
                    for i in group for k, region in enumerate(REGIONS) if plan.n_tokens[i, k] > 0]
            bar.update(len(group))
            yield pd.DataFrame(rows, columns=list(META_COLUMNS)), features[keep]
