"""Detection metrics, percentile-bootstrap and item-cluster-bootstrap confidence intervals.

``y`` is int[n] with 1 = hallucinated (positive class), 0 = faithful; ``score``
is float[n], larger = more likely hallucinated (a probability or any monotone
score). Accuracy thresholds a probability at 0.5, as the paper's
``model.predict`` does.

Item-cluster bootstrap: when several rows share an item (the same question under
several neuron sets, alphas or samples), rows are not independent and a row
bootstrap gives too narrow CIs. :func:`cluster_weights` / :func:`cluster_bootstrap`
resample item ids with replacement and carry every row of each drawn item;
:func:`paired_alpha_effects` builds the H-Neurons vs random-set effects on it.
:data:`FLOOR_PER_CLASS` / :func:`flag_small` mark cells too small to read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
    return percentile_ci(values, level)


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


# ---------------------------------------------------------------- small-cell floor

#: Fewest rows per class (or per condition, for a rate) below which a cell is flagged as too few to
#: read: with < 30 rows one response moves a rate by > 3 pp and a percentile CI is unreliable.
FLOOR_PER_CLASS = 30


def flag_small(n_per_class: dict[str, int] | int, floor: int = FLOOR_PER_CLASS) -> str | None:
    """A one-line reason when any class has fewer than ``floor`` rows, else None.

    n_per_class: {class name: row count} (e.g. {"faithful": 12, "hallucinated": 40}) or one
    count (a rate's denominator). Counts are rows (responses or items), not percentages.
    """
    counts = {"n": n_per_class} if isinstance(n_per_class, (int, np.integer)) else dict(n_per_class)
    if not counts:
        return f"no rows (floor {floor} per class)"
    small = {name: int(n) for name, n in counts.items() if int(n) < floor}
    if not small:
        return None
    what = ", ".join(f"{name} {n}" for name, n in small.items())
    return f"fewer than {floor} rows per class ({what})"


# ---------------------------------------------------------------- cluster bootstrap

def cluster_weights(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """Multiplicity of each cluster in ``n_boot`` resamples of ``n_clusters`` clusters: float64[n_boot, n_clusters].

    Resample b draws ``n_clusters`` cluster positions with replacement
    (``rng.integers(0, n_clusters, n_clusters)``, one call per resample, numpy
    ``default_rng(seed)``); entry [b, i] counts how often cluster i was drawn (rows sum to
    ``n_clusters``). A statistic that is a function of sums over rows (means, ratios of
    sums, OLS) evaluated with these weights equals the statistic of the concatenated rows
    of the drawn clusters. Deterministic given ``seed``.
    """
    if n_boot < 0 or n_clusters < 0:
        raise HNeuronsError(f"cluster_weights: n_boot ({n_boot}) and n_clusters ({n_clusters}) must be >= 0")
    rng = np.random.default_rng(seed)
    out = np.zeros((n_boot, n_clusters), dtype=np.float64)
    if n_clusters == 0:
        return out
    for b in range(n_boot):
        out[b] = np.bincount(rng.integers(0, n_clusters, size=n_clusters), minlength=n_clusters)
    return out


def cluster_bootstrap(statistic: Callable[[np.ndarray], float], clusters: np.ndarray, n_boot: int,
                      seed: int) -> np.ndarray:
    """Bootstrap values of a row statistic when rows come in clusters (e.g. items): float64[n_boot].

    clusters: one cluster id per row, any hashable values, [n_rows]. Each resample draws the
    distinct clusters (sorted) with replacement, exactly as :func:`cluster_weights` does with the
    same ``seed``, and calls ``statistic(rows)`` with int64 indices of every row of every drawn
    cluster (a cluster drawn twice contributes its rows twice). So every row of an item, in
    every set and condition, travels together. Deterministic given ``seed``.
    """
    clusters = np.asarray(clusters)
    if n_boot < 0:
        raise HNeuronsError(f"cluster_bootstrap: n_boot must be >= 0 (got {n_boot})")
    ids, position = np.unique(clusters, return_inverse=True)
    members = [np.flatnonzero(position == i) for i in range(ids.size)]
    rng = np.random.default_rng(seed)
    values = np.full(n_boot, np.nan)
    if ids.size == 0:
        return values
    for b in range(n_boot):
        drawn = rng.integers(0, ids.size, size=ids.size)
        values[b] = statistic(np.concatenate([members[i] for i in drawn]))
    return values


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap values float[n_boot] (nan values dropped; (nan, nan) if none)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)


def weighted_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted means over items, skipping nan entries: float64[n_boot, k].

    values: float[n_items, k] (nan = item absent from that column, e.g. not in a rate's
    denominator); weights: float[n_boot, n_items] (e.g. :func:`cluster_weights`, or a single
    row of ones for the point estimate). Entry [b, j] = sum_i w[b,i] x[i,j] / sum_i w[b,i] over
    items with x[i,j] not nan; nan where that sum of weights is 0.
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    present = ~np.isnan(values)
    total = weights @ np.where(present, values, 0.0)
    mass = weights @ present.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, total / np.where(mass > 0, mass, 1.0), np.nan)


def ols_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OLS slope of each row of ``y`` on ``x``, nan points left out: float64[n_rows].

    x: float[k] (e.g. alphas); y: float[n_rows, k] (e.g. rates per alpha, one row per
    bootstrap resample), in y units per x unit; nan for a row with < 2 distinct x left.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    mask = ~np.isnan(y)
    n = mask.sum(axis=1)
    xm = np.where(mask, x, 0.0)
    ym = np.where(mask, y, 0.0)
    sx, sy = xm.sum(axis=1), ym.sum(axis=1)
    sxx, sxy = (xm * xm).sum(axis=1), (xm * ym).sum(axis=1)
    denom = n * sxx - sx * sx
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (n * sxy - sx * sy) / denom
    # fewer than two distinct x: the denominator is 0 up to rounding
    scale = np.maximum(n * sxx, 1e-300)
    return np.where((n >= 2) & (np.abs(denom) > 1e-12 * scale), slope, np.nan)


def endpoint_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(y at max x - y at min x) / (max x - min x) per row of y float[n_rows, k]: float64[n_rows]
    (nan if an end is nan)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    lo, hi = int(np.argmin(x)), int(np.argmax(x))
    if x[hi] == x[lo]:
        return np.full(y.shape[0], np.nan)
    return (y[:, hi] - y[:, lo]) / (x[hi] - x[lo])


def paired_alpha_effects(alphas: np.ndarray, h: np.ndarray, random: np.ndarray, n_boot: int, seed: int,
                         level: float = 0.95) -> dict[str, list[dict[str, Any]]]:
    """H-Neurons vs random sets as paired per-item differences, with item-cluster-bootstrap CIs.

    alphas: float[A]; h: float[n_items, A], one outcome per item and alpha for the H-Neurons
    (1 = compliant / 0 = not, or any per-item score; nan = no response counted there, e.g. not
    in the denominator or alpha not run); random: float[n_sets, n_items, A], the same for each
    random set, items aligned with ``h``. Outcomes in [0, 1] are reported in percentage points.

    The random value of item i at alpha a is its mean over the sets that have it (nan if none);
    the item's difference is ``h - that mean`` (nan if either is nan). Every statistic is a mean
    over items (items weighted equally), resampled by :func:`cluster_weights` (one draw of items
    per resample, shared by every alpha, set and quantity: a drawn item carries all its rows).

    Returns ``{"by_alpha": [...], "slopes": [...]}``:

    - by_alpha, one record per alpha with at least one paired item: alpha, n (paired items),
      n_sets (random sets with a value there), h_pp, random_pp, diff_pp (= h_pp - random_pp, over
      the paired items), diff_ci_lo, diff_ci_hi;
    - slopes, one record per (quantity, kind): quantity h_neurons | random | h_minus_random, kind
      ols | endpoint, slope_pp_per_alpha with ci_lo / ci_hi, n (items with any value in that
      quantity), n_alphas and alphas (the alphas the slope is fitted over: every alpha with a
      value for that quantity). h_neurons and random use per-alpha means over the items present
      at that alpha; h_minus_random is the slope of the mean paired difference.
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    random = np.asarray(random, dtype=np.float64)
    if random.ndim == 2:
        random = random[None]
    n_items, n_alpha = h.shape if h.ndim == 2 else (-1, -1)
    if h.ndim != 2 or alphas.shape != (n_alpha,) or random.ndim != 3 or random.shape[1:] != h.shape:
        raise HNeuronsError(f"paired_alpha_effects: alphas {alphas.shape}, h {h.shape} and random {random.shape} "
                            f"must be [A], [n_items, A] and [n_sets, n_items, A]")
    if n_boot < 0:
        raise HNeuronsError(f"paired_alpha_effects: n_boot must be >= 0 (got {n_boot})")
    with np.errstate(invalid="ignore"):
        has = ~np.isnan(random)
        count = has.sum(axis=0)
        r = np.where(count > 0, np.where(has, random, 0.0).sum(axis=0) / np.maximum(count, 1), np.nan)
    diff = h - r
    paired = ~np.isnan(diff)
    weights = cluster_weights(n_items, n_boot, seed)
    ones = np.ones((1, n_items))
    pct = 100.0

    def point_and_boot(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return pct * weighted_means(values, ones)[0], pct * weighted_means(values, weights)

    d_point, d_boot = point_and_boot(diff)
    h_paired = weighted_means(np.where(paired, h, np.nan), ones)[0] * pct
    r_paired = weighted_means(np.where(paired, r, np.nan), ones)[0] * pct
    by_alpha = []
    for a in range(n_alpha):
        if not paired[:, a].any():
            continue
        lo, hi = percentile_ci(d_boot[:, a], level)
        by_alpha.append({"alpha": float(alphas[a]), "n": int(paired[:, a].sum()),
                         "n_sets": int(has[:, :, a].any(axis=1).sum()), "h_pp": float(h_paired[a]),
                         "random_pp": float(r_paired[a]), "diff_pp": float(d_point[a]),
                         "diff_ci_lo": lo, "diff_ci_hi": hi})
    slopes = []
    for quantity, values in (("h_neurons", h), ("random", r), ("h_minus_random", diff)):
        present = ~np.isnan(values)
        cols = np.flatnonzero(present.any(axis=0))
        point, boot = point_and_boot(values[:, cols])
        for kind, fit in (("ols", ols_slopes), ("endpoint", endpoint_slopes)):
            if cols.size < 2:
                slope, (lo, hi) = float("nan"), (float("nan"), float("nan"))
            else:
                slope = float(fit(alphas[cols], point[None])[0])
                lo, hi = percentile_ci(fit(alphas[cols], boot), level)
            slopes.append({"quantity": quantity, "kind": kind, "slope_pp_per_alpha": slope, "ci_lo": lo,
                           "ci_hi": hi, "n": int(present.any(axis=1).sum()), "n_alphas": int(cols.size),
                           "alphas": [float(a) for a in alphas[cols]]})
    return {"by_alpha": by_alpha, "slopes": slopes}


def empirical_p(statistic: float, null: np.ndarray, greater: bool = True) -> float:
    """One-sided Monte-Carlo p-value of ``statistic`` against null draws float[n_null] of the same statistic.

    p = (1 + #null draws at least as extreme) / (1 + n_null), extreme = ``>= statistic`` when
    ``greater`` (else ``<=``); nan draws are left out; nan when the statistic is nan or no draw is
    left. Valid (P(p <= u) <= u) when the statistic and the draws are exchangeable under the null;
    its smallest value is 1 / (1 + n_null).
    """
    null = np.asarray(null, dtype=np.float64)
    null = null[~np.isnan(null)]
    if not np.isfinite(statistic) or null.size == 0:
        return float("nan")
    extreme = np.sum(null >= statistic) if greater else np.sum(null <= statistic)
    return float((1 + extreme) / (1 + null.size))
