"""The detect stage's steps per dataset (paper §5, Table 1): the eligible questions, one judged
response per question (asked in chunks until both classes are full), and the answer-span metrics of
the balanced set; plus the judges' agreement with labels written outside this code.

``seed_of(tag)`` is the stage's derived seed for one use of ``base.seed`` (stages._common.derived_seed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hneurons import layout
from hneurons.errors import HNeuronsError

log = logging.getLogger("detect")
CHUNK_BATCHES = 4  # generation batches per chunk between two checks of the class counts


def detect_questions(name: str, family: str, cfg: dict[str, Any]) -> list[dict]:
    """The dataset's eligible questions for detection, at most ``cfg["n_questions"][name]``: rows with
    answers (every NonExist row), outside the probe's train/validation splits for the probe's dataset."""
    from hneurons.questions import held_out_questions, prepared_questions

    columns = ["example_id", "question", "answers"]
    if name == cfg["probe_dataset"]:
        rows = held_out_questions(family, name, columns)
    else:
        rows = prepared_questions(name, columns)
    if name != "nonexist":
        rows = [r for r in rows if r["answers"]]
    if cfg["n_questions"][name] is not None:
        if cfg["n_questions"][name] > len(rows):
            log.warning("detect.n_questions.%s=%d: only %d eligible questions; all are used (metrics: n_pool)",
                        name, cfg["n_questions"][name], len(rows))
        rows = rows[: cfg["n_questions"][name]]
    if not rows:
        raise HNeuronsError(f"{layout.prepared(name)}: no questions for detect (detect.n_questions.{name})")
    return rows


def judged_responses(backend, tokenizer, name: str, questions: list[dict], cfg: dict[str, Any], salt: str,
                     seed_of: Callable[[str], int]) -> pd.DataFrame:
    """One judged response per asked question (chunks until min_per_class), balanced: one row per question.

    backend: the generation backend (``compute.backend``)."""
    from hneurons.consistency import select_balanced
    from hneurons.detect import judge_response, judge_until_full
    from hneurons.generate import chat_prompt_ids, fill_question, generate_cached

    decoding = cfg["decoding"][name]
    limit = decoding.max_new_tokens

    def run_chunk(chunk: list[dict]) -> list[dict]:
        prompts = [chat_prompt_ids(tokenizer, fill_question(cfg["prompt"], q["question"])) for q in chunk]
        seeds = [seed_of(f"detect/{name}/{q['example_id']}") for q in chunk]
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
                                        seed_of(f"detect/{name}/balance"))
    return frame


def dataset_result(model, tokenizer, probe, frame: pd.DataFrame, name: str, meta: dict, train, cfg: dict[str, Any],
                   counts: dict[str, Any], seed_of: Callable[[str], int]) -> dict[str, Any]:
    """Answer-span CETT of the selected rows, then probe / random / length metrics for one dataset."""
    from hneurons.detect import answer_features, check_both_classes, detection_metrics, length_probe_scores
    from hneurons.probe_baselines import random_baselines

    records = frame[frame["selected"]].to_dict("records")
    X, rows, span_dropped = answer_features(model, tokenizer, records, name, meta, cfg["extract_batch_size"])
    y = rows["label"].to_numpy().astype(np.int64)
    kept = {"n_faithful": int(np.sum(y == 0)), "n_hallucinated": int(np.sum(y == 1)), "dropped": span_dropped}
    check_both_classes(name, kept, "after answer-span alignment")
    h = probe.positive_
    seeds = [seed_of(f"random/{i}") for i in range(cfg["n_random_seeds"])]
    d_ffn = int(meta["d_ffn"])
    runs = random_baselines(train.X, train.y, X, h, seeds, d_ffn, C=cfg["baseline_C"], sample_weight=train.weight)
    lengths = length_probe_scores(train.frame, rows, cfg["baseline_C"])
    result = detection_metrics(y, probe.predict_proba(X)[:, 1], runs, lengths, cfg["n_boot"],
                               seed_of(f"detect/{name}/ci"))
    return {**counts, "n_selected": int(frame["selected"].sum()), "span_dropped": span_dropped, **result}


def evaluate_dataset(model, tokenizer, backend, probe, name: str, family: str, meta: dict, train,
                     cfg: dict[str, Any], salt: str, seed_of: Callable[[str], int]) -> tuple[pd.DataFrame, dict]:
    """(judged responses, metrics) of one dataset: :func:`detect_questions`, :func:`judged_responses`,
    the class counts (both classes required) and :func:`dataset_result`."""
    from hneurons.detect import check_both_classes, class_counts

    questions = detect_questions(name, family, cfg)
    n_pool = len(questions)
    frame = judged_responses(backend, tokenizer, name, questions, cfg, salt, seed_of)
    counts = class_counts(frame["label"].tolist(), frame["reason"].tolist())
    counts = {**counts, "n_pool": n_pool, "min_per_class": cfg["min_per_class"][name],
              "n_questions_max": cfg["n_questions"][name]}
    log.info("%s/%s: %s", family, name, counts)
    check_both_classes(name, counts)
    r = dataset_result(model, tokenizer, probe, frame, name, meta, train, cfg, counts, seed_of)
    log.info("%s/%s: n=%d | H-Neurons acc %.3f AUROC %.3f [%.3f, %.3f] | random acc %.3f±%.3f AUROC %.3f | "
             "length AUROC %.3f", family, name, r["h_neurons"]["n"], r["h_neurons"]["accuracy"],
             r["h_neurons"]["auroc"], *r["h_neurons"]["auroc_ci95"], r["random"]["accuracy"]["mean"],
             r["random"]["accuracy"]["sd"], r["random"]["auroc"]["mean"],
             r["length"]["response_tokens"]["auroc"])
    return frame, r


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
            raise HNeuronsError(f"detect.judge_reference={reference!r}: file not found")
        out["bioasq_gpt4o"] = bioasq_reference_agreement(path, BioRuleJudge())
        report = out["bioasq_gpt4o"]["report"]
        log.info("BioASQ judge vs GPT-4o (report half): n=%d agreement %.3f kappa %.3f", report["n"],
                 report["agreement"], report["kappa"])
    return out


def probe_inputs(family: str, probe_dataset: str, labelling: str):
    """(probe, training activations' metadata, probe training rows) for ``family``; one-line errors for a
    probe without H-Neurons, missing activations or a feature count that does not match them."""
    from hneurons.activations import activation_metadata
    from hneurons.detect import probe_training_rows
    from hneurons.probe import load_probe

    directory = layout.probe_dir(family)
    probe, _ = load_probe(directory)
    if probe.positive_.size == 0:
        raise HNeuronsError(f"{directory}: the probe has no positive weights (no H-Neurons to test); "
                            f"widen probe.C_grid")
    acts = layout.activations(family, "instruct", probe_dataset)
    if not acts.is_dir():
        raise HNeuronsError(f"{acts}: not found (run the extract stage for family {family!r})")
    meta = activation_metadata(acts)
    if probe.n_features_in_ != int(meta["n_layers"]) * int(meta["d_ffn"]):
        raise HNeuronsError(f"{directory}: the probe has {probe.n_features_in_} features; {acts} has "
                            f"{meta['n_layers']} x {meta['d_ffn']}")
    return probe, meta, probe_training_rows(acts, labelling)

