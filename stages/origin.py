"""origin@<family>: where H-Neurons come from (paper §4): weight drift and backward transfer.

A family without a base model (no ``models/llm/<family>/base``) is skipped: its
metrics file says so in one line and the stage succeeds.

Reads ``models/llm/<family>/{base,instruct}``, the probe ``models/probe/<family>/``,
the instruct activations it was trained on (``data/activations/<family>/instruct/
<probe.dataset>/``: training rows for the random-neuron probes, and the
span rule / readout to reuse) and the prepared tables of ``origin.datasets``.
Writes

- ``reports/origin/<family>.json`` (metrics): drift of the H-Neurons vs the rest
  (global and per layer; significance = empirical p against ``origin.n_random_sets``
  uniform and as many layer-matched random sets, Welch t-test kept as secondary) and, per dataset, the instruct
  probe's AUROC on base-model rows with a bootstrap CI and the random-neuron
  probes' AUROC;
- ``reports/origin/<family>/``: ``h_neuron_ranks.csv`` (the Fig. 4b points),
  ``drift_strip.png``, ``transfer.csv``, ``drift_random_sets.csv`` (every random set of
  the drift controls: scope, kind random | random_layer_matched, seed, n, mean_rank,
  its leave-one-out empirical p, Welch t and p);
- ``data/origin/<family>/``: ``drift.parquet`` (every neuron: drifts, z-scores,
  ranks) and ``base_responses.parquet`` (base responses, judgements, selection).

Backward transfer (paper §6.3.1; hneurons/origin_transfer.py): base-model responses to
``question + "\\nAnswer:"`` (no chat template, ``origin.decoding``), cut at the first newline,
rule-judged and balanced; the probe applied unchanged to their answer-span CETT. TriviaQA
questions exclude the probe's train/validation questions; ``origin.n_questions`` is one count
for every dataset or a mapping dataset -> count.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hneurons import layout, origin
from hneurons.errors import HNeuronsError
from hneurons.io import atomic_path, jsonable, write_json, write_text
from hneurons.machine import machine_facts
from hneurons.origin_transfer import analyse
from stages._common import derived_seed, device_tag, run, setup_torch
from stages._generation import decoding_settings, generation_backend
from stages.config import Config, load_config

log = logging.getLogger("origin")
SECTION = "origin"


def read_config(config: Config) -> dict[str, Any]:
    """The origin section plus the probe keys it reuses, as the library's analysis takes them (one count per
    dataset; one-line errors naming the key)."""
    section, probe = config.origin.require(SECTION), config.probe
    cfg = {"datasets": list(section.datasets), "n_questions": section.n_questions,
           "decoding": decoding_settings(section.decoding, where=f"{SECTION}.decoding"),
           "batch_size": section.batch_size, "extract_batch_size": section.extract_batch_size,
           "max_per_class": section.max_per_class, "n_boot": section.n_boot, "n_random_sets": section.n_random_sets,
           "probe_dataset": probe.dataset, "labelling": probe.labelling,
           "baseline_C": probe.baseline_C, "n_random_seeds": probe.n_random_seeds,
           "seed": int(config.base.seed), "cache_dir": Path(config.base.cache_dir or ".cache/hneurons")}
    unknown = sorted(set(cfg["datasets"]) - {"triviaqa", "nq_open", "bioasq"})
    if unknown:
        raise HNeuronsError(f"{SECTION}.datasets: {unknown} not supported (the paper's: triviaqa, nq_open, bioasq)")
    counts = cfg["n_questions"]
    if isinstance(counts, dict):
        missing = [name for name in cfg["datasets"] if name not in counts]
        if missing:
            raise HNeuronsError(f"{SECTION}.n_questions: no count for {', '.join(missing)}")
    counts = counts if isinstance(counts, dict) else {name: counts for name in cfg["datasets"]}
    for name in cfg["datasets"]:
        value = counts[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HNeuronsError(f"{SECTION}.n_questions.{name}={value!r}: expected an integer >= 1")
    cfg["n_questions"] = {name: counts[name] for name in cfg["datasets"]}
    return cfg


def skip(family: str, reason: str, data_dir: Path, report_dir: Path, metrics_path: Path) -> None:
    """Record a skipped family: one line in the metrics and in each output directory."""
    line = f"origin skipped for family {family!r}: {reason}"
    log.info("%s", line)
    write_text(data_dir / "skipped.txt", line + "\n")
    write_text(report_dir / "skipped.txt", line + "\n")
    write_json(metrics_path, {"family": family, "skipped": line})


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.origin FAMILY")
    family = argv[0]
    params = load_config().family(SECTION, family)
    cfg = read_config(params)
    cfg["device"], cfg["dtype"] = params.compute.device, params.compute.dtype
    base_dir, instruct_dir = layout.model_dir(family, "base"), layout.model_dir(family, "instruct")
    data_dir, report_dir = layout.data_dir("origin", family), layout.report_dir("origin", family)
    metrics_path = layout.origin_metrics(family)
    if not (base_dir / "config.json").is_file():
        skip(family, f"no base model ({base_dir} does not exist); the paper's origin analysis needs a "
                     f"base + instruct pair", data_dir, report_dir, metrics_path)
        return
    setup_torch(params)
    from hneurons.activations import activation_metadata
    from hneurons.checkpoint import Checkpoint
    from hneurons.materialize import read_fingerprint
    from hneurons.models import load_causal_lm
    from hneurons.probe import load_probe

    probe_dir = layout.probe_dir(family)
    probe, _ = load_probe(probe_dir)
    acts = layout.activations(family, "instruct", cfg["probe_dataset"])
    if not acts.is_dir():
        raise HNeuronsError(f"{acts}: not found (run the extract stage for family {family!r})")
    meta = activation_metadata(acts)
    base, tokenizer = load_causal_lm(base_dir, cfg["dtype"], cfg["device"])
    instruct = Checkpoint(instruct_dir)  # read one layer at a time: only the base model is held
    shape = origin.check_pair(base, instruct, str(base_dir), str(instruct_dir))
    n_features, d_ffn = shape["n_layers"] * shape["d_ffn"], shape["d_ffn"]
    if probe.n_features_in_ != n_features:
        raise HNeuronsError(f"{probe_dir}: the probe has {probe.n_features_in_} features; "
                            f"{base_dir} has {n_features} FFN neurons")
    h = probe.positive_
    if h.size == 0:
        raise HNeuronsError(f"{probe_dir}: the probe has no positive weights (no H-Neurons to analyse); "
                            f"widen probe.C_grid")
    metrics: dict[str, Any] = {"family": family, "n_h_neurons": int(h.size), "n_neurons": n_features,
                               "base_fingerprint": read_fingerprint(base_dir)["fingerprint"],
                               "instruct_fingerprint": read_fingerprint(instruct_dir)["fingerprint"]}
    table = origin.DriftTable.from_models(base, instruct)
    cfg["backend"], _, _ = generation_backend(params, family, base_dir, base, tokenizer, role="base")
    metrics["generation"] = cfg["backend"].info()
    salt = f"{metrics['base_fingerprint']}/{cfg['dtype']}{device_tag(cfg['device'])}/origin"
    with atomic_path(data_dir) as data_tmp, atomic_path(report_dir) as report_tmp:
        analyse(metrics, table, family, cfg, probe, h, d_ffn, base, tokenizer, acts, meta, data_tmp, report_tmp,
                lambda tag: derived_seed(cfg["seed"], tag), salt)
    metrics["machine"] = machine_facts(base, cfg["dtype"])
    write_json(metrics_path, jsonable(metrics))


if __name__ == "__main__":
    run(main)
