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
from hneurons.probe import L1Probe
from hneurons.probe_inputs import read_probe_splits, validation_questions
from hneurons.probe_results import evaluate_on_test, log_test_summary, per_layer_counts, probe_metrics, write_outputs
from hneurons.probe_selection import log_selection, make_task_accuracy, select_C, stability_selection
from hneurons.stats import detection_summary
from stages._common import derived_seed, run, setup_torch
from stages._generation import hooked_generation_info
from stages.config import Config, load_config

log = logging.getLogger("probe")
SECTION = "probe"


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.probe FAMILY")
    family = argv[0]
    config = load_config().family(SECTION, family)
    config.probe.require(SECTION)
    setup_torch(config)
    from hneurons.activations import activation_metadata

    acts = layout.activations(family, "instruct", config.probe.dataset)
    if not acts.is_dir():
        raise HNeuronsError(f"{acts}: not found (run the extract stage for family {family!r})")
    meta = activation_metadata(acts)
    with tempfile.TemporaryDirectory(prefix="hneurons-probe-") as scratch:
        fit_and_write(family, config, acts, meta, Path(scratch))


def fit_and_write(family: str, config: Config, acts: Path, meta: dict[str, Any], scratch: Path) -> None:
    """Read the splits into row files under ``scratch``, select C, refit, evaluate, write the outputs."""
    from hneurons.models import load_causal_lm

    probe = config.probe
    cfg = probe.model_dump(exclude={"families"})   # the library's reporting reads the section as a mapping
    seed, device, dtype = config.base.seed, config.compute.device, config.compute.dtype

    n_layers, d_ffn = int(meta["n_layers"]), int(meta["d_ffn"])
    data = read_probe_splits(acts, probe.labelling, scratch, n_layers, d_ffn)
    X, y, weight, train = data.X, data.y, data.weight, data.train
    log.info("%s: train %d rows (%d questions), validation %d, test %d answer rows; %d features",
             family, X.shape[0], train["example_id"].nunique(), len(data.val), len(data.test), X.shape[1])

    template = L1Probe(tol=probe.tol, standardize=probe.standardize, solver=probe.solver,
                       max_iter=probe.max_iter, screen_size=probe.screen_size, max_add=probe.max_add,
                       kkt_tol=probe.kkt_tol, progress=True)
    model, tokenizer = load_causal_lm(layout.model_dir(family, "instruct"), dtype, device)
    questions = validation_questions(layout.samples(family, probe.dataset), probe.task.n_questions)
    task_accuracy = make_task_accuracy(model, tokenizer, questions, cfg["task"], SECTION)
    unsuppressed = task_accuracy(np.zeros(0, dtype=np.int64))
    selection = select_C(template, X, y, data.X_val, data.y_val, probe.C_grid, task_accuracy,
                         sample_weight=weight, progress=True, where=f"{SECTION}.C_grid", grid_checked=True)
    best = selection.best_probe
    log_selection(selection, X.shape[1])

    groups = train["example_id"].to_numpy()
    frequency = stability_selection(best, X, y, groups, probe.n_bootstrap, derived_seed(seed, "stability"),
                                    sample_weight=weight, strata=train["label"].to_numpy(), progress=True)

    ci = {"n_boot": probe.n_ci_boot, "seed": derived_seed(seed, "ci")}
    summary = lambda scores: detection_summary(data.y_test, scores, ci["n_boot"], ci["seed"])  # noqa: E731
    seeds = [derived_seed(seed, f"random/{i}") for i in range(probe.n_random_seeds)]
    test_metrics, baseline_rows = evaluate_on_test(best, summary, X, y, weight, train, data.X_test, data.test,
                                                   d_ffn, probe.baseline_C, seeds)
    test_metrics["ci"] = ci

    per_layer = per_layer_counts(best.positive_, n_layers, d_ffn)
    lineage = {"family": family, "dataset": probe.dataset, "activations_fingerprint": meta.get("fingerprint"),
               "chosen_C": selection.best_C, "labelling": probe.labelling,   # params: as written in params.yaml
               "params": {k: v for k, v in config.raw.get(SECTION, {}).items() if k != "families"}}
    machine = machine_facts(model, dtype)
    generation = hooked_generation_info(config, family, model, tokenizer)  # the task term scales neurons
    metrics = probe_metrics(family, cfg, n_layers, d_ffn, data, len(questions), selection, unsuppressed,
                            frequency, test_metrics, machine, generation)

    write_outputs(family, selection, frequency if probe.n_bootstrap else None, metrics, lineage,
                  per_layer, baseline_rows, d_ffn)
    log_test_summary(family, metrics["test"])


if __name__ == "__main__":
    run(main)
