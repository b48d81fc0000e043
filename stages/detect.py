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

from hneurons.errors import HNeuronsError
from stages._common import (compute_settings, derived_seed, device_tag, load_params,
                             param, run, setup_torch)
from stages.config import family_params
from stages._generation import generation_backend

SECTION = "detect"


def read_config(params: dict[str, Any]) -> dict[str, Any]:
    """The detect section plus the keys it reuses (one-line errors naming the key)."""
    from hneurons.detect import DATASETS, TABLE_METRICS
    from hneurons.generate import DecodingSettings

    p = lambda key: param(params, f"{SECTION}.{key}")  # noqa: E731
    datasets = p("datasets")
    if not isinstance(datasets, list) or not datasets or sorted(set(datasets) - set(DATASETS)):
        raise HNeuronsError(f"{SECTION}.datasets={datasets!r}: expected a non-empty list among {', '.join(DATASETS)}")
    n_questions, min_per_class = p("n_questions"), p("min_per_class")
    for key, table, allow_null in (("n_questions", n_questions, True), ("min_per_class", min_per_class, True)):
        if not isinstance(table, dict):
            raise HNeuronsError(f"{SECTION}.{key}: expected a mapping dataset -> count")
        for name in datasets:
            if name not in table:
                raise HNeuronsError(f"{SECTION}.{key}.{name}: missing (an integer >= 1, or null)")
            value = table[name]
            if value is None and allow_null:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HNeuronsError(f"{SECTION}.{key}.{name}={value!r}: expected an integer >= 1 or null")
    nq_limit = tune_reserved_from(params, "nq_open")
    if "nq_open" in datasets and nq_limit is not None:
        if n_questions["nq_open"] is None:
            n_questions = {**n_questions, "nq_open": nq_limit}
        elif n_questions["nq_open"] > nq_limit:
            raise HNeuronsError(f"{SECTION}.n_questions.nq_open={n_questions['nq_open']}: must be <= {nq_limit} "
                                f"(NQ-Open rows from tune.trivia.rows[0] = {nq_limit} are the tune stage's)")
    decoding, fields = p("decoding"), {"temperature", "top_k", "top_p", "max_new_tokens"}
    if not isinstance(decoding, dict):
        raise HNeuronsError(f"{SECTION}.decoding: expected a mapping dataset -> decoding settings")
    settings = {}
    for name in datasets:
        spec = decoding.get(name)
        if not isinstance(spec, dict) or set(spec) - fields:
            raise HNeuronsError(f"{SECTION}.decoding.{name}: expected a mapping with keys among "
                                f"{', '.join(sorted(fields))}")
        settings[name] = DecodingSettings(n_samples=1, **spec).validate(f"{SECTION}.decoding.{name}")
    cfg = {"datasets": [d for d in DATASETS if d in datasets], "n_questions": n_questions,
           "min_per_class": min_per_class,
           "decoding": settings,
           "batch_size": p("batch_size"), "extract_batch_size": p("extract_batch_size"),
           "max_per_class": p("max_per_class"), "n_boot": p("n_boot"), "table_metric": p("table_metric"),
           "judge_labels": p("judge_labels"), "judge_reference": p("judge_reference"), "prompt": param(params, "sample.prompt"),
           "probe_dataset": param(params, "probe.dataset"), "labelling": param(params, "probe.labelling"),
           "baseline_C": param(params, "probe.baseline_C"), "n_random_seeds": param(params, "probe.n_random_seeds"),
           "seed": int(param(params, "base.seed")),
           "cache_dir": Path(param(params, "base.cache_dir", ".cache/hneurons"))}
    for key, minimum in (("batch_size", 1), ("extract_batch_size", 1), ("n_boot", 0), ("n_random_seeds", 1)):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < minimum:
            raise HNeuronsError(f"{SECTION}.{key}={cfg[key]!r}: expected an integer >= {minimum}")
    if cfg["max_per_class"] is not None and (not isinstance(cfg["max_per_class"], int) or cfg["max_per_class"] < 1):
        raise HNeuronsError(f"{SECTION}.max_per_class={cfg['max_per_class']!r}: expected null or an integer >= 1")
    if cfg["table_metric"] not in TABLE_METRICS:
        raise HNeuronsError(f"{SECTION}.table_metric={cfg['table_metric']!r}: expected one of "
                            f"{', '.join(TABLE_METRICS)}")
    if not isinstance(cfg["prompt"], str) or "{question}" not in cfg["prompt"]:
        raise HNeuronsError(f"sample.prompt={cfg['prompt']!r}: must contain {{question}}")
    return cfg


def tune_reserved_from(params: dict[str, Any], dataset: str) -> int | None:
    """First prepared row of ``dataset`` that the tune stage takes (``tune.trivia.rows``), or None."""
    trivia = param(params, "tune.trivia", None)
    if not isinstance(trivia, dict) or trivia.get("dataset") != dataset:
        return None
    rows = trivia.get("rows")
    if not isinstance(rows, list) or len(rows) != 2 or not all(isinstance(r, int) for r in rows):
        raise HNeuronsError(f"tune.trivia.rows={rows!r}: expected [start, end]")
    return int(rows[0])


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.detect FAMILY")
    family = argv[0]
    params = family_params(load_params(), SECTION, family)
    cfg = read_config(params)
    cfg["device"], cfg["dtype"] = compute_settings(params, family)
    setup_torch(params)
    from hneurons.detect_report import detect_metrics, write_responses_and_table1
    from hneurons.detect_run import evaluate_dataset, judge_checks, probe_inputs
    from hneurons.io import jsonable, write_json
    from hneurons.machine import machine_facts
    from hneurons.materialize import read_fingerprint
    from hneurons.models import load_causal_lm

    agreement = judge_checks(cfg["judge_labels"], cfg["judge_reference"])
    model_dir = Path(f"models/llm/{family}/instruct")
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
    report_dir, data_dir = Path(f"reports/detect/{family}"), Path(f"data/detect/{family}")
    write_responses_and_table1(frames, results, metrics, cfg["prompt"], cfg["table_metric"], data_dir, report_dir)
    metrics["generation"] = backend.info()
    metrics["machine"] = machine_facts(model, cfg["dtype"])
    write_json(report_dir / "metrics.json", jsonable(metrics))

if __name__ == "__main__":
    run(main)
