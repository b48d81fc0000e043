"""sample@<family>: consistency sampling and judging (paper §2, §6.1.1).

data/prepared/<dataset>.parquet + models/llm/<family>/instruct/
  -> data/samples/<family>/<dataset>.parquet   (every sample, its judgement, per-question label and split)
  -> reports/sample/<family>/metrics.json

Generation runs on the engine of ``compute.backend`` (transformers in-process, vLLM, or an
OpenAI-compatible server); the samples file's metadata ``generation`` records engine, version,
device, dtype and batch invariance. Completed generation batches are kept in
<base.cache_dir>/sample/<family>/ (keyed by their inputs and, for engines other than
transformers, the engine; not a DVC output), so an interrupted run resumes and gives the
same bytes as an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from hneurons import layout
from hneurons.errors import HNeuronsError
from stages._common import compute_settings, device_tag, run, setup_torch
from stages._generation import decoding_settings, generation_backend
from stages.config import Judge, load_config

log = logging.getLogger("sample")


def make_judge(config: Judge | None):
    """The judge named by ``sample.judge``: {kind: rule} or {kind: llm, base_url, model, api_key_env}
    (endpoint fallbacks: :func:`hneurons.llm_judge.llm_judge`)."""
    from hneurons.judge import RuleJudge
    from hneurons.llm_judge import llm_judge

    kind = config.kind if config is not None else None
    if kind == "rule":
        return RuleJudge()
    if kind == "llm":
        return llm_judge(config.model_dump(), "sample.judge")
    raise HNeuronsError(f"sample.judge.kind={kind!r}: expected 'rule' or 'llm'")


def read_questions(path: Path, n_questions: Any):
    """(example_ids, questions, answers, n_without_answers) of the first ``n_questions`` answerable rows."""
    from hneurons.io import read_table

    if not path.is_file():
        raise HNeuronsError(f"{path}: not found (run the prepare stage)")
    table = read_table(path, columns=["example_id", "question", "answers"]).to_pydict()
    if not table["example_id"]:
        raise HNeuronsError(f"{path}: no questions")
    rows = [(i, q, [a for a in (ans or []) if a]) for i, q, ans in
            zip(table["example_id"], table["question"], table["answers"])]
    if n_questions is not None:
        if not isinstance(n_questions, int) or n_questions < 1:
            raise HNeuronsError(f"sample.n_questions={n_questions!r}: expected an integer >= 1 or null")
    answerable = [row for row in rows if row[2]]
    if not answerable:
        raise HNeuronsError(f"{path}: no question has answers; the rule and LLM judges need reference answers")
    if n_questions is not None:
        if n_questions > len(answerable):
            raise HNeuronsError(f"sample.n_questions={n_questions}: {path} has only {len(answerable)} questions "
                                f"with answers (null takes them all)")
        answerable = answerable[:n_questions]
    ids, questions, answers = (list(col) for col in zip(*answerable))
    skipped = sum(1 for row in rows[:rows.index(answerable[-1]) + 1] if not row[2])
    return ids, questions, answers, skipped


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.sample FAMILY")
    family = argv[0]
    cfg = load_config().family("sample", family)
    sample = cfg.sample
    setup_torch(cfg)
    from hneurons.consistency import RunConfig, run_consistency
    from hneurons.io import read_json, write_json, write_parquet
    from hneurons.machine import machine_facts

    settings = replace(decoding_settings(sample.decoding, where="sample.decoding"),
                       n_samples=sample.n_samples).validate("sample")   # names sample.n_samples
    dataset = sample.dataset
    model_dir = layout.model_dir(family, "instruct")
    if not (model_dir / "fingerprint.json").is_file():
        raise HNeuronsError(f"{model_dir}/fingerprint.json: not found (run the model stage for {family}-instruct)")
    fingerprint = read_json(model_dir / "fingerprint.json")
    ids, questions, answers, n_unanswerable = read_questions(layout.prepared(dataset),
                                                             sample.n_questions)
    config = RunConfig(
        settings=settings,
        prompt_template=sample.prompt,
        seed=int(cfg.base.seed),
        batch_size=sample.batch_size,
        early_stop_after=tuple(sample.early_stop_after or []),
        lazy_majority=bool(sample.lazy_majority),
        min_agreement=sample.min_agreement,
        max_per_class=sample.max_per_class,
        split_fractions=sample.splits.model_dump(exclude_none=True),
    ).validate("sample")
    judge = make_judge(sample.judge)
    if hasattr(judge, "check"):
        judge.check()  # an unreachable LLM endpoint fails here, before any sampling
    device, dtype = compute_settings(cfg, family)
    backend, tokenizer, model = generation_backend(cfg, family, model_dir)
    cache_dir = Path(cfg.base.cache_dir or ".cache/hneurons") / "sample" / family
    # base.threads is left out of the key on purpose: an execution detail like the CPU model
    # (float rounding may differ between thread counts; a resumed run keeps what was sampled).
    salt = f"{fingerprint['fingerprint']}:{dtype}{device_tag(device)}"
    started = time.perf_counter()
    result = run_consistency(backend, tokenizer, ids, questions, answers, config, judge,
                             cache_dir=cache_dir, cache_salt=salt, progress=True)
    elapsed = time.perf_counter() - started
    if result.counts["selected_per_class"] == 0:
        raise HNeuronsError(
            f"sample: no balanced set for {family} (consistent faithful {result.counts['consistent']['faithful']}, "
            f"hallucinated {result.counts['consistent']['hallucinated']}); raise sample.n_questions or lower "
            f"sample.decoding.temperature / sample.min_agreement (sampled batches are kept in {cache_dir})")
    metadata = {"family": family, "dataset": dataset, "model_fingerprint": fingerprint["fingerprint"],
                "decoding": settings.as_dict(), "generation": backend.info(), "judge": judge.name,
                "seed": config.seed, "config": config.as_dict(), "counts": result.counts}
    write_parquet(layout.samples(family, dataset), result.table, metadata)
    metrics = dict(result.metrics, questions_without_answers=n_unanswerable, generation=backend.info(),
                   machine=machine_facts(model, dtype))
    write_json(layout.report_dir("sample", family) / layout.METRICS, metrics)
    log.info("%s: %d questions, %d samples, faithful %d / hallucinated %d consistent, %d per class selected, "
             "%.0f s", family, metrics["questions_seen"], metrics["samples_drawn"],
             metrics["consistent"]["faithful"], metrics["consistent"]["hallucinated"],
             metrics["selected_per_class"], elapsed)


if __name__ == "__main__":
    run(main)
