"""The probe stage's results: test-set evaluation against the baselines, metrics.json, and the output files.

All detection metrics are on test answer rows (label 1 = hallucinated), as in the
paper. Outputs: ``models/probe/<family>/`` (h_neurons.parquet, probe.safetensors +
probe.json, neurons_by_C.parquet, stability.parquet) and ``reports/probe/<family>/``
(metrics.json, c_grid.csv, count_vs_C.csv, per_layer.csv, baselines.csv, PNGs),
each directory written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hneurons import layout
from hneurons.io import atomic_path, csv_text, dumps_json, jsonable, write_parquet
from hneurons.probe import L1Probe, h_neuron_frame, save_probe
from hneurons.probe_baselines import dense_probe_scores, random_baselines
from hneurons.probe_figures import plot_pngs
from hneurons.probe_inputs import ProbeSplits
from hneurons.stats import mean_sd

log = logging.getLogger("probe")


def evaluate_on_test(best: L1Probe, summary, X: np.ndarray, y: np.ndarray, weight: np.ndarray,
                     train: pd.DataFrame, X_test: np.ndarray, test: pd.DataFrame, d_ffn: int,
                     baseline_C: float, seeds: list[int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Test-set summaries of the probe and every baseline; plus per-seed baseline rows for baselines.csv.

    ``summary(scores float[n_test]) -> dict`` scores test answer rows. Each baseline is a
    z-scored L2 logistic regression with inverse penalty ``baseline_C`` on the probe's
    training rows and labels: on the H-Neurons alone (the like-for-like comparison), and
    on random neurons as many as the H-Neurons (one draw per seed in ``seeds``, uniform
    over all other neurons and layer-matched). The length-only probes use log(1 +
    response token count) (and, second variant, also the answer span's token count),
    trained 1-vs-1 on training answer rows (hneurons.detect.length_probe_scores).
    """
    h = best.positive_
    out = {"probe": summary(best.predict_proba(X_test)[:, 1]),
           "h_neurons_l2": summary(dense_probe_scores(X[:, h], y, X_test[:, h], baseline_C, weight))}
    rows = []
    for variant, matched in (("random", False), ("random_layer_matched", True)):
        runs = random_baselines(X, y, X_test, h, seeds, d_ffn, layer_matched=matched, C=baseline_C,
                                sample_weight=weight)
        per_seed = [dict(seed=r.seed, **summary(r.scores)) for r in runs]
        rows += [{"variant": variant, "seed": s["seed"], "accuracy": s["accuracy"], "auroc": s["auroc"]}
                 for s in per_seed]
        out[variant] = {"n_seeds": len(runs), "n_neurons": int(h.size),
                        "accuracy": mean_sd([s["accuracy"] for s in per_seed]),
                        "auroc": mean_sd([s["auroc"] for s in per_seed]), "per_seed": per_seed}
    from hneurons.detect import length_probe_scores

    out["length"] = {name: summary(scores)
                     for name, scores in length_probe_scores(train, test, baseline_C).items()}
    return out, rows


def per_layer_counts(h_neurons: np.ndarray, n_layers: int, d_ffn: int) -> pd.DataFrame:
    """H-Neurons per layer: columns layer, n_h_neurons (one row per layer)."""
    return pd.DataFrame({"layer": np.arange(n_layers),
                         "n_h_neurons": np.bincount(h_neurons // d_ffn, minlength=n_layers)})


def probe_metrics(family: str, cfg: dict[str, Any], n_layers: int, d_ffn: int, data: ProbeSplits,
                  n_task_questions: int, selection, unsuppressed: float, frequency: np.ndarray,
                  test_metrics: dict[str, Any], machine: dict[str, Any], generation: dict[str, Any]) -> dict[str, Any]:
    """metrics.json: row counts, the chosen C and its H-Neurons, the C grid, fit diagnostics, test metrics,
    stability. ``frequency``: float64[n_features] bootstrap selection frequency (zeros when
    ``cfg["n_bootstrap"]`` is 0); ``machine``/``generation``: the stage's machine and generation facts."""
    X, y, keep, train = data.X, data.y, data.keep, data.train
    best = selection.best_probe
    h = best.positive_
    return {
        "family": family, "dataset": cfg["dataset"], "labelling": cfg["labelling"],
        "n_layers": n_layers, "d_ffn": d_ffn, "n_features": int(X.shape[1]),
        "rows": {"train": {"n_rows": int(X.shape[0]), "n_questions": int(train["example_id"].nunique()),
                           "n_positive": int(y[keep].sum()), "n_negative": int((1 - y[keep]).sum())},
                 "validation": {"n_rows": len(data.val), "n_hallucinated": int(data.y_val.sum())},
                 "test": {"n_rows": len(data.test), "n_hallucinated": int(data.y_test.sum())},
                 "task_questions": n_task_questions},
        "chosen_C": selection.best_C, "n_h_neurons": int(h.size), "machine": machine,
        "generation": generation,
        "per_mille": 1000.0 * h.size / X.shape[1], "n_negative_weights": int(np.sum(best.coef_[0] < 0)),
        "C_selection": {"criterion": "validation accuracy + greedy task accuracy with H-Neurons at alpha",
                        "alpha": cfg["task"]["alpha"], "task_accuracy_unsuppressed": unsuppressed,
                        "grid": selection.table},
        "fit": {"solver": cfg["solver"], "tol": cfg["tol"], "standardize": cfg["standardize"],
                "kkt_tol": cfg["kkt_tol"], "kkt_max_violation": best.kkt_max_violation_,
                "kkt_converged": bool(best.kkt_converged_), "rounds": best.n_rounds_,
                "working_set_size": best.working_set_size_},
        "test": test_metrics,
        "stability": {"n_bootstrap": cfg["n_bootstrap"],
                      "h_mean_frequency": float(frequency[h].mean()) if h.size and cfg["n_bootstrap"] else None,
                      "h_frequency_at_least_half":
                          int(np.sum(frequency[h] >= 0.5)) if cfg["n_bootstrap"] else None,
                      "n_ever_selected": int(np.sum(frequency > 0))},
    }


def neurons_by_C(probes, grid: list[float], d_ffn: int) -> pd.DataFrame:
    """Every non-zero weight of every probe: columns C, flat_index, layer, neuron, weight (one row per C and neuron)."""
    rows = []
    for C, fitted in zip(grid, probes):
        flat = fitted.support_
        rows.append(pd.DataFrame({"C": C, "flat_index": flat.astype(np.int64),
                                  "layer": (flat // d_ffn).astype(np.int32),
                                  "neuron": (flat % d_ffn).astype(np.int32),
                                  "weight": fitted.coef_[0, flat]}))
    return pd.concat(rows, ignore_index=True)


def stability_frame(frequency: np.ndarray, h_neurons: np.ndarray, d_ffn: int) -> pd.DataFrame:
    """Neurons with ``frequency`` > 0: flat_index, layer, neuron, selection_frequency, h_neuron (bool)."""
    flat = np.flatnonzero(frequency > 0)
    return pd.DataFrame({"flat_index": flat.astype(np.int64), "layer": (flat // d_ffn).astype(np.int32),
                         "neuron": (flat % d_ffn).astype(np.int32), "selection_frequency": frequency[flat],
                         "h_neuron": np.isin(flat, h_neurons)})


def write_table(path: Path, frame: pd.DataFrame, metadata: dict[str, Any]) -> None:
    """``frame`` as parquet at ``path`` with ``metadata`` in the file's key-value metadata."""
    import pyarrow as pa

    write_parquet(path, pa.Table.from_pandas(frame, preserve_index=False), jsonable(metadata))


def write_outputs(family: str, selection, frequency: np.ndarray | None, metrics: dict[str, Any],
                  lineage: dict[str, Any], per_layer: pd.DataFrame, baseline_rows: list[dict[str, Any]],
                  d_ffn: int) -> None:
    """Write models/probe/<family>/ and reports/probe/<family>/, each directory atomically."""
    best, grid = selection.best_probe, pd.DataFrame(selection.table)
    h = best.positive_
    with atomic_path(layout.probe_dir(family)) as tmp:
        tmp.mkdir()
        write_table(tmp / layout.PROBE_H_NEURONS, h_neuron_frame(best, d_ffn, frequency), lineage)
        write_table(tmp / layout.PROBE_NEURONS_BY_C, neurons_by_C(selection.probes, list(grid["C"]), d_ffn), lineage)
        stability = np.zeros(best.n_features_in_) if frequency is None else frequency
        write_table(tmp / layout.PROBE_STABILITY, stability_frame(stability, h, d_ffn), lineage)
        save_probe(best, tmp, jsonable({**lineage, "n_layers": len(per_layer), "d_ffn": d_ffn}))
    with atomic_path(layout.report_dir("probe", family)) as tmp:
        tmp.mkdir()
        texts = {layout.METRICS: dumps_json(jsonable(metrics)), layout.PROBE_C_GRID: csv_text(grid),
                 layout.PROBE_COUNT_VS_C: csv_text(grid[["C", "n_positive", "n_negative", "per_mille"]]),
                 layout.PROBE_PER_LAYER: csv_text(per_layer),
                 layout.PROBE_BASELINES: csv_text(pd.DataFrame(baseline_rows))}
        for name, text in texts.items():
            (tmp / name).write_text(text, encoding="utf-8")
        plot_pngs(tmp, grid, per_layer, selection.best_C)


def log_test_summary(family: str, t: dict[str, Any]) -> None:
    """One log line: the probe's test accuracy and AUROC against the H-Neuron L2, random and length baselines."""
    log.info("%s: test accuracy %.3f AUROC %.3f | H-Neuron L2 %.3f | random %.3f±%.3f | length %.3f",
             family, t["probe"]["accuracy"], t["probe"]["auroc"], t["h_neurons_l2"]["accuracy"],
             t["random"]["accuracy"]["mean"], t["random"]["accuracy"]["sd"],
             t["length"]["response_tokens"]["accuracy"])
