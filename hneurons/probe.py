"""The sparse L1 logistic probe over CETT features (paper §3, §6.1.3): estimator, labels, save/load.

Features: ``X: float32[n_rows, n_layers * d_ffn]`` (mean CETT per row; flat index
``layer * d_ffn + neuron``); labels ``y: int[n_rows]`` in {0, 1}, 1 = hallucinated
answer region. The matrix is never copied whole and never converted to float64:
every full-width computation streams over row blocks of bounded size.

:class:`L1Probe` is a scikit-learn style estimator for the paper's classifier,
``LogisticRegression(penalty='l1', solver='liblinear')`` (written ``l1_ratio=1``,
as ``penalty=`` is deprecated in scikit-learn 1.8+), unscaled by default like the
authors, with an intercept that liblinear penalises like a weight. Its default
``solver='working_set'`` solves the same problem exactly while copying only a few
columns: liblinear is fitted on a working set of columns (initially the top
``screen_size`` by the screening score ``|X_j^T w(y - ybar)|``), then one streaming
pass checks the optimality (KKT) condition ``C |X_j^T w(p - y)| <= 1`` of every
column left out; the worst violators join the working set and liblinear refits,
until no column violates it by more than ``kkt_tol``. Full liblinear copies the
matrix twice in float64 (~9x the float32 size) and counts non-zeros in int32.

H-Neurons are the columns with a positive weight at the chosen C
(C selection and stability: hneurons.probe_selection; baselines: hneurons.probe_baselines).

Deviation from the authors' code: ``tol`` defaults to 1e-6 (theirs: sklearn's
1e-4), because the positive-weight set measurably depends on it (docs/params.md).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from hneurons.errors import HNeuronsError

LABELLINGS = ("3-vs-1", "1-vs-1")
SOLVERS = ("working_set", "liblinear")
LIBLINEAR_MAX_NNZ = 2**31 - 1
_BLOCK_BYTES = 16 << 20


# ------------------------------------------------------------------ labels

def training_labels(region: np.ndarray, label: np.ndarray, labelling: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows used and their probe labels for one labelling scheme.

    region: str[n] ("answer" | "other"); label: int[n] (1 = hallucinated response).
    ``3-vs-1`` (paper): every row is used; y = 1 only for answer rows of hallucinated
    responses (faithful answer rows and the other-token rows of both classes are 0).
    ``1-vs-1``: answer rows only, y = the response label.
    Returns (keep: bool[n], y: int8[n]); y is 0 where keep is False.
    """
    region = np.asarray(region).astype(str)
    label = np.asarray(label).astype(np.int64)
    bad_regions = sorted(set(np.unique(region)) - {"answer", "other"})
    if bad_regions:
        raise HNeuronsError(f"activations: unknown region values {bad_regions} (expected answer, other)")
    bad_labels = sorted(set(np.unique(label).tolist()) - {0, 1})
    if bad_labels:
        raise HNeuronsError(f"activations: label values {bad_labels} (expected 0, 1)")
    answer = region == "answer"
    if labelling == "3-vs-1":
        keep = np.ones(region.shape, dtype=bool)
        y = (answer & (label == 1)).astype(np.int8)
    elif labelling == "1-vs-1":
        keep = answer
        y = np.where(answer, label, 0).astype(np.int8)
    else:
        raise HNeuronsError(f"labelling={labelling!r}: expected one of {', '.join(LABELLINGS)}")
    return keep, y


# ------------------------------------------------------------------ streaming passes

def row_blocks(n_rows: int, n_cols: int, itemsize: int = 8, budget: int = _BLOCK_BYTES) -> Iterator[slice]:
    """Row slices whose float64 image (``itemsize`` bytes per element) fits ``budget`` bytes."""
    step = max(1, min(n_rows, budget // max(1, n_cols * itemsize)))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def column_stats(X: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted column means and standard deviations, float64[n_features] each, in one pass.

    Rows are weighted by ``weight: float[n_rows]`` (>= 0). A zero-variance column
    gets scale 1 so standardising maps it to 0.
    """
    weight = np.asarray(weight, dtype=np.float64)
    total = weight.sum()
    s1 = np.zeros(X.shape[1], dtype=np.float64)
    s2 = np.zeros(X.shape[1], dtype=np.float64)
    for rows in row_blocks(X.shape[0], X.shape[1]):
        block = np.asarray(X[rows], dtype=np.float64)
        w = weight[rows]
        s1 += w @ block
        s2 += w @ np.square(block)  # not in place: block may be a view of a float64 X
    mean = s1 / total
    var = np.maximum(s2 / total - mean * mean, 0.0)
    scale = np.sqrt(var)
    scale[scale <= 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0
    return mean, scale


def xt_dot(X: np.ndarray, r: np.ndarray, mean: np.ndarray | None = None,
           scale: np.ndarray | None = None) -> np.ndarray:
    """``X~^T r`` streaming over row blocks: float64[n_features] for r float[n], float64[k, n_features]
    for r float[n, k] (k vectors in one pass over X).

    X~ is X, or (X - mean) / scale when both are given. Each block is converted to
    float64 (a bounded copy, at most 16 MiB), so the sums are exact to float64.
    """
    r = np.asarray(r, dtype=np.float64)
    out = np.zeros(r.shape[1:] + (X.shape[1],), dtype=np.float64)
    for rows in row_blocks(X.shape[0], X.shape[1]):
        out += r[rows].T @ np.asarray(X[rows], dtype=np.float64)
    if mean is not None and scale is not None:
        out = (out - np.multiply.outer(r.sum(axis=0), mean)) / scale
    return out


# ------------------------------------------------------------------ estimator

def _check_nnz(n_rows: int, n_cols: int, what: str) -> None:
    nnz = n_rows * (n_cols + 2)
    if nnz > LIBLINEAR_MAX_NNZ:
        raise HNeuronsError(
            f"{what}: {n_rows} rows x {n_cols} columns exceeds liblinear's int32 non-zero count (2^31); "
            f"use solver='working_set' with a smaller screen_size/max_add, or fewer rows")


def _check_xy(X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if not (hasattr(X, "shape") and hasattr(X, "dtype") and hasattr(X, "__getitem__")):
        X = np.asarray(X, dtype=np.float32)
    if len(X.shape) != 2 or X.dtype not in (np.float32, np.float64):
        raise HNeuronsError(f"X must be a 2-D float32/float64 array (got {X.dtype} {X.shape})")
    y = np.asarray(y)
    if y.shape != (X.shape[0],):
        raise HNeuronsError(f"y has shape {y.shape}; expected ({X.shape[0]},)")
    if not np.isin(y, (0, 1)).all():
        raise HNeuronsError("y must contain only 0 and 1")
    w = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (X.shape[0],) or (w < 0).any() or not np.isfinite(w).all():
        raise HNeuronsError("sample_weight must be finite, >= 0, one per row")
    for cls in (0, 1):
        if not (w[y == cls] > 0).any():
            name = "hallucinated (1)" if cls else "faithful/other (0)"
            raise HNeuronsError(f"probe training data has no {name} rows with positive weight")
    return y.astype(np.float64), w


def _liblinear(Xw: np.ndarray, y: np.ndarray, w: np.ndarray, C: float, tol: float, max_iter: int,
               random_state: int | None) -> tuple[np.ndarray, float]:
    """L1 logistic regression by liblinear on a (small) dense matrix: (coef float64[k], intercept)."""
    _check_nnz(Xw.shape[0], Xw.shape[1], "liblinear")
    model = LogisticRegression(l1_ratio=1.0, C=C, solver="liblinear", tol=tol, max_iter=max_iter,
                               random_state=random_state)
    model.fit(Xw, y.astype(np.int64), sample_weight=w)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


class L1Probe(ClassifierMixin, BaseEstimator):
    """L1-penalised logistic regression over all neurons (the paper's H-Neuron probe).

    Minimises ``||theta||_1 + |b| + C * sum_i w_i * BCE(y_i, sigmoid(theta^T x_i + b))``
    (liblinear's formulation; ``C = 1/lambda``).

    Parameters: ``C`` inverse penalty (> 0); ``tol`` liblinear tolerance;
    ``standardize`` z-score columns with training means/sds (computed in one
    streaming pass, never a float64 copy; the weights are then in standardized
    units); ``solver`` 'working_set' (exact, memory-light; default) or 'liblinear'
    (the whole matrix, ~9x its float32 size); ``screen_size`` initial working-set
    size; ``max_add`` the fewest violators added per round (more, up to doubling the set); ``kkt_tol`` accepted KKT
    violation (``C|grad_j| <= 1 + kkt_tol``); ``max_rounds`` working-set rounds.

    Fitted attributes: ``coef_`` float64[1, n_features], ``intercept_`` float64[1],
    ``classes_`` [0, 1], ``n_features_in_``, ``mean_``/``scale_`` (float64[n_features]
    or None), ``n_rounds_``, ``working_set_size_``, ``kkt_max_violation_`` (largest
    ``C|grad_j| - 1`` outside the working set; nan for solver='liblinear'),
    ``kkt_converged_``, ``effective_tol_`` (the tolerance handed to liblinear in
    the last round; see ``_fit_working_set``).
    """

    def __init__(self, C: float = 1.0, tol: float = 1e-6, standardize: bool = False,
                 solver: str = "working_set", max_iter: int = 1000, screen_size: int = 500,
                 max_add: int = 500, kkt_tol: float = 1e-3, max_rounds: int = 50,
                 random_state: int | None = 42, progress: bool = False) -> None:
        self.C = C
        self.tol = tol
        self.standardize = standardize
        self.solver = solver
        self.max_iter = max_iter
        self.screen_size = screen_size
        self.max_add = max_add
        self.kkt_tol = kkt_tol
        self.max_rounds = max_rounds
        self.random_state = random_state
        self.progress = progress

    # -- fitting
    def _validate_params(self) -> None:
        if not (isinstance(self.C, (int, float)) and math.isfinite(self.C) and self.C > 0):
            raise HNeuronsError(f"C must be a finite number > 0 (got {self.C!r})")
        if not (self.tol > 0):
            raise HNeuronsError(f"tol must be > 0 (got {self.tol!r})")
        if self.solver not in SOLVERS:
            raise HNeuronsError(f"solver={self.solver!r}: expected one of {', '.join(SOLVERS)}")
        for name in ("max_iter", "screen_size", "max_add", "max_rounds"):
            if int(getattr(self, name)) < 1:
                raise HNeuronsError(f"{name} must be >= 1 (got {getattr(self, name)!r})")
        if self.kkt_tol < 0:
            raise HNeuronsError(f"kkt_tol must be >= 0 (got {self.kkt_tol!r})")

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> L1Probe:
        """Fit on ``X: float32[n, D]``, ``y: {0,1}[n]``; rows with weight 0 are ignored.

        X is a numpy array or any matrix with ``shape``, ``dtype``, row slices ``X[a:b]`` and column
        gathers ``X[:, cols]`` (e.g. hneurons.activation_rows.RowMatrix, rows on disk): the working-set
        solver reads it only that way, so the result equals the in-memory fit's.
        """
        self._validate_params()
        y64, w = _check_xy(X, y, sample_weight)
        n_features = X.shape[1]
        if self.standardize:
            self.mean_, self.scale_ = column_stats(X, w)
        else:
            self.mean_, self.scale_ = None, None
        if self.solver == "liblinear":
            coef, intercept = self._fit_full(X, y64, w)
        else:
            coef, intercept = self._fit_working_set(X, y64, w)
        self.coef_ = coef.reshape(1, n_features)
        self.intercept_ = np.array([intercept])
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = n_features
        return self

    def _fit_full(self, X: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
        _check_nnz(X.shape[0], X.shape[1], "solver='liblinear'")
        X = np.asarray(X)
        Xs = X if self.mean_ is None else ((X - self.mean_) / self.scale_).astype(X.dtype)
        coef, intercept = _liblinear(Xs, y, w, self.C, self.tol, self.max_iter, self.random_state)
        self.n_rounds_, self.working_set_size_, self.effective_tol_ = 1, X.shape[1], self.tol
        self.kkt_max_violation_, self.kkt_converged_ = float("nan"), True
        return coef, intercept

    def _columns(self, X: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """X~[:, cols] as a small dense copy in X's dtype (standardized if configured)."""
        block = X[:, cols]
        if self.mean_ is not None:
            block = ((block - self.mean_[cols]) / self.scale_[cols]).astype(X.dtype)
        return block

    def _fit_working_set(self, X: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
        """Working set + KKT loop (see the module docstring).

        liblinear stops when the summed optimality violation falls below ``tol`` times
        its value at w = 0, summed over the columns it is given. On a working set that
        reference sum covers only the working columns, so ``tol`` is rescaled by
        (sum over all columns) / (sum over the working columns): every fit stops at the
        same absolute violation as liblinear on the whole matrix would (``effective_tol_``).
        The working set grows by the worst violators, at least ``max_add`` and at most
        doubling per round, so the number of rounds stays logarithmic.
        """
        n_features = X.shape[1]
        ybar = float(w @ y / w.sum())
        wy_x, w_x = xt_dot(X, np.column_stack([w * y, w]), self.mean_, self.scale_)
        screen = np.abs(wy_x - ybar * w_x)
        # liblinear's violation at w = 0 (p = 1/2) per column, and for the bias column (value 1)
        zero_violation = np.maximum(self.C * np.abs(0.5 * w_x - wy_x) - 1.0, 0.0)
        bias_violation = max(self.C * abs(float(w @ (0.5 - y))) - 1.0, 0.0)
        total_violation = zero_violation.sum() + bias_violation
        order = np.argsort(-screen, kind="stable")
        working = np.sort(order[: min(int(self.screen_size), n_features)])
        rounds = tqdm(range(1, int(self.max_rounds) + 1), desc=f"L1 probe C={self.C:g}", unit="round",
                      disable=not self.progress, leave=False)
        coef_w, intercept, violation, converged, tol = np.zeros(0), 0.0, float("inf"), False, self.tol
        for n_round in rounds:
            working_violation = zero_violation[working].sum() + bias_violation
            tol = self.tol * total_violation / working_violation if working_violation > 0 else self.tol
            Xw = self._columns(X, working)
            coef_w, intercept = _liblinear(Xw, y, w, self.C, tol, self.max_iter, self.random_state)
            margin = Xw @ coef_w.astype(X.dtype) + intercept
            del Xw
            grad = xt_dot(X, w * (expit(margin.astype(np.float64)) - y), self.mean_, self.scale_)
            excess = self.C * np.abs(grad) - 1.0
            excess[working] = -np.inf
            violation = float(excess.max()) if working.size < n_features else -1.0
            if violation <= self.kkt_tol:
                converged = True
                break
            candidates = np.flatnonzero(excess > self.kkt_tol)
            n_add = max(int(self.max_add), working.size)
            worst = candidates[np.argsort(-excess[candidates], kind="stable")[:n_add]]
            working = np.union1d(working, worst)
        coef = np.zeros(n_features, dtype=np.float64)
        coef[working] = coef_w
        self.n_rounds_, self.working_set_size_, self.effective_tol_ = n_round, int(working.size), tol
        self.kkt_max_violation_, self.kkt_converged_ = violation, converged
        return coef, intercept

    # -- prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise HNeuronsError("L1Probe is not fitted")

    @property
    def support_(self) -> np.ndarray:
        """Indices of non-zero weights, int64[k]."""
        self._check_fitted()
        return np.flatnonzero(self.coef_[0])

    @property
    def positive_(self) -> np.ndarray:
        """Indices of positive weights (the H-Neurons), int64[k]."""
        self._check_fitted()
        return np.flatnonzero(self.coef_[0] > 0)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """theta^T x~ + b for each row: float64[n]."""
        self._check_fitted()
        if len(X.shape) != 2 or X.shape[1] != self.n_features_in_:
            raise HNeuronsError(f"X has {X.shape[-1]} features; the probe was fitted on {self.n_features_in_}")
        cols = self.support_
        block = np.asarray(X[:, cols], dtype=np.float64)
        if self.mean_ is not None:
            block = (block - self.mean_[cols]) / self.scale_[cols]
        return block @ self.coef_[0, cols] + self.intercept_[0]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """[P(y=0), P(y=1)] per row: float64[n, 2]."""
        p = expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class per row (P(y=1) >= 0.5 -> 1): int64[n]."""
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)


# ------------------------------------------------------------------ persistence

def h_neuron_frame(probe: L1Probe, d_ffn: int, frequency: np.ndarray | None = None):
    """H-Neurons as a pandas frame sorted by flat_index.

    Columns: layer int32, neuron int32, flat_index int64, weight float64 (in the
    probe's units), selection_frequency float64 (share of bootstrap refits with a
    positive weight; nan without ``frequency``).
    """
    import pandas as pd

    flat = probe.positive_
    freq = np.full(flat.size, np.nan) if frequency is None else np.asarray(frequency)[flat]
    return pd.DataFrame({
        "layer": (flat // d_ffn).astype(np.int32), "neuron": (flat % d_ffn).astype(np.int32),
        "flat_index": flat.astype(np.int64), "weight": probe.coef_[0, flat].astype(np.float64),
        "selection_frequency": freq.astype(np.float64),
    })


def save_probe(probe: L1Probe, directory, metadata: dict | None = None) -> None:
    """Write ``probe.safetensors`` (support int64[k], coef float64[k], intercept float64[1],
    and mean/scale float64[k] at the support when standardized) and ``probe.json``
    (hyper-parameters, n_features, fit diagnostics, ``metadata``) into ``directory``.
    No pickle; load with :func:`load_probe`.
    """
    from pathlib import Path

    from safetensors.numpy import save

    from hneurons.io import atomic_path, write_json

    probe._check_fitted()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    support = probe.support_
    tensors = {"support": support.astype(np.int64), "coef": probe.coef_[0, support].astype(np.float64),
               "intercept": probe.intercept_.astype(np.float64)}
    if probe.mean_ is not None:
        tensors["mean"] = probe.mean_[support].astype(np.float64)
        tensors["scale"] = probe.scale_[support].astype(np.float64)
    with atomic_path(directory / "probe.safetensors") as tmp:
        tmp.write_bytes(save(tensors))
    info = {
        "format": "hneurons.L1Probe/1", "params": probe.get_params(), "n_features": int(probe.n_features_in_),
        "n_nonzero": int(support.size), "n_positive": int(probe.positive_.size),
        "n_rounds": int(probe.n_rounds_), "working_set_size": int(probe.working_set_size_),
        "effective_tol": float(probe.effective_tol_),
        "kkt_max_violation": _finite_or_none(probe.kkt_max_violation_),
        "kkt_converged": bool(probe.kkt_converged_), "metadata": metadata or {},
    }
    write_json(directory / "probe.json", info)


def load_probe(directory) -> tuple[L1Probe, dict]:
    """Inverse of :func:`save_probe`: (a fitted L1Probe usable for prediction, metadata dict)."""
    import json
    from pathlib import Path

    from safetensors.numpy import load_file

    directory = Path(directory)
    for name in ("probe.json", "probe.safetensors"):
        if not (directory / name).is_file():
            raise HNeuronsError(f"{directory / name}: not found (run the probe stage)")
    info = json.loads((directory / "probe.json").read_text(encoding="utf-8"))
    if info.get("format") != "hneurons.L1Probe/1":
        raise HNeuronsError(f"{directory / 'probe.json'}: unknown format {info.get('format')!r}")
    tensors = load_file(str(directory / "probe.safetensors"))
    probe = L1Probe(**info["params"])
    n = int(info["n_features"])
    coef = np.zeros((1, n), dtype=np.float64)
    coef[0, tensors["support"]] = tensors["coef"]
    probe.coef_, probe.intercept_ = coef, tensors["intercept"].astype(np.float64)
    probe.classes_, probe.n_features_in_ = np.array([0, 1]), n
    probe.mean_ = probe.scale_ = None
    if "mean" in tensors:
        probe.mean_, probe.scale_ = np.zeros(n), np.ones(n)
        probe.mean_[tensors["support"]] = tensors["mean"]
        probe.scale_[tensors["support"]] = tensors["scale"]
    probe.n_rounds_, probe.working_set_size_ = info["n_rounds"], info["working_set_size"]
    probe.effective_tol_ = info["effective_tol"]
    violation = info["kkt_max_violation"]
    probe.kkt_max_violation_ = float("nan") if violation is None else violation
    probe.kkt_converged_ = info["kkt_converged"]
    return probe, info["metadata"]


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
