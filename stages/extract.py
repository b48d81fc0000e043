"""extract@<run>: samples + model -> data/activations/<family>/<role>/<dataset>/<run>/ (CETT per neuron).

A run (``extract.runs.<run>``) names a family, a role (whose model does the
teacher-forced pass), a dataset and optionally ``shard``/``shards`` (this run's
index among the runs that split the same family/role/dataset; default 0 of 1).
Reads ``data/samples/<family>/<dataset>.parquet`` rows with ``representative``
and ``label >= 0``, aligns answer spans, cuts the examples (in sample order) into
groups of ``extract.row_group_examples`` and takes this shard's contiguous run of
groups. Writes one row per (example, region) as part files (one per group and
split) with a manifest (hneurons.activations) into the run's shard directory, and
``reports/extract/<family>/<role>/<dataset>/<run>.json`` (counts per
class/region/split over all shards, dropped examples by reason, this shard's rows).
Batches form inside a group, so N shards hold exactly the rows and floats of one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hneurons import activations, cett, layout, spans
from hneurons.errors import HNeuronsError
from hneurons.extract_inputs import check_classes, read_samples
from hneurons.io import read_json, sha256_file, write_json
from hneurons.machine import machine_facts
from hneurons.models import load_causal_lm
from stages._common import compute_settings, run, setup_torch
from stages.config import ExtractRun, ExtractSection, load_config

log = logging.getLogger("extract")
CODE_MODULES = (spans, cett, activations)


def settings(section: ExtractSection) -> dict[str, Any]:
    """The stage's settings, checked against the library's choices (readout, regions, span rule, dtype)."""
    out = {key: getattr(section, key) for key in
           ("readout", "region_variant", "span_rule", "annotation_file", "batch_size", "row_group_examples",
            "cett_dtype")}
    if out["cett_dtype"] not in activations.CETT_DTYPE_SETTINGS:
        raise HNeuronsError(f"extract.cett_dtype={out['cett_dtype']!r}: expected one of "
                            f"{', '.join(activations.CETT_DTYPE_SETTINGS)}")
    if out["readout"] not in cett.READOUTS:
        raise HNeuronsError(f"extract.readout={out['readout']!r}: expected one of {', '.join(cett.READOUTS)}")
    if out["region_variant"] not in cett.REGION_VARIANTS:
        raise HNeuronsError(f"extract.region_variant={out['region_variant']!r}: expected one of "
                            f"{', '.join(cett.REGION_VARIANTS)}")
    if out["span_rule"] not in spans.SPAN_RULES:
        raise HNeuronsError(f"extract.span_rule={out['span_rule']!r}: expected one of {', '.join(spans.SPAN_RULES)}")
    if out["span_rule"] == "annotation" and not out["annotation_file"]:
        raise HNeuronsError("extract.annotation_file: required by span_rule annotation")
    return out


def shard_of(name: str, config: ExtractRun) -> tuple[int, int]:
    """(shard, shards) of a run: both given, 0 <= shard < shards; neither given: (0, 1)."""
    if (config.shard is None) != (config.shards is None):
        raise HNeuronsError(f"extract.runs.{name}: give both shard and shards (or neither)")
    shard, shards = (0, 1) if config.shard is None else (config.shard, config.shards)
    if not 0 <= shard < shards:
        raise HNeuronsError(f"extract.runs.{name}: shard={shard!r} of shards={shards!r}: expected integers "
                            f"with 0 <= shard < shards")
    return shard, shards


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.extract RUN")
    name = argv[0]
    params = load_config()
    runs = params.extract.runs or {}
    if name not in runs:
        raise HNeuronsError(f"extract.runs.{name}: unknown (known: {', '.join(sorted(runs)) or 'none'})")
    config = runs[name]
    for key in ("family", "role", "dataset"):
        if getattr(config, key) is None:
            raise HNeuronsError(f"extract.runs.{name}.{key}: required")
    family, role, dataset = config.family, config.role, config.dataset
    shard, shards = shard_of(name, config)
    opts = settings(params.extract.require("extract"))
    setup_torch(params)
    where = f"extract {family}/{role}/{dataset}"
    samples_path = layout.samples(family, dataset)
    model_dir = layout.model_dir(family, role)
    out = layout.activation_run(family, role, dataset, name)
    report_path = layout.extract_report(family, role, dataset, name)

    records = read_samples(samples_path)
    if not (model_dir / "fingerprint.json").is_file():
        raise HNeuronsError(f"{model_dir}/fingerprint.json: missing; run the model stage")
    fingerprint = read_json(model_dir / "fingerprint.json")
    device, dtype = compute_settings(params, family)
    model, tokenizer = load_causal_lm(model_dir, dtype, device)
    annotations, annotation_drops = None, {}
    if opts["span_rule"] == "annotation":
        annotations, annotation_drops = spans.load_annotations(opts["annotation_file"])
    started = time.perf_counter()
    examples, dropped = spans.align_answer_spans(records, tokenizer, opts["span_rule"], annotations=annotations)
    check_classes(examples, where, dropped)
    plan = cett.plan_rows(examples, opts["region_variant"])
    counts = cett.plan_counts(plan)
    first_group, groups = cett.shard_groups(cett.plan_groups(plan, opts["row_group_examples"]), shard, shards)
    shard_examples = sum(len(g) for g in groups)
    shard_rows = int(sum((plan.n_tokens[g.start:g.stop] > 0).sum() for g in groups))
    n_layers, d_ffn = fingerprint["n_layers"], fingerprint["d_ffn"]
    n_params = int(sum(p.numel() for p in model.parameters()))
    cett_dtype = activations.resolve_cett_dtype(opts["cett_dtype"], n_params)
    metadata = {
        "family": family, "role": role, "dataset": dataset, "model": fingerprint,
        "samples_sha256": sha256_file(samples_path),
        "code_sha256": {f"hneurons/{Path(m.__file__).name}": sha256_file(m.__file__) for m in CODE_MODULES},
        "span_rule": opts["span_rule"], "readout": opts["readout"], "region_variant": opts["region_variant"],
        "eps": cett.EPS, "compute_dtype": dtype, "n_params": n_params, "cett_dtype_setting": opts["cett_dtype"],
        "row_group_examples": opts["row_group_examples"],
        "n_input": len(records), "dropped": dict(sorted(dropped.items())), **counts,
    }
    if annotations is not None:
        metadata["annotation_file"] = {"name": Path(opts["annotation_file"]).name,
                                       "sha256": sha256_file(opts["annotation_file"]),
                                       "unusable": dict(sorted(annotation_drops.items()))}
    blocks = cett.extract_activations(model, plan, dataset=dataset, readout=opts["readout"],
                                      batch_size=opts["batch_size"], groups=groups,
                                      pad_id=tokenizer.pad_token_id or 0)
    n_rows = activations.write_activations(out, blocks, n_layers, d_ffn, cett_dtype, metadata,
                                           expected_rows=shard_rows, shard=shard, shards=shards,
                                           first_block=first_group)
    report = {key: metadata[key] for key in ("span_rule", "readout", "region_variant", "n_input", "dropped")}
    report.update(counts)
    report["n_dropped"] = len(records) - len(examples)
    report["cett_dtype"] = cett_dtype
    report["shard"] = {"index": shard, "of": shards, "n_examples": shard_examples, "n_rows": n_rows,
                       "n_parts": len(list(out.glob("part-*.parquet")))}
    size = sum(p.stat().st_size for p in out.iterdir())
    report["bytes_per_example"] = round(size / max(shard_examples, 1), 1)
    report["machine"] = machine_facts(model, dtype)
    write_json(report_path, report)
    elapsed = time.perf_counter() - started
    n_tokens = sum(len(plan.examples[i].prompt_ids) + len(plan.examples[i].response_ids) for g in groups for i in g)
    log.info("%s: %d of %d examples (%d dropped: %s); shard %d of %d: %d examples, %d rows, %s, %.1f s "
             "(%.0f tokens/s) -> %s", where, len(examples), len(records), report["n_dropped"],
             dict(sorted(dropped.items())) or "none", shard, shards, shard_examples, n_rows, cett_dtype, elapsed,
             n_tokens / max(elapsed, 1e-9), out)


if __name__ == "__main__":
    run(main)
