"""detect@<family>: the TriviaQA probe, unchanged, on held-out TriviaQA, NQ-Open, BioASQ, NonExist
(paper §5, Table 1).

Reads ``models/llm/<family>/instruct``, the probe ``models/probe/<family>/``, its training
activations ``data/activations/<family>/instruct/<probe.dataset>/`` (training rows for the
random-neuron and length probes; span rule, region variant and readout to reuse), the probe's
samples (``data/samples/<family>/<probe.dataset>.parquet``: train/validation questions to
exclude) and ``data/prepared/<dataset>.parquet``. Writes

- ``reports/detect/<family>/metrics.json``: per dataset n per class, dropped by reason, span drops,
  H-Neuron accuracy/AUROC with bootstrap 95% CIs, random neurons (mean +/- sd), length-only
  probes; the judges' agreement with the hand labels (``detect.judge_labels``);
- ``reports/detect/<family>/table1.csv`` and ``table1.png`` (paper Table 1 shape, ``detect.table_metric``);
- ``data/detect/<family>/responses.parquet``: every response, its judgement and selection.

One sample per question with ``detect.decoding.<dataset>`` (paper: T=1.0, top-k 50, top-p 0.9) under the
chat template with ``sample.prompt``; seeds ``derived_seed(base.seed, "detect/<dataset>/<id>")``;
completed generation batches are cached in ``<base.cache_dir>/detect/<family>/`` (resumable).
Questions: TriviaQA rows not in the probe's train/validation splits; NQ-Open, BioASQ (rows with
answers) and NonExist from the first row; at most ``detect.n_questions.<dataset>`` of each (null = every
eligible one), asked in chunks until both classes hold ``detect.min_per_class.<dataset>`` judged rows
(:func:`hneurons.detect.judge_until_full`). NQ-Open stays below the first row of ``tune.trivia.rows``
when the tune stage takes its trivia from NQ-Open. The steps per dataset: :mod:`hneurons.detect_run`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hneurons import layout
from hneurons.errors import HNeuronsError
from stages._common import derived_seed, device_tag, run, setup_torch
from stages._generation import decoding_settings, generation_backend
from stages.config import Config, load_config

SECTION = "detect"


def read_config(config: Config) -> dict[str, Any]:
    """The detect section plus the keys it reuses, as the library takes them (one-line errors naming the key)."""
    from hneurons.detect import DATASETS, TABLE_METRICS

    section = config.detect.require(SECTION)
    datasets = section.datasets
    if not datasets or sorted(set(datasets) - set(DATASETS)):
        raise HNeuronsError(f"{SECTION}.datasets={datasets!r}: expected a non-empty list among {', '.join(DATASETS)}")
    n_questions, min_per_class = dict(section.n_questions), dict(section.min_per_class)
    for key, table in (("n_questions", n_questions), ("min_per_class", min_per_class)):
        for name in datasets:
            if name not in table:
                raise HNeuronsError(f"{SECTION}.{key}.{name}: missing (an integer >= 1, or null)")
            value = table[name]
            if value is not None and value < 1:
                raise HNeuronsError(f"{SECTION}.{key}.{name}={value!r}: expected an integer >= 1 or null")
    nq_limit = tune_reserved_from(config, "nq_open")
    if "nq_open" in datasets and nq_limit is not None:
        if n_questions["nq_open"] is None:
            n_questions = {**n_questions, "nq_open": nq_limit}
        elif n_questions["nq_open"] > nq_limit:
            raise HNeuronsError(f"{SECTION}.n_questions.nq_open={n_questions['nq_open']}: must be <= {nq_limit} "
                                f"(NQ-Open rows from tune.trivia.rows[0] = {nq_limit} are the tune stage's)")
    settings = {}
    for name in datasets:
        if name not in section.decoding:
            raise HNeuronsError(f"{SECTION}.decoding.{name}: missing (temperature, top_k, top_p, max_new_tokens)")
        settings[name] = decoding_settings(section.decoding[name], where=f"{SECTION}.decoding.{name}")
    probe, prompt = config.probe, config.sample.prompt if config.sample else None
    cfg = {"datasets": [d for d in DATASETS if d in datasets], "n_questions": n_questions,
           "min_per_class": min_per_class,
           "decoding": settings,
           "batch_size": section.batch_size, "extract_batch_size": section.extract_batch_size,
           "max_per_class": section.max_per_class, "n_boot": section.n_boot, "table_metric": section.table_metric,
           "judge_labels": section.judge_labels, "judge_reference": section.judge_reference, "prompt": prompt,
           "probe_dataset": probe.dataset, "labelling": probe.labelling,
           "baseline_C": probe.baseline_C, "n_random_seeds": probe.n_random_seeds,
           "seed": int(config.base.seed), "cache_dir": Path(config.base.cache_dir or ".cache/hneurons")}
    if cfg["table_metric"] not in TABLE_METRICS:
        raise HNeuronsError(f"{SECTION}.table_metric={cfg['table_metric']!r}: expected one of "
                            f"{', '.join(TABLE_METRICS)}")
    if not isinstance(cfg["prompt"], str) or "{question}" not in cfg["prompt"]:
        raise HNeuronsError(f"sample.prompt={cfg['prompt']!r}: must contain {{question}}")
    return cfg


def tune_reserved_from(config: Config, dataset: str) -> int | None:
    """First prepared row of ``dataset`` that the tune stage takes (``tune.trivia.rows``), or None."""
    trivia = config.tune.trivia if config.tune else None
    if trivia is None or trivia.dataset != dataset:
        return None
    rows = trivia.rows
    if not isinstance(rows, list) or len(rows) != 2 or not all(isinstance(r, int) for r in rows):
        raise HNeuronsError(f"tune.trivia.rows={rows!r}: expected [start, end]")
    return int(rows[0])


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.detect FAMILY")
    family = argv[0]
    params = load_config().family(SECTION, family)
    cfg = read_config(params)
    cfg["device"], cfg["dtype"] = params.compute.device, params.compute.dtype
    setup_torch(params)
    from hneurons.detect_report import detect_metrics, write_responses_and_table1
    from hneurons.detect_run import evaluate_dataset, judge_checks, probe_inputs
    from hneurons.io import jsonable, write_json
    from hneurons.machine import machine_facts
    from hneurons.materialize import read_fingerprint
    from hneurons.models import load_causal_lm

    agreement = judge_checks(cfg["judge_labels"], cfg["judge_reference"])
    model_dir = layout.model_dir(family, "instruct")
    probe, meta, train = probe_inputs(family, cfg["probe_dataset"], cfg["labelling"])
    fingerprint = read_fingerprint(model_dir)["fingerprint"]
    model, tokenizer = load_causal_lm(model_dir, cfg["dtype"], cfg["device"])
    backend, _, _ = generation_backend(params, family, model_dir, model, tokenizer)
    salt = f"{fingerprint}/{cfg['dtype']}{device_tag(cfg['device'])}/detect"
    seed_of = lambda tag: derived_seed(cfg["seed"], tag)  # noqa: E731

    frames, results = [], {}
    for name in cfg["datasets"]:
        frame, results[name] = evaluate_dataset(model, tokenizer, backend, probe, name, family, meta, train, cfg,
                                                salt, seed_of)
        frames.append(frame)

    metrics = detect_metrics(family, fingerprint, int(probe.positive_.size), cfg, meta, agreement, results)
    report_dir, data_dir = layout.report_dir("detect", family), layout.data_dir("detect", family)
    write_responses_and_table1(frames, results, metrics, cfg["prompt"], cfg["table_metric"], data_dir, report_dir)
    metrics["generation"] = backend.info()
    metrics["machine"] = machine_facts(model, cfg["dtype"])
    write_json(report_dir / layout.METRICS, jsonable(metrics))

if __name__ == "__main__":
    run(main)
