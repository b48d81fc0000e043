"""Choosing the probe's C and measuring how stable its H-Neurons are (paper §3).

C selection (:func:`select_C`) follows the paper's criterion: validation accuracy
plus the model's greedy task accuracy with that C's H-Neurons suppressed
(:func:`make_task_accuracy`, asked hneurons.probe_inputs.validation_questions).
Choices where the paper is silent: a C whose probe has no positive weight is not
eligible (suppressing nothing would trivially win the task term); ties go to fewer
H-Neurons, then smaller C. The paper reports neither grid nor tie rule.

Stability selection (:func:`stability_selection`) resamples training *questions*
with replacement, within each label stratum, as row weights; the paper has no
stability analysis.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from tqdm import tqdm

from hneurons.errors import HNeuronsError
from hneurons.probe import L1Probe

log = logging.getLogger("probe")

TaskAccuracy = Callable[[np.ndarray], float]


# ------------------------------------------------------------------ C selection

@dataclass
class CSelection:
    """Result of :func:`select_C`: one row per C in ``table``, the fitted probes, the choice."""

    table: list[dict]
    probes: list[L1Probe]
    best_index: int

    @property
    def best_C(self) -> float:
        return self.table[self.best_index]["C"]

    @property
    def best_probe(self) -> L1Probe:
        return self.probes[self.best_index]


def check_C_grid(C_grid: list[float], where: str = "C_grid") -> list[float]:
    """Validated, sorted, de-duplicated grid; a value <= 0 (or not a number) is a one-line error."""
    if not isinstance(C_grid, (list, tuple)) or not C_grid:
        raise HNeuronsError(f"{where}: expected a non-empty list of numbers > 0")
    values = []
    for value in C_grid:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise HNeuronsError(f"{where}: every C must be a finite number > 0 (got {value!r})")
        values.append(float(value))
    return sorted(set(values))


def select_C(probe: L1Probe, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
             C_grid: list[float], task_accuracy: TaskAccuracy | None = None,
             sample_weight: np.ndarray | None = None, progress: bool = False,
             where: str = "C_grid", grid_checked: bool = False) -> CSelection:
    """The paper's C criterion: validation accuracy + task accuracy with that C's H-Neurons suppressed.

    ``probe`` is a template (cloned per C). ``X_val``/``y_val``: validation answer
    rows, 1 = hallucinated. ``task_accuracy(flat_indices int64[k]) -> float in [0, 1]``
    is the model's greedy accuracy on validation questions with those neurons at
    alpha = 0 (None: the criterion is validation accuracy alone). Identical neuron
    sets are evaluated once. Per C the table holds val_accuracy, task_accuracy,
    score (their sum), n_positive, n_negative, n_features, per_mille (positives per
    thousand neurons).

    A C whose probe has no positive weight cannot be chosen (suppressing nothing
    would trivially maximise the task term); if no C has one, HNeuronsError.
    Ties: fewer H-Neurons, then smaller C. ``where`` names the grid in error messages;
    ``grid_checked``: ``C_grid`` is already sorted, de-duplicated and positive (a typed params section).
    """
    from hneurons.stats import accuracy

    grid = list(C_grid) if grid_checked else check_C_grid(list(C_grid), where)
    cache: dict[tuple[int, ...], float] = {}
    table, probes = [], []
    for C in tqdm(grid, desc="C grid", unit="C", disable=not progress):
        fitted = clone(probe).set_params(C=C).fit(X, y, sample_weight=sample_weight)
        positive = fitted.positive_
        key = tuple(positive.tolist())
        if task_accuracy is not None and key not in cache:
            cache[key] = float(task_accuracy(positive))
        val_acc = accuracy(y_val, fitted.predict_proba(X_val)[:, 1])
        task = cache.get(key, float("nan"))
        table.append({
            "C": C, "val_accuracy": val_acc, "task_accuracy": task,
            "score": val_acc + (task if task_accuracy is not None else 0.0),
            "n_positive": int(positive.size), "n_negative": int(np.sum(fitted.coef_[0] < 0)),
            "n_features": int(X.shape[1]), "per_mille": 1000.0 * positive.size / X.shape[1],
            "kkt_max_violation": fitted.kkt_max_violation_, "kkt_converged": bool(fitted.kkt_converged_),
        })
        probes.append(fitted)
    eligible = [i for i, row in enumerate(table) if row["n_positive"] > 0]
    if not eligible:
        raise HNeuronsError(f"{where}: no C in {grid} gives any positive weight (no H-Neurons); "
                            "add larger C values")
    best = min(eligible, key=lambda i: (-table[i]["score"], table[i]["n_positive"], table[i]["C"]))
    for i, row in enumerate(table):
        row["chosen"] = i == best
    return CSelection(table, probes, best)


def log_selection(selection: CSelection, n_features: int) -> None:
    """Log the chosen C and its H-Neuron count, and warn for every C whose working set stopped unconverged."""
    h = selection.best_probe.positive_
    log.info("chosen C=%g: %d H-Neurons (%.4f per mille)", selection.best_C, h.size, 1000 * h.size / n_features)
    for row in selection.table:
        if not row["kkt_converged"]:
            log.warning("C=%g: working set stopped after max rounds with KKT violation %.3g > kkt_tol; "
                        "its weights are approximate (raise probe.max_add)", row["C"], row["kkt_max_violation"])


# ------------------------------------------------------------------ stability selection

def bootstrap_weights(groups: np.ndarray, rng: np.random.Generator, strata: np.ndarray | None = None) -> np.ndarray:
    """Row weights for one bootstrap resample of groups (questions): float64[n_rows].

    Groups are drawn with replacement (within each stratum if ``strata`` is given,
    keeping each stratum's group count); every row of a group drawn m times gets
    weight m, so both regions of a question move together.
    """
    groups = np.asarray(groups)
    uniq, inverse = np.unique(groups, return_inverse=True)
    if strata is None:
        group_stratum = np.zeros(uniq.size, dtype=np.int64)
    else:
        strata = np.asarray(strata)
        group_stratum = np.empty(uniq.size, dtype=strata.dtype)
        group_stratum[inverse] = strata
    counts = np.zeros(uniq.size, dtype=np.float64)
    for stratum in np.unique(group_stratum):
        members = np.flatnonzero(group_stratum == stratum)
        drawn = rng.choice(members, size=members.size, replace=True)
        np.add.at(counts, drawn, 1.0)
    return counts[inverse]


def stability_selection(probe: L1Probe, X: np.ndarray, y: np.ndarray, groups: np.ndarray, n_boot: int,
                        seed: int, sample_weight: np.ndarray | None = None, strata: np.ndarray | None = None,
                        progress: bool = False) -> np.ndarray:
    """Share of ``n_boot`` bootstrap refits (resampling groups) in which each neuron's weight is > 0.

    Returns float64[n_features] in [0, 1] (zeros if n_boot == 0). The refits reuse X
    unchanged: a resample is expressed as row weights (multiplicities), never a copy.
    """
    if n_boot < 0:
        raise HNeuronsError(f"n_bootstrap must be >= 0 (got {n_boot})")
    base = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    counts = np.zeros(X.shape[1], dtype=np.float64)
    rng = np.random.default_rng(seed)
    for _ in tqdm(range(n_boot), desc="stability bootstrap", unit="fit", disable=not progress):
        weights = base * bootstrap_weights(groups, rng, strata)
        fitted = clone(probe).set_params(progress=False).fit(X, y, sample_weight=weights)
        counts[fitted.positive_] += 1.0
    return counts / n_boot if n_boot else counts


# ------------------------------------------------------------------ task term

def make_task_accuracy(model, tokenizer, questions: pd.DataFrame, task: dict[str, Any], section: str = "probe"):
    """Callable flat_indices -> greedy accuracy on ``questions`` with those neurons scaled by task.alpha.

    ``questions``: columns question, answers, prompt_ids; ``task``: alpha, max_new_tokens,
    batch_size (``section`` names them in error messages). Judged by the rule judge (alias
    match, refusals wrong). Results are memoised per neuron set.
    """
    from hneurons.generate import DecodingSettings, generate
    from hneurons.intervene import NeuronScaler
    from hneurons.judge import RuleJudge

    settings = DecodingSettings(n_samples=1, temperature=0.0, top_k=0, top_p=1.0,
                                max_new_tokens=task["max_new_tokens"]).validate(f"{section}.task")
    prompts = [[int(t) for t in ids] for ids in questions["prompt_ids"]]
    judge = RuleJudge()
    cache: dict[tuple[int, ...], float] = {}

    def task_accuracy(flat_indices: np.ndarray) -> float:
        key = tuple(int(i) for i in flat_indices)
        if key in cache:
            return cache[key]
        with NeuronScaler(model, flat_indices, alpha=task["alpha"]):
            outputs = generate(model, tokenizer, prompts, settings, None, task["batch_size"], progress=True)
        correct = [judge.judge(q, tokenizer.decode(ids, skip_special_tokens=True), list(a)).correct
                   for q, a, ids in zip(questions["question"], questions["answers"], outputs)]
        accuracy = float(np.mean(correct))
        log.info("task accuracy with %d neurons at alpha=%g: %.4f", len(flat_indices), task["alpha"], accuracy)
        cache[key] = accuracy
        return accuracy

    return task_accuracy
