"""The origin stage's backward transfer (paper §6.3.1) and its outputs, around hneurons.origin.

Questions (transfer_questions): the first ``origin.n_questions`` answered rows of each
prepared table of ``origin.datasets``; for ``probe.dataset`` (TriviaQA) those not in the
probe's train/validation questions. Base responses (base_responses): prompt ``question +
"\\nAnswer:"`` without a chat template, sampled with ``origin.decoding`` (the paper leaves
it unstated; its §5 sampling is the default), cut at the first newline after the answer
has begun (leading blank lines kept: hneurons.origin.cut_at_newline), labelled by the rule
judge (refusals and empty responses are dropped) and balanced by seeded downsampling.
Features (base_features): answer-span CETT on the base model with the probe's span rule and
readout. Metrics (transfer_metrics): the instruct probe applied unchanged, its AUROC with a
bootstrap CI, and the random-neuron probes trained on the probe's training rows
(instruct_training_rows). ``analyse`` runs drift (hneurons.origin.drift_outputs) and
transfer and writes the files of data/origin/<family>/ and reports/origin/<family>/.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from hneurons import layout, origin
from hneurons.errors import HNeuronsError
from hneurons.io import write_parquet, write_text

log = logging.getLogger("origin")
HELD_OUT_NOTE = ", outside the probe train/validation split"


def transfer_questions(name: str, family: str, cfg: dict[str, Any]) -> list[dict]:
    """The first ``n_questions[name]`` eligible rows of data/prepared/<name>.parquet (with reference answers)."""
    from hneurons.questions import held_out_questions, prepared_questions

    columns = ["example_id", "question", "answers"]
    rows = (held_out_questions(family, name, columns) if name == cfg["probe_dataset"]
            else prepared_questions(name, columns))
    rows = [r for r in rows if r["answers"]]
    n = cfg["n_questions"][name]
    if n > len(rows):
        raise HNeuronsError(f"origin.n_questions.{name}={n}: only {len(rows)} eligible {name} questions "
                            f"(with answers{HELD_OUT_NOTE if name == cfg['probe_dataset'] else ''})")
    return rows[:n]


def base_responses(backend, tokenizer, name: str, questions: list[dict], cfg: dict[str, Any], salt: str,
                   lines: origin.LineTokens, seed_for: Callable[[str], int]) -> pd.DataFrame:
    """Generate with the base model's backend (``compute.backend``), cut at the first newline, judge, label
    and balance: one row per question.

    label: 0 = correct (faithful), 1 = wrong (hallucinated), -1 = refusal/empty
    (not used); ``selected`` marks the balanced set. Seeds: ``seed_for("origin/<name>/<example_id>")``
    per question, ``seed_for("origin/<name>/balance")`` for the balancing.
    """
    from hneurons.consistency import select_balanced
    from hneurons.generate import generate_cached
    from hneurons.judge import RuleJudge

    prompts = [origin.base_prompt_ids(tokenizer, q["question"]) for q in questions]
    seeds = [seed_for(f"origin/{name}/{q['example_id']}") for q in questions]
    generated = generate_cached(backend, prompts, cfg["decoding"], seeds, cfg["batch_size"],
                                cfg["cache_dir"] / "origin", salt=salt, progress=True, desc=f"base {name}")
    judge = RuleJudge()
    rows = []
    for question, prompt, ids in zip(questions, prompts, generated):
        kept = origin.cut_at_newline(ids, lines)
        text = tokenizer.decode(kept, skip_special_tokens=True)
        verdict = judge.judge(question["question"], text, question["answers"])
        label = -1 if verdict.refusal else (0 if verdict.correct else 1)
        rows.append({"dataset": name, "example_id": question["example_id"], "question": question["question"],
                     "answers": list(question["answers"]), "prompt_ids": prompt, "response_ids": kept,
                     "response": text, "cut": len(kept) < len(ids), "correct": bool(verdict.correct),
                     "refusal": bool(verdict.refusal), "label": label})
    frame = pd.DataFrame(rows)
    frame["selected"] = select_balanced(frame["label"].tolist(), cfg["max_per_class"],
                                        seed_for(f"origin/{name}/balance"))
    return frame


def base_features(model, tokenizer, frame: pd.DataFrame, name: str, meta: dict[str, Any],
                  cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Answer-span CETT of the selected base responses: (X float32[n, D], y int64[n], span drop counts)."""
    from hneurons.detect import answer_features

    records = frame[frame["selected"]].to_dict("records")
    X, rows, dropped = answer_features(model, tokenizer, records, name, meta, cfg["extract_batch_size"])
    return X, rows["label"].to_numpy().astype(np.int64), dropped


def instruct_training_rows(acts: Path, labelling: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """The probe's training rows: (X float32[n, D] as a lazy column reader, y int8[n], sample weight float64[n])."""
    from hneurons.detect import probe_training_rows

    rows = probe_training_rows(acts, labelling)
    return rows.X, rows.y, rows.weight


def transfer_metrics(probe, X: np.ndarray, y: np.ndarray, train: tuple, h: np.ndarray, d_ffn: int,
                     cfg: dict[str, Any], name: str, seed_for: Callable[[str], int]) -> dict[str, Any]:
    """The probe's AUROC on base rows (CI, seed ``seed_for("origin/<name>/ci")``) and the random-neuron
    probes' AUROC (mean, sd, per seed ``seed_for("random/<i>")``)."""
    from hneurons.probe_baselines import random_baselines
    from hneurons.stats import auroc, mean_sd

    out = origin.probe_transfer(probe, X, y, cfg["n_boot"], seed_for(f"origin/{name}/ci"))
    X_train, y_train, weight = train
    seeds = [seed_for(f"random/{i}") for i in range(cfg["n_random_seeds"])]
    runs = random_baselines(X_train, y_train, X, h, seeds, d_ffn, C=cfg["baseline_C"], sample_weight=weight)
    values = [auroc(y, r.scores) for r in runs]
    out["random_neurons"] = {"n_neurons": int(h.size), "auroc": mean_sd(values),
                             "per_seed": [{"seed": r.seed, "auroc": v} for r, v in zip(runs, values)]}
    return out


def analyse(metrics: dict[str, Any], table: origin.DriftTable, family: str, cfg: dict[str, Any], probe,
            h: np.ndarray, d_ffn: int, base, tokenizer, acts: Path, meta: dict[str, Any], data_dir: Path,
            report_dir: Path, seed_for: Callable[[str], int], salt: str) -> None:
    """Drift and backward transfer into ``metrics``; writes the files of data/origin/<family>/ and
    reports/origin/<family>/ under ``data_dir`` and ``report_dir`` (temporary siblings renamed at the end).
    ``seed_for(tag)`` gives the seed of each seeded step; ``salt`` keys the generation cache."""
    metrics["drift"] = drift = origin.drift_outputs(table, h, cfg, family, data_dir, report_dir, seed_for)
    log.info("%s: H-Neuron mean drift rank %.3f (empirical p=%.3g, Welch p=%.3g), per layer %.3f", family,
             drift["global"]["h_neurons"]["mean_rank"], drift["global"]["h_neurons"]["p_empirical"],
             drift["global"]["h_neurons"]["p_value"], drift["per_layer"]["h_neurons"]["mean_rank"])

    train = instruct_training_rows(acts, cfg["labelling"])
    lines = origin.line_tokens(tokenizer)
    frames, transfer, rows = [], {}, []
    for name in cfg["datasets"]:
        frame = base_responses(cfg["backend"], tokenizer, name, transfer_questions(name, family, cfg), cfg, salt,
                               lines, seed_for)
        frames.append(frame)
        X, y, dropped = base_features(base, tokenizer, frame, name, meta, cfg)
        counts = {"n_questions": len(frame), "n_correct": int((frame["label"] == 0).sum()),
                  "n_wrong": int((frame["label"] == 1).sum()), "n_refusal": int((frame["label"] == -1).sum()),
                  "n_selected": int(frame["selected"].sum()), "span_dropped": dropped}
        if len(set(y.tolist())) < 2:
            transfer[name] = {**counts, "auroc": None, "note": "fewer than two classes after balancing"}
            log.warning("%s/%s: no AUROC, one class only (%s)", family, name, counts)
            continue
        transfer[name] = {**counts, **transfer_metrics(probe, X, y, train, h, d_ffn, cfg, name, seed_for)}
        result = transfer[name]
        rows.append({"dataset": name, "n": result["n"], "auroc": result["auroc"],
                     "auroc_lo": result["auroc_ci95"][0], "auroc_hi": result["auroc_ci95"][1],
                     "random_auroc": result["random_neurons"]["auroc"]["mean"]})
        log.info("%s/%s: AUROC %.3f [%.3f, %.3f] on %d base rows; random neurons %.3f", family, name,
                 result["auroc"], *result["auroc_ci95"], result["n"], rows[-1]["random_auroc"])
    metrics["transfer"] = transfer
    metrics["decoding"] = cfg["decoding"].as_dict()
    responses = pd.concat(frames, ignore_index=True)
    write_parquet(data_dir / layout.ORIGIN_BASE_RESPONSES, pa.Table.from_pandas(responses, preserve_index=False),
                  {"family": family, "decoding": metrics["decoding"], "prompt_suffix": origin.BASE_SUFFIX})
    columns = ["dataset", "n", "auroc", "auroc_lo", "auroc_hi", "random_auroc"]
    write_text(report_dir / layout.ORIGIN_TRANSFER, pd.DataFrame(rows, columns=columns).to_csv(
        index=False, float_format="%.6g", lineterminator="\n"))
