"""Judges measured against reference labels written elsewhere.

- :func:`split_half`: a seeded hash split of question ids into a ``dev`` half (the
  only half looked at while writing judge rules) and a ``report`` half (the
  headline figures).
- :func:`fixture_key`, :func:`split_fixture`: the same split of hand-labelled fixture
  records (data/labels/detect), by question.
- :func:`cohen_kappa`, :func:`agreement`: agreement of two boolean label vectors.
- :func:`bioasq_reference_agreement`: a judge against the GPT-4o verdicts on one
  Gemma-3-4B answer per BioASQ 13b factoid question (SystemicVoid/H-Neurons).
- :func:`triviaqa_reference_agreement`: a judge against the SystemicVoid TriviaQA
  labels (10 Gemma-3-4B answers per question, labelled by a substring rule judge:
  a regression reference, not ground truth).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hneurons.errors import HNeuronsError

SUFFIX = " Respond with the answer only, without any explanation."
BIOASQ_REFERENCE = "data/raw/bioasq/systemicvoid_bioasq13b_factoid_samples.jsonl"
TRIVIAQA_REFERENCE = "data/raw/triviaqa/systemicvoid_gemma3_4b_consistency_samples.jsonl"
SPLIT_SEED = 0


def split_half(ids: Iterable[str], seed: int = SPLIT_SEED) -> dict[str, str]:
    """{id: "dev" | "report"}: the parity of sha256("<seed>:<id>"), so each id's half is fixed by (seed, id)."""
    return {i: ("dev" if hashlib.sha256(f"{seed}:{i}".encode()).digest()[0] % 2 == 0 else "report") for i in ids}


def fixture_key(record: dict[str, Any]) -> str:
    """A fixture record's split key: ``<dataset>:<example_id>``.

    By question, not by response, so that every sampled response to a question (NonExist holds
    two per question; BioASQ rows 1500-1511 two collections) lies in the same half and no
    question is read on the dev half and scored on the report half.
    """
    return f"{record['dataset']}:{record['example_id']}"


def split_fixture(records: Sequence[dict[str, Any]], seed: int = SPLIT_SEED) -> dict[str, list[dict[str, Any]]]:
    """{"dev": [...], "report": [...]}: fixture records split by :func:`split_half` of :func:`fixture_key`.

    Judge rules are written from dev-half rows only; the report half gives the headline agreement.
    Order within each half is the records' order.
    """
    half = split_half({fixture_key(r) for r in records}, seed)
    out: dict[str, list[dict[str, Any]]] = {"dev": [], "report": []}
    for record in records:
        out[half[fixture_key(record)]].append(record)
    return out


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Cohen's kappa of two boolean label vectors (nan when chance agreement is 1)."""
    if len(a) != len(b):
        raise HNeuronsError(f"cohen_kappa: {len(a)} vs {len(b)} labels")
    n = len(a)
    if n == 0:
        return float("nan")
    observed = sum(bool(x) == bool(y) for x, y in zip(a, b)) / n
    pa, pb = sum(map(bool, a)) / n, sum(map(bool, b)) / n
    chance = pa * pb + (1 - pa) * (1 - pb)
    return float("nan") if chance >= 1 else (observed - chance) / (1 - chance)


def agreement(pred: Sequence[bool], ref: Sequence[bool]) -> dict[str, Any]:
    """Agreement of predicted with reference labels (True = correct).

    Returns n, agreement (share equal), kappa, confusion counts keyed ``ref=<t|f>/pred=<t|f>``,
    n_ref_true, n_pred_true, recall (share of reference-true also predicted true) and
    precision (share of predicted-true also reference-true).
    """
    if len(pred) != len(ref):
        raise HNeuronsError(f"agreement: {len(pred)} predictions vs {len(ref)} reference labels")
    confusion = {f"ref={r}/pred={p}": 0 for r in "tf" for p in "tf"}
    for p, r in zip(pred, ref):
        confusion[f"ref={'t' if r else 'f'}/pred={'t' if p else 'f'}"] += 1
    n = len(pred)
    tp, n_ref, n_pred = confusion["ref=t/pred=t"], sum(map(bool, ref)), sum(map(bool, pred))
    return {"n": n, "agreement": (confusion["ref=t/pred=t"] + confusion["ref=f/pred=f"]) / n if n else float("nan"),
            "kappa": cohen_kappa(pred, ref), "confusion": confusion, "n_ref_true": n_ref, "n_pred_true": n_pred,
            "recall": tp / n_ref if n_ref else float("nan"), "precision": tp / n_pred if n_pred else float("nan")}


def _read_keyed(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    path = Path(path)
    if not path.is_file():
        raise HNeuronsError(f"{path}: reference file not found")
    out = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                ((qid, record),) = json.loads(line).items()
                out.append((qid, record))
    return out


def reference_rows(path: str | Path) -> list[dict[str, Any]]:
    """One row per (question, response) of a SystemicVoid samples file.

    Keys: qid, index (the response's position), question (answer-only suffix removed),
    response, aliases, reference (the file's "judges" entry as a bool).
    """
    rows = []
    for qid, record in _read_keyed(path):
        question = record["question"]
        question = question[:-len(SUFFIX)] if question.endswith(SUFFIX) else question
        for index, (response, verdict) in enumerate(zip(record["responses"], record["judges"])):
            rows.append({"qid": qid, "index": index, "question": question, "response": response,
                         "aliases": list(record["ground_truth"]), "reference": str(verdict).lower() == "true"})
    return rows


def judge_rows(rows: Sequence[dict[str, Any]], judge) -> list[bool]:
    """``judge.judge(question, response, aliases).correct`` for each reference row."""
    return [bool(judge.judge(r["question"], r["response"], r["aliases"]).correct) for r in rows]


def bioasq_reference_agreement(path: str | Path, judge, seed: int = SPLIT_SEED) -> dict[str, Any]:
    """A judge's agreement with the GPT-4o verdicts of the SystemicVoid BioASQ samples file.

    path: ``data/raw/bioasq/systemicvoid_bioasq13b_factoid_samples.jsonl``; judge: any object
    with ``judge(question, response, aliases) -> Judgement`` and ``name``. Questions are split
    by :func:`split_half` (seed). Returns {judge, reference, seed, report: agreement(...),
    dev: agreement(...)}; ``report`` is the headline (its rows were not read while writing the
    judge's rules).
    """
    rows = reference_rows(path)
    half = split_half([r["qid"] for r in rows], seed)
    predicted = judge_rows(rows, judge)
    out: dict[str, Any] = {"judge": judge.name, "reference": "gpt-4o verdicts (SystemicVoid/H-Neurons)", "seed": seed}
    for name in ("report", "dev"):
        keep = [i for i, r in enumerate(rows) if half[r["qid"]] == name]
        out[name] = agreement([predicted[i] for i in keep], [rows[i]["reference"] for i in keep])
    return out


def triviaqa_reference_agreement(path: str | Path, judge) -> dict[str, Any]:
    """A judge's agreement with the SystemicVoid TriviaQA labels (substring-rule labels, 35,000 responses).

    Returns agreement(...) plus judge and the ``disagreements`` as (qid, index) pairs.
    """
    rows = reference_rows(path)
    predicted = judge_rows(rows, judge)
    out = agreement(predicted, [r["reference"] for r in rows])
    out["judge"] = judge.name
    out["disagreements"] = [(r["qid"], r["index"]) for r, p in zip(rows, predicted) if p != r["reference"]]
    return out
