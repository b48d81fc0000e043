"""Origin of H-Neurons (paper §4, §6.3): weight drift between a base model and its
instruct model, and backward transfer of the instruct probe to the base model.

Weight drift (§6.3.2). For each FFN neuron j (flat index ``layer * d_ffn + j``):

- ``drift_up[j]   = 1 - cos(W_up[j, :] base,   W_up[j, :] instruct)``  (row j: input weights)
- ``drift_down[j] = 1 - cos(W_down[:, j] base, W_down[:, j] instruct)`` (column j: output weights)

The gate projection is not used, as in the paper. Each drift is z-scored over all
neurons (global scope; paper.md §9 #22), the two z-scores are averaged into
``delta``, and neurons are ranked: ``rank = (position when sorted by delta,
largest first) / (D - 1)``, so 0 = most changed and 1 = most stable (ties share
their average position). A neuron set's mean rank is ~0.5 when it is random.
Significance (primary): an empirical one-sided p-value against random sets of the
same size drawn outside the set, ``p_empirical = (1 + #random sets whose mean rank
is >= the set's) / (1 + n_sets)``: the paper predicts H-Neurons are *more stable*
(higher mean rank) than other neurons. Secondary, kept for comparison: the paper's
one-sided t-test that the set's similarity ``-delta`` is larger than the other
neurons' (Welch: the paper names no variance assumption). The t-test is
miscalibrated here: on Gemma-3-270M 11% (global) and 10% (per layer) of 100 random
22-neuron sets reached p < 0.05 where 5% is expected (drift is heavy-tailed and 22
values are few), so its p is not read as a significance level. A second control
draws layer-matched random sets (as many neurons per layer as the set), which takes
the set's layer composition out of the global comparison. The per-layer variant
z-scores and ranks within each layer. ``drift_outputs`` writes the origin stage's
drift files (drift.parquet, h_neuron_ranks.csv, drift_strip.png, drift_random_sets.csv).

Backward transfer (§6.3.1) pieces: the base-model prompt ``question + "\\nAnswer:"``
(no chat template), the cut of generated ids at the first newline, and the AUROC
of an unchanged probe on base-model features with a bootstrap CI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from scipy.stats import rankdata, ttest_ind

from hneurons import layout
from hneurons.checkpoint import Checkpoint
from hneurons.errors import HNeuronsError
from hneurons.io import write_parquet, write_text
from hneurons.models import ffn_blocks
from hneurons.stats import auroc, bootstrap_ci, empirical_p, mean_sd

BASE_SUFFIX = "\nAnswer:"


# ------------------------------------------------------------------ model pairs

def model_signature(model) -> dict[str, Any]:
    """Architecture facts that must agree between a base and an instruct model."""
    blocks = ffn_blocks(model)
    return {"model_type": model.config.model_type, "n_layers": len(blocks), "d_ffn": blocks[0].d_ffn,
            "d_model": int(blocks[0].down_weight().shape[0])}


def _weight_names(model) -> dict[int, str]:
    """id(module) -> the qualified name of its ``weight`` parameter."""
    return {id(module): f"{name}.weight" for name, module in model.named_modules()}


def checkpoint_signature(base, checkpoint: Checkpoint) -> dict[str, Any]:
    """:func:`model_signature` of a stored model, read against ``base``'s module tree (headers only)."""
    blocks, names = ffn_blocks(base), _weight_names(base)
    down, conv1d = checkpoint.shape(names[id(blocks[0].down)]), blocks[0].conv1d
    return {"model_type": checkpoint.model_type, "n_layers": checkpoint.n_layers,
            "d_ffn": int(down[0] if conv1d else down[1]), "d_model": int(down[1] if conv1d else down[0])}


def check_pair(base, instruct, base_name: str, instruct_name: str) -> dict[str, Any]:
    """Raise a one-line HNeuronsError naming both models unless their FFN layouts match.

    ``instruct``: a loaded model or a :class:`Checkpoint`. Returns the shared
    signature (model_type, n_layers, d_ffn, d_model).
    """
    a = model_signature(base)
    b = checkpoint_signature(base, instruct) if isinstance(instruct, Checkpoint) else model_signature(instruct)
    if a != b:
        diff = ", ".join(f"{k} {a[k]} vs {b[k]}" for k in a if a[k] != b[k])
        raise HNeuronsError(f"base model {base_name} and instruct model {instruct_name} differ in "
                            f"architecture or FFN shape ({diff}); origin needs a matched pair")
    return a


# ------------------------------------------------------------------ weight drift

def _one_minus_cos(a: torch.Tensor, b: torch.Tensor, dim: int) -> np.ndarray:
    a, b = a.detach().double(), b.detach().to(a.device).double()
    cos = (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim)).clamp_min(1e-300)
    return (1.0 - cos).cpu().numpy()


def _stored_ffn_weights(base, checkpoint: Checkpoint) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(W_up float[d_ffn, d_model], W_down float[d_model, d_ffn]) of each stored layer, in ``base``'s dtype,
    read one layer at a time."""
    names = _weight_names(base)
    for block in ffn_blocks(base):
        pair = []
        for module in (block.up, block.down):
            weight = checkpoint.tensor(names[id(module)])
            if tuple(weight.shape) != tuple(module.weight.shape):
                raise HNeuronsError(f"{checkpoint.path}: {names[id(module)]} has shape {tuple(weight.shape)}, "
                                    f"the base model's {tuple(module.weight.shape)}; origin needs a matched pair")
            weight = weight.to(module.weight.dtype)
            pair.append(weight.t() if block.conv1d else weight)
        yield pair[0], pair[1]


def neuron_drift(base, instruct) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron ``1 - cos`` of up rows and down columns: (drift_up, drift_down), float64[n_layers * d_ffn].

    ``instruct``: a loaded model or a :class:`Checkpoint` (read one layer at a time,
    so only ``base`` is held in memory). The FFN layouts must match (see :func:`check_pair`).
    """
    if isinstance(instruct, Checkpoint):
        pairs = _stored_ffn_weights(base, instruct)
    else:
        pairs = ((block.up_weight(), block.down_weight()) for block in ffn_blocks(instruct))
    ups, downs = [], []
    for block_b, (up, down) in zip(ffn_blocks(base), pairs, strict=True):
        ups.append(_one_minus_cos(block_b.up_weight(), up, dim=1))
        downs.append(_one_minus_cos(block_b.down_weight(), down, dim=0))
    return np.concatenate(ups), np.concatenate(downs)


def zscore(values: np.ndarray) -> np.ndarray:
    """(x - mean) / sd over all entries (population sd); all zeros when sd is 0."""
    values = np.asarray(values, dtype=np.float64)
    sd = values.std()
    return np.zeros_like(values) if sd == 0 else (values - values.mean()) / sd


def drift_delta(drift_up: np.ndarray, drift_down: np.ndarray, d_ffn: int | None = None) -> np.ndarray:
    """Average of the z-scored up and down drifts: float64[D]; larger = changed more.

    ``d_ffn=None`` z-scores over all neurons (the paper's reading); an int
    z-scores within each layer of ``d_ffn`` neurons (the per-layer variant).
    """
    if drift_up.shape != drift_down.shape:
        raise HNeuronsError(f"drift_up {drift_up.shape} and drift_down {drift_down.shape} differ")
    if d_ffn is None:
        return (zscore(drift_up) + zscore(drift_down)) / 2.0
    up, down = drift_up.reshape(-1, d_ffn), drift_down.reshape(-1, d_ffn)
    return np.concatenate([(zscore(u) + zscore(d)) / 2.0 for u, d in zip(up, down)])


def normalized_rank(delta: np.ndarray, d_ffn: int | None = None) -> np.ndarray:
    """Rank in [0, 1] with 1 = most stable (smallest delta): float64[D].

    ``d_ffn=None`` ranks over all neurons; an int ranks within each layer.
    """
    def one(values: np.ndarray) -> np.ndarray:
        if values.size < 2:
            return np.full(values.size, 0.5)
        return (rankdata(-values) - 1.0) / (values.size - 1.0)

    delta = np.asarray(delta, dtype=np.float64)
    if d_ffn is None:
        return one(delta)
    return np.concatenate([one(row) for row in delta.reshape(-1, d_ffn)])


@dataclass
class DriftTable:
    """Drift of every neuron of a base/instruct pair (all arrays float64[n_layers * d_ffn])."""

    d_ffn: int
    drift_up: np.ndarray
    drift_down: np.ndarray
    delta: np.ndarray
    rank: np.ndarray
    delta_layer: np.ndarray
    rank_layer: np.ndarray

    @classmethod
    def from_drifts(cls, drift_up: np.ndarray, drift_down: np.ndarray, d_ffn: int) -> DriftTable:
        if drift_up.size % d_ffn:
            raise HNeuronsError(f"{drift_up.size} neurons is not a multiple of d_ffn={d_ffn}")
        delta, delta_layer = drift_delta(drift_up, drift_down), drift_delta(drift_up, drift_down, d_ffn)
        return cls(d_ffn, drift_up, drift_down, delta, normalized_rank(delta),
                   delta_layer, normalized_rank(delta_layer, d_ffn))

    @classmethod
    def from_models(cls, base, instruct) -> DriftTable:
        up, down = neuron_drift(base, instruct)
        return cls.from_drifts(up, down, ffn_blocks(base)[0].d_ffn)

    @property
    def n_neurons(self) -> int:
        return int(self.drift_up.size)

    def frame(self, neurons: np.ndarray | None = None):
        """pandas frame, one row per neuron: flat_index, layer, neuron, drift_up, drift_down,
        delta, rank, delta_layer, rank_layer, is_selected (membership in ``neurons``)."""
        import pandas as pd

        flat = np.arange(self.n_neurons, dtype=np.int64)
        selected = np.zeros(self.n_neurons, dtype=bool)
        if neurons is not None:
            selected[check_neurons(neurons, self.n_neurons)] = True
        return pd.DataFrame({
            "flat_index": flat, "layer": (flat // self.d_ffn).astype(np.int32),
            "neuron": (flat % self.d_ffn).astype(np.int32), "drift_up": self.drift_up,
            "drift_down": self.drift_down, "delta": self.delta, "rank": self.rank,
            "delta_layer": self.delta_layer, "rank_layer": self.rank_layer, "is_selected": selected})


def check_neurons(neurons: Sequence[int] | np.ndarray, n_neurons: int) -> np.ndarray:
    """Sorted unique int64 flat indices, each in [0, n_neurons); otherwise a one-line error."""
    arr = np.unique(np.asarray(neurons, dtype=np.int64))
    if arr.size and (arr[0] < 0 or arr[-1] >= n_neurons):
        raise HNeuronsError(f"neuron indices must lie in [0, {n_neurons}); got {arr[0]}..{arr[-1]}")
    return arr


def set_drift_summary(table: DriftTable, neurons: np.ndarray, per_layer: bool = False) -> dict[str, Any]:
    """Mean normalized rank of ``neurons`` and a one-sided Welch t-test of their similarity.

    similarity = -delta (global or per-layer z-scores); H1: mean similarity of the
    set > mean of the other neurons. Returns n, mean_rank, t, p_value (nan for
    fewer than 2 neurons on either side).
    """
    neurons = check_neurons(neurons, table.n_neurons)
    rank = table.rank_layer if per_layer else table.rank
    similarity = -(table.delta_layer if per_layer else table.delta)
    inside = np.zeros(table.n_neurons, dtype=bool)
    inside[neurons] = True
    out: dict[str, Any] = {"n": int(neurons.size),
                           "mean_rank": float(rank[inside].mean()) if neurons.size else float("nan")}
    if neurons.size >= 2 and (~inside).sum() >= 2:
        test = ttest_ind(similarity[inside], similarity[~inside], equal_var=False, alternative="greater")
        out.update(t=float(test.statistic), p_value=float(test.pvalue))
    else:
        out.update(t=float("nan"), p_value=float("nan"))
    return out


def random_set_summaries(table: DriftTable, exclude: np.ndarray, n: int, seeds: Sequence[int],
                         per_layer: bool = False, layer_matched: bool = False) -> list[dict[str, Any]]:
    """:func:`set_drift_summary` for random sets of ``n`` neurons outside ``exclude``, one per seed.

    ``layer_matched``: each set has as many neurons per layer as ``exclude`` (hneurons.probe_baselines.
    draw_layer_matched; ``n`` must then equal the size of ``exclude``); otherwise uniform over
    all other neurons (hneurons.probe_baselines.draw_random_neurons). numpy default_rng(seed) per set.
    """
    from hneurons.probe_baselines import draw_layer_matched, draw_random_neurons

    exclude = np.unique(np.asarray(exclude, dtype=np.int64))
    if layer_matched and n != exclude.size:
        raise HNeuronsError(f"layer-matched random sets have the size of the excluded set ({exclude.size}), not {n}")
    n_layers = table.n_neurons // table.d_ffn
    out = []
    for seed in seeds:
        rng = np.random.default_rng(int(seed))
        neurons = (draw_layer_matched(exclude, table.d_ffn, n_layers, rng) if layer_matched
                   else draw_random_neurons(table.n_neurons, exclude, n, rng))
        out.append({"seed": int(seed), **set_drift_summary(table, neurons, per_layer)})
    return out


def random_control(h_mean_rank: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary of random-set runs (:func:`random_set_summaries`) and the set's empirical p against them.

    Adds to each run ``p_empirical``: its own leave-one-out empirical p against the other runs
    (uniform under the null, so ``share_empirical_p_below_0.05`` is the calibration check, ~0.05).
    Returns n_sets, mean_rank {mean, sd}, n_as_stable (runs with mean rank >= the set's),
    p_empirical (the set's: (1 + n_as_stable) / (1 + n_sets)), share_p_below_0.05 (the Welch
    t-test's rate on random sets, ~0.05 if it were calibrated), share_empirical_p_below_0.05, runs.
    """
    ranks = np.array([r["mean_rank"] for r in runs], dtype=np.float64)
    for i, run in enumerate(runs):
        run["p_empirical"] = empirical_p(ranks[i], np.delete(ranks, i))
    finite = lambda key: [r[key] for r in runs if np.isfinite(r[key])]  # noqa: E731
    share = lambda values: float(np.mean(np.asarray(values) < 0.05)) if values else float("nan")  # noqa: E731
    return {"n_sets": len(runs), "mean_rank": mean_sd(ranks),
            "n_as_stable": int(np.sum(ranks >= h_mean_rank)) if np.isfinite(h_mean_rank) else None,
            "p_empirical": empirical_p(h_mean_rank, ranks),
            "share_p_below_0.05": share(finite("p_value")) if runs else float("nan"),
            "share_empirical_p_below_0.05": share(finite("p_empirical")),
            "runs": runs}


def drift_report(table: DriftTable, neurons: np.ndarray, random_seeds: Sequence[int],
                 layer_matched_seeds: Sequence[int] = ()) -> dict[str, Any]:
    """Global and per-layer summaries of ``neurons`` plus the random-set controls, as one dict.

    Per scope (global, per_layer): ``h_neurons`` = :func:`set_drift_summary` (n, mean_rank, and
    the secondary Welch test t, p_value) plus ``p_empirical`` (primary: against the uniform random
    sets, one-sided, H-Neurons more stable) and ``p_empirical_layer_matched`` (against the
    layer-matched sets; nan without ``layer_matched_seeds``); ``random`` and
    ``random_layer_matched`` = :func:`random_control` of each kind of random set.
    """
    neurons = check_neurons(neurons, table.n_neurons)
    report: dict[str, Any] = {"n_neurons": table.n_neurons, "median_drift_up": float(np.median(table.drift_up)),
                              "median_drift_down": float(np.median(table.drift_down))}
    for scope, per_layer in (("global", False), ("per_layer", True)):
        h = set_drift_summary(table, neurons, per_layer)
        entry: dict[str, Any] = {"h_neurons": h}
        for key, seeds, matched in (("random", random_seeds, False),
                                    ("random_layer_matched", layer_matched_seeds, True)):
            runs = (random_set_summaries(table, neurons, neurons.size, seeds, per_layer, matched)
                    if neurons.size else [])
            entry[key] = random_control(h["mean_rank"], runs)
        h["p_empirical"] = entry["random"]["p_empirical"]
        h["p_empirical_layer_matched"] = entry["random_layer_matched"]["p_empirical"]
        report[scope] = entry
    return report


def plot_drift_strip(ranks: np.ndarray, title: str, path, seed: int = 0) -> None:
    """Fig. 4b-style strip plot of normalized ranks (x in [0, 1]), dotted line at 0.5,
    dashed line at the mean; written as a PNG at ``path`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hneurons.io import atomic_path

    ranks = np.asarray(ranks, dtype=np.float64)
    jitter = np.random.default_rng(seed).uniform(-0.3, 0.3, ranks.size)
    fig, ax = plt.subplots(figsize=(6, 1.8), dpi=120)
    ax.scatter(ranks, jitter, s=14, alpha=0.7, color="#c0392b", edgecolors="none")
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=1)
    if ranks.size:
        ax.axvline(float(ranks.mean()), color="black", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.5, 0.5)
    ax.set_yticks([])
    ax.set_xlabel("normalized drift rank (1 = most stable)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def significance_label(p_value: float) -> str:
    """'p < 0.001' / 'p < 0.01' / 'p < 0.05' / 'n.s.' as in Fig. 4b."""
    if not np.isfinite(p_value):
        return "n/a"
    for cut in (0.001, 0.01, 0.05):
        if p_value < cut:
            return f"p < {cut:g}"
    return "n.s."


def drift_outputs(table: DriftTable, h: np.ndarray, cfg: dict[str, Any], family: str,
                  data_dir: Path, report_dir: Path, seed_for: Callable[[str], int]) -> dict[str, Any]:
    """Write drift.parquet (under ``data_dir``), h_neuron_ranks.csv, the strip plot and drift_random_sets.csv
    (under ``report_dir``) for the H-Neurons ``h``; return the drift metrics. The random sets' seeds are
    ``seed_for("origin/drift/<i>")`` and ``seed_for("origin/drift/layer/<i>")``, i < ``cfg["n_random_sets"]``."""
    seeds = [seed_for(f"origin/drift/{i}") for i in range(cfg["n_random_sets"])]
    matched = [seed_for(f"origin/drift/layer/{i}") for i in range(cfg["n_random_sets"])]
    report = drift_report(table, h, seeds, layer_matched_seeds=matched)
    frame = table.frame(h).rename(columns={"is_selected": "is_h_neuron"})
    write_parquet(data_dir / layout.ORIGIN_DRIFT, pa.Table.from_pandas(frame, preserve_index=False),
                  {"family": family, "n_h_neurons": int(h.size)})
    ranks = frame[frame["is_h_neuron"]][["flat_index", "layer", "neuron", "drift_up", "drift_down", "rank",
                                         "rank_layer"]]
    write_text(report_dir / layout.ORIGIN_RANKS, ranks.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    summary = report["global"]["h_neurons"]
    title = (f"{family}: {summary['n']} H-Neurons, mean rank {summary['mean_rank']:.3f} "
             f"(random {report['global']['random']['mean_rank']['mean']:.3f}), "
             f"empirical {significance_label(summary['p_empirical'])}")
    plot_drift_strip(ranks["rank"].to_numpy(), title, report_dir / layout.ORIGIN_STRIP, seed=cfg["seed"])
    random_rows = []
    for scope in ("global", "per_layer"):
        for kind in ("random", "random_layer_matched"):
            random_rows += [{"scope": scope, "kind": kind, **run} for run in report[scope][kind].pop("runs")]
    columns = ["scope", "kind", "seed", "n", "mean_rank", "p_empirical", "t", "p_value"]
    write_text(report_dir / layout.ORIGIN_RANDOM_SETS, pd.DataFrame(random_rows, columns=columns).to_csv(
        index=False, float_format="%.6g", lineterminator="\n"))
    return report


# ------------------------------------------------------------------ backward transfer

def base_prompt(question: str) -> str:
    """The paper's base-model prompt: the question plus ``"\\nAnswer:"`` (no chat template)."""
    return question + BASE_SUFFIX


def base_prompt_ids(tokenizer, question: str) -> list[int]:
    """Token ids of :func:`base_prompt`, with the tokenizer's BOS when it adds one."""
    return [int(i) for i in tokenizer(base_prompt(question)).input_ids]


@dataclass(frozen=True)
class LineTokens:
    """Token ids of a vocabulary that matter for the newline stop: ``newline`` (the decoded piece
    contains a newline) and ``blank`` (the decoded piece is whitespace only), sorted int64 arrays."""

    newline: np.ndarray
    blank: np.ndarray


def line_tokens(tokenizer) -> LineTokens:
    """:class:`LineTokens` of ``tokenizer`` (one decode of every id)."""
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    newline = np.array([i for i, piece in enumerate(pieces) if "\n" in piece], dtype=np.int64)
    if newline.size == 0:
        raise HNeuronsError("tokenizer has no token containing a newline; cannot stop base decoding")
    blank = np.array([i for i, piece in enumerate(pieces) if piece and not piece.strip()], dtype=np.int64)
    return LineTokens(newline, blank)


def cut_at_newline(ids: Sequence[int], lines: LineTokens) -> list[int]:
    """Generated ids up to the first line break after the answer has begun (paper: stop at the first newline).

    DEVIATION (documented reading of the paper's rule): leading whitespace-only tokens, line
    breaks included, are kept and do not stop the answer. Base models often open with a line
    break after ``"Answer:"`` (Gemma-3-270M: 34% of TriviaQA, 56% of NQ-Open responses), and
    the literal rule would leave those answers empty and drop them. The cut is at token
    granularity and ids are never re-tokenized; a token that holds text before its newline is
    dropped with it.
    """
    ids = [int(i) for i in ids]
    arr = np.asarray(ids, dtype=np.int64)
    started = np.flatnonzero(~np.isin(arr, lines.blank))
    if started.size == 0:
        return ids
    first = int(started[0])
    hits = np.flatnonzero(np.isin(arr[first + 1:], lines.newline))
    return ids[: first + 1 + int(hits[0])] if hits.size else ids


def transfer_auroc(scores: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """AUROC of probe scores on base-model rows (y: 1 = hallucinated) with a 95% bootstrap CI.

    Thresholds do not transfer between models (activation scales shift), so only
    the threshold-free AUROC is reported, as in the paper.
    """
    y = np.asarray(y)
    lo, hi = bootstrap_ci(auroc, y, scores, n_boot, seed)
    return {"n": int(y.size), "n_hallucinated": int(np.sum(y == 1)), "n_faithful": int(np.sum(y == 0)),
            "auroc": auroc(y, scores), "auroc_ci95": [lo, hi]}


def probe_transfer(probe, X_base: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """The instruct probe applied unchanged to base-model features X_base: float32[n, D]."""
    return transfer_auroc(probe.decision_function(X_base), y, n_boot, seed)
