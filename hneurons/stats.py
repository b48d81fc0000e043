"""Detection metrics and percentile-bootstrap confidence intervals.

``y`` is int[n] with 1 = hallucinated (positive class), 0 = faithful; ``score``
is float[n], larger = more likely hallucinated (a probability or any monotone
score). Accuracy thresholds a probability at 0.5, as the paper's
``model.predict`` does.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import rankdata

from hneurons.errors import HNeuronsError

Metric = Callable[[np.ndarray, np.ndarray], float]


def _check(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    score = np.asarray(score, dtype=np.float64)
    if y.ndim != 1 or y.shape != score.shape:
        raise HNeuronsError(f"metric inputs: y {y.shape} and score {score.shape} must be equal-length vectors")
    return y.astype(np.int64), score


def accuracy(y: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> float:
    """Share of rows whose ``score >= threshold`` equals ``y == 1`` (nan when empty)."""
    y, score = _check(y, score)
    if y.size == 0:
        return float("nan")
    return float(np.mean((score >= threshold) == (y == 1)))


def auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count 1/2); nan if one class is absent."""
    y, score = _check(y, score)
    n_pos = int(np.sum(y == 1))
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    u = float(np.sum(ranks[y == 1])) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def bootstrap_ci(metric_fn: Metric, y: np.ndarray, score: np.ndarray, n_boot: int, seed: int,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of ``metric_fn(y, score)`` over rows resampled with replacement.

    Resamples where the metric is nan (e.g. AUROC with one class) are dropped;
    returns (nan, nan) if none is left or ``n_boot`` is 0. Deterministic given ``seed``.
    """
    y, score = _check(y, score)
    if n_boot < 0:
        raise HNeuronsError(f"bootstrap_ci: n_boot must be >= 0 (got {n_boot})")
    if n_boot == 0 or y.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot, dtype=np.float64)
    for b in range(n_boot):
        idx = rng.integers(0, y.size, size=y.size)
        values[b] = metric_fn(y[idx], score[idx])
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)


def detection_summary(y: np.ndarray, score: np.ndarray, n_boot: int, seed: int) -> dict[str, float | int]:
    """Accuracy (threshold 0.5) and AUROC with bootstrap 95% CIs, plus class counts."""
    y, score = _check(y, score)
    acc_lo, acc_hi = bootstrap_ci(accuracy, y, score, n_boot, seed)
    auc_lo, auc_hi = bootstrap_ci(auroc, y, score, n_boot, seed)
    return {
        "n": int(y.size), "n_hallucinated": int(np.sum(y == 1)), "n_faithful": int(np.sum(y == 0)),
        "accuracy": accuracy(y, score), "accuracy_ci95": [acc_lo, acc_hi],
        "auroc": auroc(y, score), "auroc_ci95": [auc_lo, auc_hi],
    }


def mean_sd(values: list[float] | np.ndarray) -> dict[str, float]:
    """Mean and sample standard deviation (ddof=1; sd nan for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    sd = float(np.std(arr, ddof=1)) if arr.size > 1 else float("nan")
    return {"mean": float(np.mean(arr)) if arr.size else float("nan"), "sd": sd}
