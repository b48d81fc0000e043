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
when the tune stage takes its trivia from NQ-Open.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hneurons.errors import HNeuronsError
from stages._common import (compute_settings, derived_seed, device_tag, family_params, load_params,
                             param, run, setup_torch)
from stages._generation import generation_backend

log = logging.getLogger("detect")
SECTION = "detect"
CHUNK_BATCHES = 4  # generation batches per chunk between two checks of the class counts


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


def detect_questions(name: str, family: str, cfg: dict[str, Any]) -> list[dict]:
    """The dataset's eligible questions for detection (see the module docstring), at most n_questions."""
    from hneurons.io import read_table

    path = Path("data/prepared") / f"{name}.parquet"
    if not path.is_file():
        raise HNeuronsError(f"{path}: not found; run prepare@{name}")
    rows = read_table(path, columns=["example_id", "question", "answers"]).to_pylist()
    if name != "nonexist":
        rows = [r for r in rows if r["answers"]]
    if name == cfg["probe_dataset"]:
        samples = Path(f"data/samples/{family}/{name}.parquet")
        if not samples.is_file():
            raise HNeuronsError(f"{samples}: not found (run the sample stage); needed to exclude the probe's questions")
        used = read_table(samples, columns=["example_id", "split"]).to_pandas()
        taken = set(used.loc[used["split"].isin(["train", "validation"]), "example_id"])
        rows = [r for r in rows if r["example_id"] not in taken]
    if cfg["n_questions"][name] is not None:
        if cfg["n_questions"][name] > len(rows):
            log.warning("detect.n_questions.%s=%d: only %d eligible questions; all are used (metrics: n_pool)",
                        name, cfg["n_questions"][name], len(rows))
        rows = rows[: cfg["n_questions"][name]]
    if not rows:
        raise HNeuronsError(f"{path}: no questions for detect (detect.n_questions.{name})")
    return rows


def judged_responses(backend, tokenizer, name: str, questions: list[dict], cfg: dict[str, Any],
                     salt: str) -> pd.DataFrame:
    """One judged response per asked question (chunks until min_per_class), balanced: one row per question.

    backend: the generation backend (``compute.backend``)."""
    from hneurons.consistency import select_balanced
    from hneurons.detect import judge_response, judge_until_full
    from hneurons.generate import chat_prompt_ids, fill_question, generate_cached

    decoding = cfg["decoding"][name]
    limit = decoding.max_new_tokens

    def run_chunk(chunk: list[dict]) -> list[dict]:
        prompts = [chat_prompt_ids(tokenizer, fill_question(cfg["prompt"], q["question"])) for q in chunk]
        seeds = [derived_seed(cfg["seed"], f"detect/{name}/{q['example_id']}") for q in chunk]
        generated = generate_cached(backend, prompts, decoding, seeds, cfg["batch_size"],
                                    cfg["cache_dir"] / "detect", salt=salt, progress=False)
        rows = []
        for question, prompt, ids in zip(chunk, prompts, generated):
            text = tokenizer.decode(ids, skip_special_tokens=True)
            answers = list(question["answers"] or [])
            verdict = judge_response(name, question["question"], text, answers)
            rows.append({"dataset": name, "example_id": question["example_id"], "question": question["question"],
                         "answers": answers, "prompt_ids": prompt, "response_ids": [int(i) for i in ids],
                         "response": text, "finished": len(ids) < limit, "label": verdict.label,
                         "reason": verdict.reason, "correct": verdict.correct})
        return rows

    rows = judge_until_full(questions, run_chunk, cfg["batch_size"] * CHUNK_BATCHES, cfg["min_per_class"][name],
                            desc=f"detect {name}")
    frame = pd.DataFrame(rows)
    frame["selected"] = select_balanced(frame["label"].tolist(), cfg["max_per_class"],
                                        derived_seed(cfg["seed"], f"detect/{name}/balance"))
    return frame


def dataset_result(model, tokenizer, probe, frame: pd.DataFrame, name: str, meta: dict, train, cfg: dict[str, Any],
                   counts: dict[str, Any]) -> dict[str, Any]:
    """Answer-span CETT of the selected rows, then probe / random / length metrics for one dataset."""
    from hneurons.detect import answer_features, check_both_classes, detection_metrics, length_probe_scores
    from hneurons.probe import random_baselines

    records = frame[frame["selected"]].to_dict("records")
    X, rows, span_dropped = answer_features(model, tokenizer, records, name, meta, cfg["extract_batch_size"])
    y = rows["label"].to_numpy().astype(np.int64)
    kept = {"n_faithful": int(np.sum(y == 0)), "n_hallucinated": int(np.sum(y == 1)), "dropped": span_dropped}
    check_both_classes(name, kept, "after answer-span alignment")
    h = probe.positive_
    seeds = [derived_seed(cfg["seed"], f"random/{i}") for i in range(cfg["n_random_seeds"])]
    d_ffn = int(meta["d_ffn"])
    runs = random_baselines(train.X, train.y, X, h, seeds, d_ffn, C=cfg["baseline_C"], sample_weight=train.weight)
    lengths = length_probe_scores(train.frame, rows, cfg["baseline_C"])
    result = detection_metrics(y, probe.predict_proba(X)[:, 1], runs, lengths, cfg["n_boot"],
                               derived_seed(cfg["seed"], f"detect/{name}/ci"))
    return {**counts, "n_selected": int(frame["selected"].sum()), "span_dropped": span_dropped, **result}


def judge_checks(directory: Any, reference: Any) -> dict[str, Any]:
    """The judges against labels written outside this code: the hand labels (``qa.jsonl``,
    ``nonexist.jsonl`` in ``directory``) and, for BioASQ, GPT-4o verdicts (``reference``, report half)."""
    from hneurons.bio_judge import BioRuleJudge
    from hneurons.detect import judge_agreement, read_fixture
    from hneurons.judge_eval import bioasq_reference_agreement

    out: dict[str, Any] = {}
    if directory:
        records = [r for kind in ("qa", "nonexist") for r in read_fixture(Path(directory) / f"{kind}.jsonl")]
        out["hand_labels"] = judge_agreement(records)
        log.info("judge agreement with hand labels (%s): %d/%d = %.3f", directory, out["hand_labels"]["n_agree"],
                 out["hand_labels"]["n"], out["hand_labels"]["agreement"])
    if reference:
        path = Path(reference)
        if not path.is_file():
            raise HNeuronsError(f"{SECTION}.judge_reference={reference!r}: file not found")
        out["bioasq_gpt4o"] = bioasq_reference_agreement(path, BioRuleJudge())
        report = out["bioasq_gpt4o"]["report"]
        log.info("BioASQ judge vs GPT-4o (report half): n=%d agreement %.3f kappa %.3f", report["n"],
                 report["agreement"], report["kappa"])
    return out


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.detect FAMILY")
    family = argv[0]
    params = family_params(load_params(), SECTION, family)
    cfg = read_config(params)
    cfg["device"], cfg["dtype"] = compute_settings(params, family)
    setup_torch(params)
    import pyarrow as pa

    from hneurons.activations import activation_metadata
    from hneurons.detect import check_both_classes, class_counts, plot_table1, probe_training_rows, table1
    from hneurons.io import csv_text, jsonable, write_json, write_parquet, write_text
    from hneurons.machine import machine_facts
    from hneurons.materialize import read_fingerprint
    from hneurons.models import load_causal_lm
    from hneurons.probe import load_probe

    agreement = judge_checks(cfg["judge_labels"], cfg["judge_reference"])
    model_dir = Path(f"models/llm/{family}/instruct")
    probe, _ = load_probe(Path(f"models/probe/{family}"))
    if probe.positive_.size == 0:
        raise HNeuronsError(f"models/probe/{family}: the probe has no positive weights (no H-Neurons to test); "
                            f"widen probe.C_grid")
    acts = Path(f"data/activations/{family}/instruct/{cfg['probe_dataset']}")
    if not acts.is_dir():
        raise HNeuronsError(f"{acts}: not found (run the extract stage for family {family!r})")
    meta = activation_metadata(acts)
    if probe.n_features_in_ != int(meta["n_layers"]) * int(meta["d_ffn"]):
        raise HNeuronsError(f"models/probe/{family}: the probe has {probe.n_features_in_} features; {acts} has "
                            f"{meta['n_layers']} x {meta['d_ffn']}")
    fingerprint = read_fingerprint(model_dir)["fingerprint"]
    model, tokenizer = load_causal_lm(model_dir, cfg["dtype"], cfg["device"])
    backend, _, _ = generation_backend(params, family, model_dir, model, tokenizer)
    train = probe_training_rows(acts, cfg["labelling"])
    salt = f"{fingerprint}/{cfg['dtype']}{device_tag(cfg['device'])}/detect"

    frames, results = [], {}
    for name in cfg["datasets"]:
        questions = detect_questions(name, family, cfg)
        n_pool = len(questions)
        frame = judged_responses(backend, tokenizer, name, questions, cfg, salt)
        frames.append(frame)
        counts = class_counts(frame["label"].tolist(), frame["reason"].tolist())
        counts = {**counts, "n_pool": n_pool, "min_per_class": cfg["min_per_class"][name],
                  "n_questions_max": cfg["n_questions"][name]}
        log.info("%s/%s: %s", family, name, counts)
        check_both_classes(name, counts)
        results[name] = dataset_result(model, tokenizer, probe, frame, name, meta, train, cfg, counts)
        r = results[name]
        log.info("%s/%s: n=%d | H-Neurons acc %.3f AUROC %.3f [%.3f, %.3f] | random acc %.3f±%.3f AUROC %.3f | "
                 "length AUROC %.3f", family, name, r["h_neurons"]["n"], r["h_neurons"]["accuracy"],
                 r["h_neurons"]["auroc"], *r["h_neurons"]["auroc_ci95"], r["random"]["accuracy"]["mean"],
                 r["random"]["accuracy"]["sd"], r["random"]["auroc"]["mean"],
                 r["length"]["response_tokens"]["auroc"])

    metrics = {"family": family, "model_fingerprint": fingerprint, "n_h_neurons": int(probe.positive_.size),
               "probe_dataset": cfg["probe_dataset"], "decoding": {d: cfg["decoding"][d].as_dict() for d in cfg["datasets"]}, "prompt": cfg["prompt"],
               "span_rule": meta["span_rule"], "region_variant": meta["region_variant"], "readout": meta["readout"],
               "table_metric": cfg["table_metric"], "judge_agreement": agreement, "datasets": results}
    report_dir, data_dir = Path(f"reports/detect/{family}"), Path(f"data/detect/{family}")
    responses = pd.concat(frames, ignore_index=True)
    write_parquet(data_dir / "responses.parquet", pa.Table.from_pandas(responses, preserve_index=False),
                  jsonable({"family": family, "decoding": metrics["decoding"], "prompt": cfg["prompt"]}))
    write_text(report_dir / "table1.csv", csv_text(table1(results, cfg["table_metric"]), "%.2f"))
    sizes = ", ".join(f"{r['h_neurons']['n_faithful']}/{r['h_neurons']['n_hallucinated']}" for r in results.values())
    title = (f"{family}: {metrics['n_h_neurons']} H-Neurons, {cfg['table_metric']} on balanced sets "
             f"(faithful/hallucinated: {sizes})")
    plot_table1(results, cfg["table_metric"], title, report_dir / "table1.png")
    metrics["generation"] = backend.info()
    metrics["machine"] = machine_facts(model, cfg["dtype"])
    write_json(report_dir / "metrics.json", jsonable(metrics))


if __name__ == "__main__":
    run(main)
