"""tune@<family>: models/llm/<family>/base -> models/llm/<family>/instruct (a CPU-tuned instruct twin).

For a family with a base model but no instruct model on these machines
(gemma270m). Users with hub access point the family at a vendor pair in
``models:`` instead and drop it from ``tune.families``.

Reads the base model, the prepared evaluation tables named in
``tune.eval_datasets`` (whose questions the instruction set must avoid), the
trivia rows ``tune.trivia.rows`` of the prepared ``tune.trivia.dataset`` table,
FalseQA train label-1 rows of ``tune.premise.dataset`` and the AdvBench CSV
``tune.harmful``. Writes

- ``models/llm/<family>/instruct/`` (HF format + fingerprint.json; its source
  records the base fingerprint, the hash of the training examples (not of the
  check items) and the settings);
- ``data/tune/<family>/instructions.parquet`` (the instruction set, train + check);
- ``reports/tune/<family>/``: ``metrics.json`` (instruction-set counts, final loss,
  behaviour check of the twin and, with ``tune.check.include_base``, of the base
  under the same chat format; each check kind names its dataset, pool and n, and
  why n falls short of ``tune.n_check`` where it does), ``loss.csv`` (plot),
  ``loss.png``, ``check_responses.jsonl`` (every check response).

Up to ``tune.check_before_train`` check items of each kind are held out ahead of
the training block, the others come after it: with ``tune.n_check`` at least
that large, the training rows do not depend on ``tune.n_check``.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: with other processes on the same
# 2 cores, spinning made a 2-thread forward pass ~5x slower than 1 thread (measured).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from hneurons import layout, tune, tune_check, tune_train
from hneurons.errors import HNeuronsError
from hneurons.io import write_json, write_parquet
from hneurons.machine import machine_facts
from hneurons.materialize import read_fingerprint, save_model_dir
from hneurons.models import load_causal_lm
from stages._common import run, setup_torch
from stages.config import Config, load_config

log = logging.getLogger("tune")
SECTION = "tune"


def read_config(config: Config) -> dict[str, Any]:
    """The tune section (with the family's overrides applied) as the library takes it (one-line errors naming
    tune.<key>)."""
    section = config.tune.require(SECTION)
    rows = section.trivia.rows
    if not (isinstance(rows, list) and len(rows) == 2 and all(isinstance(v, int) for v in rows)
            and 0 <= rows[0] < rows[1]):
        raise HNeuronsError(f"{SECTION}.trivia.rows={rows!r}: expected [start, stop] with 0 <= start < stop")
    sizes = section.sizes.model_dump(exclude_none=True)
    if any(not isinstance(sizes.get(k), int) or sizes[k] < 0 for k in tune.KINDS):
        raise HNeuronsError(f"{SECTION}.sizes: expected integers >= 0 for {', '.join(tune.KINDS)}")
    settings = tune_train.TuneSettings(steps=section.steps, batch_size=section.batch_size, lr=section.lr,
                                       warmup_steps=section.warmup_steps, weight_decay=section.weight_decay,
                                       max_grad_norm=section.max_grad_norm, length_group=section.length_group,
                                       seed=int(config.base.seed))
    settings.validate(SECTION)
    check = section.check
    return {
        "trivia_dataset": section.trivia.dataset, "trivia_rows": rows, "premise_dataset": section.premise.dataset,
        "harmful": Path(section.harmful), "eval_datasets": list(section.eval_datasets), "sizes": sizes,
        "n_check": tune.check_counts(section.n_check, f"{SECTION}.n_check"),
        "check_before_train": section.check_before_train, "suffix_share": float(section.suffix_share),
        "max_length": int(section.max_length), "settings": settings,
        "check_max_new_tokens": int(check.max_new_tokens), "include_base": bool(check.include_base),
        "check_batch_size": check.batch_size,
    }


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.tune FAMILY")
    family = argv[0]
    params = load_config().family(SECTION, family)
    setup_torch(params)
    cfg = read_config(params)
    cfg["device"], cfg["dtype"] = params.compute.device, params.compute.dtype
    base_dir, out_dir = layout.model_dir(family, "base"), layout.model_dir(family, "instruct")
    data_dir, report_dir = layout.data_dir("tune", family), layout.report_dir("tune", family)
    base_fp = read_fingerprint(base_dir)

    trivia, premise, harmful, questions, texts = tune.instruction_sources(cfg)
    examples, built = tune.build_instruction_set(trivia, premise, harmful, questions, texts, cfg["sizes"],
                                                 cfg["n_check"], cfg["settings"].seed, cfg["suffix_share"],
                                                 cfg["check_before_train"])
    described = tune.check_sources(cfg, built)
    for kind, entry in built.items():
        if "check_short" in entry:
            log.warning("%s: check %s: %s", family, kind, entry["check_short"])
    frame = tune.examples_frame(examples)
    write_parquet(data_dir / layout.TUNE_INSTRUCTIONS, pa.Table.from_pandas(frame, preserve_index=False),
                  {"family": family, "summary": built, "base_fingerprint": base_fp["fingerprint"]})
    log.info("%s: instruction set %s", family, {k: v["train"] for k, v in built.items()})

    model, tokenizer = load_causal_lm(base_dir, cfg["dtype"], cfg["device"])
    train_set = [e for e in examples if e.split == "train"]
    encoded = tune_train.encode_examples(tokenizer, train_set, cfg["max_length"])
    metrics: dict[str, Any] = {"family": family, "instruction_set": built,
                               "train_tokens": sum(len(i) - s for i, s in zip(encoded.ids, encoded.starts))}
    records: list[dict] = []
    check_args = {"max_new_tokens": cfg["check_max_new_tokens"], "sources": described,
                  "batch_size": cfg["check_batch_size"]}
    if cfg["include_base"]:
        started = time.perf_counter()
        metrics["check_base"], base_records = tune_check.behaviour_check(model, tokenizer, examples, **check_args)
        records += [{"model": "base", **r} for r in base_records]
        log.info("%s: base check, %d prompts in %.1f s", family, len(base_records), time.perf_counter() - started)

    started = time.perf_counter()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    curve = tune_train.train(model, encoded, cfg["settings"], pad_id)
    log.info("%s: %d steps in %.1f s, final loss %.4f", family, len(curve), time.perf_counter() - started,
             curve[-1]["loss"])
    started = time.perf_counter()
    metrics["check_instruct"], twin_records = tune_check.behaviour_check(model, tokenizer, examples, **check_args)
    records += [{"model": "instruct", **r} for r in twin_records]
    log.info("%s: twin check, %d prompts in %.1f s", family, len(twin_records), time.perf_counter() - started)
    metrics["loss"] = tune_train.loss_summary(curve)

    source = tune_train.twin_source(family, base_fp["fingerprint"], train_set, cfg["settings"], cfg["max_length"])
    fingerprint = save_model_dir(model, tokenizer, out_dir, source, cfg["dtype"], where=f"tune@{family}")
    metrics["instruct_fingerprint"] = fingerprint["fingerprint"]
    tune_train.write_curve(report_dir / layout.TUNE_LOSS_CSV, curve)
    tune_train.plot_loss(curve, f"tune@{family}: {len(train_set)} examples, {len(curve)} steps",
                         report_dir / layout.TUNE_LOSS_PNG)
    tune_check.write_check_responses(report_dir / layout.TUNE_CHECK_RESPONSES, records)
    metrics["machine"] = machine_facts(model, cfg["dtype"])
    write_json(report_dir / layout.METRICS, metrics)
    log.info("%s: twin check %s -> %s", family, metrics["check_instruct"], out_dir)


if __name__ == "__main__":
    run(main)
