"""probe@<family>: activations -> L1 probe, C choice, H-Neurons, baselines.

Reads ``data/activations/<family>/instruct/<probe.dataset>/`` (training rows of both
regions, validation and test answer rows; each split is spilled to a row file in a
temporary directory ($TMPDIR) and read in row blocks), the validation questions of
``data/samples/<family>/<probe.dataset>.parquet`` and the instruct model (for the C
criterion's task term: greedy accuracy with the candidate H-Neurons scaled by
``probe.task.alpha``). Writes ``models/probe/<family>/`` (h_neurons.parquet,
probe.safetensors + probe.json (load with hneurons.probe.load_probe),
neurons_by_C.parquet, stability.parquet) and ``reports/probe/<family>/``
(metrics.json, c_grid.csv, count_vs_C.csv, per_layer.csv, baselines.csv, PNGs).

Baselines, C choice and stability: see hneurons.probe_results, hneurons.probe_selection.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hneurons import layout
from hneurons.errors import HNeuronsError
from hneurons.machine import machine_facts
from hneurons.probe import LABELLINGS, SOLVERS, L1Probe
from hneurons.probe_inputs import read_probe_splits, validation_questions
from hneurons.probe_results import (evaluate_on_test, log_test_summary, per_layer_counts, probe_metrics,
                                    write_outputs)
from hneurons.probe_selection import (check_C_grid, log_selection, make_task_accuracy, select_C,
                                      stability_selection)
from hneurons.stats import detection_summary
from stages._common import compute_settings, derived_seed, family_params, load_params, param, run, setup_torch
from stages._generation import hooked_generation_info

log = logging.getLogger("probe")
SECTION = "probe"


def read_config(params: dict[str, Any]) -> dict[str, Any]:
    """The probe section, validated (one-line errors naming probe.<key>)."""
    p = lambda key, *default: param(params, f"{SECTION}.{key}", *default)  # noqa: E731
    cfg = {
        "dataset": p("dataset"), "labelling": p("labelling"),
        "C_grid": check_C_grid(p("C_grid"), f"{SECTION}.C_grid"),
        "tol": p("tol"), "standardize": p("standardize"), "solver": p("solver"),
        "screen_size": p("screen_size"), "max_add": p("max_add"), "kkt_tol": p("kkt_tol"),
        "max_iter": p("max_iter"),
        "n_bootstrap": p("n_bootstrap"), "n_random_seeds": p("n_random_seeds"),
        "baseline_C": p("baseline_C"), "n_ci_boot": p("n_ci_boot"),
        "task": {key: p(f"task.{key}") for key in
                 ("alpha", "n_questions", "max_new_tokens", "batch_size")},
        "seed": int(param(params, "base.seed")),
    }
    if cfg["labelling"] not in LABELLINGS:
        raise HNeuronsError(f"{SECTION}.labelling={cfg['labelling']!r}: expected one of {', '.join(LABELLINGS)}")
    if cfg["solver"] not in SOLVERS:
        raise HNeuronsError(f"{SECTION}.solver={cfg['solver']!r}: expected one of {', '.join(SOLVERS)}")
    positive = {"tol": cfg["tol"], "baseline_C": cfg["baseline_C"]}
    for key, value in positive.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise HNeuronsError(f"{SECTION}.{key}={value!r}: expected a number > 0")
    counts = {"screen_size": 1, "max_add": 1, "max_iter": 1, "n_bootstrap": 0, "n_random_seeds": 5,
              "n_ci_boot": 0,
              "task.n_questions": 0, "task.max_new_tokens": 1, "task.batch_size": 1}
    for key, minimum in counts.items():
        value = cfg["task"][key[5:]] if key.startswith("task.") else cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise HNeuronsError(f"{SECTION}.{key}={value!r}: expected an integer >= {minimum}")
    if not isinstance(cfg["standardize"], bool):
        raise HNeuronsError(f"{SECTION}.standardize={cfg['standardize']!r}: expected true or false")
    if not isinstance(cfg["kkt_tol"], (int, float)) or cfg["kkt_tol"] < 0:
        raise HNeuronsError(f"{SECTION}.kkt_tol={cfg['kkt_tol']!r}: expected a number >= 0")
    alpha = cfg["task"]["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha):
        raise HNeuronsError(f"{SECTION}.task.alpha={alpha!r}: expected a finite number")
    return cfg


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.probe FAMILY")
    family = argv[0]
    params = family_params(load_params(), SECTION, family)
    setup_torch(params)
    cfg = read_config(params)
    cfg["device"], cfg["dtype"] = compute_settings(params, family)
    from hneurons.activations import activation_metadata

    acts = layout.activations(family, "instruct", cfg["dataset"])
    if not acts.is_dir():
        raise HNeuronsError(f"{acts}: not found (run the extract stage for family {family!r})")
    meta = activation_metadata(acts)
    with tempfile.TemporaryDirectory(prefix="hneurons-probe-") as scratch:
        fit_and_write(family, params, cfg, acts, meta, Path(scratch))


def fit_and_write(family: str, params: dict[str, Any], cfg: dict[str, Any], acts: Path, meta: dict[str, Any],
                  scratch: Path) -> None:
    """Read the splits into row files under ``scratch``, select C, refit, evaluate, write the outputs."""
    from hneurons.models import load_causal_lm

    n_layers, d_ffn = int(meta["n_layers"]), int(meta["d_ffn"])
    data = read_probe_splits(acts, cfg["labelling"], scratch, n_layers, d_ffn)
    X, y, weight, train = data.X, data.y, data.weight, data.train
    log.info("%s: train %d rows (%d questions), validation %d, test %d answer rows; %d features",
             family, X.shape[0], train["example_id"].nunique(), len(data.val), len(data.test), X.shape[1])

    template = L1Probe(tol=cfg["tol"], standardize=cfg["standardize"], solver=cfg["solver"],
                       max_iter=cfg["max_iter"], screen_size=cfg["screen_size"], max_add=cfg["max_add"],
                       kkt_tol=cfg["kkt_tol"], progress=True)
    model, tokenizer = load_causal_lm(layout.model_dir(family, "instruct"), cfg["dtype"], cfg["device"])
    questions = validation_questions(layout.samples(family, cfg["dataset"]), cfg["task"]["n_questions"])
    task_accuracy = make_task_accuracy(model, tokenizer, questions, cfg["task"], SECTION)
    unsuppressed = task_accuracy(np.zeros(0, dtype=np.int64))
    selection = select_C(template, X, y, data.X_val, data.y_val, cfg["C_grid"], task_accuracy,
                         sample_weight=weight, progress=True, where=f"{SECTION}.C_grid")
    best = selection.best_probe
    log_selection(selection, X.shape[1])

    groups = train["example_id"].to_numpy()
    frequency = stability_selection(best, X, y, groups, cfg["n_bootstrap"], derived_seed(cfg["seed"], "stability"),
                                    sample_weight=weight, strata=train["label"].to_numpy(), progress=True)

    ci = {"n_boot": cfg["n_ci_boot"], "seed": derived_seed(cfg["seed"], "ci")}
    summary = lambda scores: detection_summary(data.y_test, scores, ci["n_boot"], ci["seed"])  # noqa: E731
    seeds = [derived_seed(cfg["seed"], f"random/{i}") for i in range(cfg["n_random_seeds"])]
    test_metrics, baseline_rows = evaluate_on_test(best, summary, X, y, weight, train, data.X_test, data.test,
                                                   d_ffn, cfg["baseline_C"], seeds)
    test_metrics["ci"] = ci

    per_layer = per_layer_counts(best.positive_, n_layers, d_ffn)
    lineage = {"family": family, "dataset": cfg["dataset"], "activations_fingerprint": meta.get("fingerprint"),
               "chosen_C": selection.best_C, "labelling": cfg["labelling"],
               "params": {k: v for k, v in params.get(SECTION, {}).items() if k != "families"}}
    machine = machine_facts(model, cfg["dtype"])
    generation = hooked_generation_info(params, family, model, tokenizer)  # the task term scales neurons
    metrics = probe_metrics(family, cfg, n_layers, d_ffn, data, len(questions), selection, unsuppressed,
                            frequency, test_metrics, machine, generation)

    write_outputs(family, selection, frequency if cfg["n_bootstrap"] else None, metrics, lineage,
                  per_layer, baseline_rows, d_ffn)
    log_test_summary(family, metrics["test"])


if __name__ == "__main__":
    run(main)
