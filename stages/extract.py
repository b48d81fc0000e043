"""extract@<run>: samples + model -> data/activations/<family>/<role>/<dataset>.parquet (CETT per neuron).

A run (``extract.runs.<run>``) names a family, a role (whose model does the
teacher-forced pass) and a dataset. Reads ``data/samples/<family>/<dataset>.parquet``
rows with ``representative`` and ``label >= 0``, aligns answer spans, writes one
row per (example, region) and ``reports/extract/<family>/<role>/<dataset>.json``
(counts per class/region/split, dropped examples by reason).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from hneurons import activations, cett, spans
from hneurons.errors import HNeuronsError
from hneurons.io import read_json, read_schema, read_table, sha256_file, write_json
from hneurons.machine import machine_facts
from hneurons.models import load_causal_lm
from stages._common import compute_settings, load_params, param, run, setup_torch

log = logging.getLogger("extract")
SAMPLE_COLUMNS = ("example_id", "question", "answers", "prompt_ids", "response_ids", "correct", "label", "split",
                  "representative")
CLASS_NAMES = {0: "faithful", 1: "hallucinated"}
CODE_MODULES = (spans, cett, activations)


def read_samples(path: Path) -> list[dict[str, Any]]:
    """The representative, selected (label >= 0) sample rows as records."""
    if not path.is_file():
        raise HNeuronsError(f"{path}: samples not found (run the sample stage)")
    names = read_schema(path).names
    missing = [c for c in SAMPLE_COLUMNS if c not in names]
    if missing:
        raise HNeuronsError(f"{path}: missing column(s) {', '.join(missing)}")
    table = read_table(path, columns=list(SAMPLE_COLUMNS))
    selected = pc.and_(pc.fill_null(table["representative"], False), pc.greater_equal(table["label"], 0))
    return table.filter(pc.fill_null(selected, False)).to_pylist()


def check_classes(examples: list[spans.SpanExample], where: str, dropped: dict) -> None:
    """Stop if a class has no example left after alignment."""
    for label, name in CLASS_NAMES.items():
        if not any(e.label == label for e in examples):
            lost = {k: v for k, v in dropped.items() if k.endswith(f"label={label}")}
            raise HNeuronsError(f"{where}: no {name} (label {label}) examples left after span alignment "
                                f"(dropped: {lost or 'none; the samples hold none'})")


def settings(params: dict[str, Any]) -> dict[str, Any]:
    """The stage's params (validated where the library does not)."""
    out = {key: param(params, f"extract.{key}") for key in
           ("readout", "region_variant", "span_rule", "annotation_file", "batch_size", "row_group_examples",
            "cett_dtype")}
    for key in ("batch_size", "row_group_examples"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise HNeuronsError(f"extract.{key}={out[key]!r}: expected an integer >= 1")
    if out["cett_dtype"] not in activations.CETT_DTYPES:
        raise HNeuronsError(f"extract.cett_dtype={out['cett_dtype']!r}: expected one of "
                            f"{', '.join(activations.CETT_DTYPES)}")
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


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.extract RUN")
    name = argv[0]
    params = load_params()
    runs = param(params, "extract.runs")
    if not isinstance(runs, dict) or name not in runs:
        known = ", ".join(sorted(runs)) if isinstance(runs, dict) else "none"
        raise HNeuronsError(f"extract.runs.{name}: unknown (known: {known})")
    config = runs[name]
    for key in ("family", "role", "dataset"):
        if not isinstance(config, dict) or key not in config:
            raise HNeuronsError(f"extract.runs.{name}.{key}: required")
    family, role, dataset = config["family"], config["role"], config["dataset"]
    opts = settings(params)
    setup_torch(params)
    where = f"extract {family}/{role}/{dataset}"
    samples_path = Path(f"data/samples/{family}/{dataset}.parquet")
    model_dir = Path(f"models/llm/{family}/{role}")
    out = Path(f"data/activations/{family}/{role}/{dataset}.parquet")
    report_path = Path(f"reports/extract/{family}/{role}/{dataset}.json")

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
    n_layers, d_ffn = fingerprint["n_layers"], fingerprint["d_ffn"]
    metadata = {
        "family": family, "role": role, "dataset": dataset, "model": fingerprint,
        "samples_sha256": sha256_file(samples_path),
        "code_sha256": {f"hneurons/{Path(m.__file__).name}": sha256_file(m.__file__) for m in CODE_MODULES},
        "span_rule": opts["span_rule"], "readout": opts["readout"], "region_variant": opts["region_variant"],
        "eps": cett.EPS, "compute_dtype": dtype,
        "n_input": len(records), "dropped": dict(sorted(dropped.items())), **counts,
    }
    if annotations is not None:
        metadata["annotation_file"] = {"name": Path(opts["annotation_file"]).name,
                                       "sha256": sha256_file(opts["annotation_file"]),
                                       "unusable": dict(sorted(annotation_drops.items()))}
    blocks = cett.extract_activations(model, plan, dataset=dataset, readout=opts["readout"],
                                      batch_size=opts["batch_size"], group_examples=opts["row_group_examples"],
                                      pad_id=tokenizer.pad_token_id or 0)
    n_rows = activations.write_activations(out, blocks, n_layers, d_ffn, opts["cett_dtype"], metadata,
                                           expected_rows=counts["n_rows"])
    report = {key: metadata[key] for key in ("span_rule", "readout", "region_variant", "n_input", "dropped")}
    report.update(counts)
    report["n_dropped"] = len(records) - len(examples)
    report["bytes_per_example"] = round(out.stat().st_size / max(len(examples), 1), 1)
    report["machine"] = machine_facts(model, dtype)
    write_json(report_path, report)
    elapsed = time.perf_counter() - started
    n_tokens = sum(len(e.prompt_ids) + len(e.response_ids) for e in examples)
    log.info("%s: %d of %d examples (%d dropped: %s), %d rows, %.1f s (%.0f tokens/s) -> %s", where, len(examples),
             len(records), report["n_dropped"], dict(sorted(dropped.items())) or "none", n_rows, elapsed,
             n_tokens / max(elapsed, 1e-9), out)


if __name__ == "__main__":
    run(main)
