"""Baselines for the probe: random-neuron draws and dense L2 probes on a few columns.

Choices where the paper is silent: each baseline is a z-scored L2 logistic
regression on its drawn columns (the paper does not give the baseline's
regulariser); random neurons exclude the H-Neurons, drawn uniformly over all other
neurons or layer-matched (:func:`random_baselines`, :func:`dense_probe_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.linear_model import LogisticRegression

from hneurons.errors import HNeuronsError
from hneurons.probe import column_stats


def draw_random_neurons(n_features: int, exclude: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` neurons drawn uniformly without replacement from those not in ``exclude``: sorted int64[n]."""
    pool = np.setdiff1d(np.arange(n_features), np.asarray(exclude, dtype=np.int64))
    if n > pool.size:
        raise HNeuronsError(f"cannot draw {n} random neurons from {pool.size} candidates")
    return np.sort(rng.choice(pool, size=n, replace=False))


def draw_layer_matched(exclude: np.ndarray, d_ffn: int, n_layers: int, rng: np.random.Generator) -> np.ndarray:
    """As many neurons per layer as ``exclude`` has there, drawn uniformly from that layer's others."""
    exclude = np.asarray(exclude, dtype=np.int64)
    layers = exclude // d_ffn
    drawn = []
    for layer in range(n_layers):
        k = int(np.sum(layers == layer))
        if k:
            inside = exclude[layers == layer] - layer * d_ffn
            drawn.append(layer * d_ffn + draw_random_neurons(d_ffn, inside, k, rng))
    return np.sort(np.concatenate(drawn)) if drawn else np.zeros(0, dtype=np.int64)


def dense_probe_scores(X_train: np.ndarray, y_train: np.ndarray, X_eval: np.ndarray, C: float = 1.0,
                       sample_weight: np.ndarray | None = None) -> np.ndarray:
    """P(y=1) on ``X_eval`` from an L2 logistic regression on a few standardized columns.

    For the baselines (random neurons, length), where the column count is small:
    columns are z-scored with the training rows' weighted mean/sd, then an L2
    (``l1_ratio=0``) logistic regression with inverse penalty ``C`` is fitted (lbfgs).
    X_train: float[n, k]; X_eval: float[m, k]; returns float64[m].
    """
    y_train = np.asarray(y_train)
    w = np.ones(len(y_train)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    X_train = np.asarray(X_train, dtype=np.float64)
    mean, scale = column_stats(X_train, w)
    model = LogisticRegression(l1_ratio=0.0, C=C, solver="lbfgs", max_iter=5000)
    model.fit((X_train - mean) / scale, y_train.astype(np.int64), sample_weight=w)
    return model.predict_proba((np.asarray(X_eval, dtype=np.float64) - mean) / scale)[:, 1]


@dataclass
class BaselineRun:
    """One baseline fit: which neurons, its scores on the evaluation rows."""

    seed: int
    neurons: np.ndarray
    scores: np.ndarray = field(repr=False)


def random_baselines(X_train: np.ndarray, y_train: np.ndarray, X_eval: np.ndarray, exclude: np.ndarray,
                     seeds: list[int], d_ffn: int, layer_matched: bool = False, C: float = 1.0,
                     sample_weight: np.ndarray | None = None) -> list[BaselineRun]:
    """Random-neuron probes with as many neurons as ``exclude`` (the H-Neurons), one per seed.

    Neurons are drawn uniformly from all neurons outside ``exclude`` (or, with
    ``layer_matched``, the same count per layer as ``exclude``), then scored by
    :func:`dense_probe_scores` trained on the same rows and labels as the L1 probe.
    X_train and X_eval are read once each, at the union of the drawn columns
    (``X[:, cols]``), so a lazy column reader (hneurons.activation_rows.ActivationColumns,
    RowMatrix) decodes its rows once for all seeds.
    """
    n_layers = X_train.shape[1] // d_ffn
    drawn = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        if layer_matched:
            drawn.append(draw_layer_matched(exclude, d_ffn, n_layers, rng))
        else:
            drawn.append(draw_random_neurons(X_train.shape[1], exclude, len(exclude), rng))
    union = np.unique(np.concatenate(drawn)) if drawn else np.zeros(0, dtype=np.int64)
    train_u, eval_u = X_train[:, union], X_eval[:, union]
    runs = []
    for seed, cols in zip(seeds, drawn):
        at = np.searchsorted(union, cols)
        scores = dense_probe_scores(train_u[:, at], y_train, eval_u[:, at], C, sample_weight)
        runs.append(BaselineRun(int(seed), cols, scores))
    return runs


