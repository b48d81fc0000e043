"""The behaviour check of a tuned twin (or its base): greedy chat responses on the held-out ``check``
examples of the instruction set (:mod:`hneurons.tune`), scored per kind."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from tqdm import tqdm

from hneurons.answers import normalize
from hneurons.io import write_text
from hneurons.judge import RuleJudge
from hneurons.refusal import is_refusal
from hneurons.tune import KINDS, Example, question_of


def greedy_responses(model, tokenizer, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 16,
                     progress: bool = True) -> list[tuple[str, bool]]:
    """Greedy chat responses: (text without special tokens, stopped on an EOS/end-of-turn id) per prompt."""
    from hneurons.models import input_device

    eos = model.generation_config.eos_token_id
    stops = sorted({int(i) for i in (eos if isinstance(eos, (list, tuple)) else [eos]) if i is not None}
                   | ({int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    out: list[tuple[str, bool]] = []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="check", unit="batch", disable=not progress):
        chunk = prompts[start: start + batch_size]
        encoded = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                                 tokenize=True, return_dict=True)["input_ids"] for p in chunk]
        width = max(len(e) for e in encoded)
        ids = torch.tensor([[pad_id] * (width - len(e)) + list(e) for e in encoded], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], dtype=torch.long)
        with torch.no_grad():
            device = input_device(model)
            generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                       do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=stops,
                                       pad_token_id=pad_id)
        for row in generated[:, width:].tolist():
            cut = next((i for i, t in enumerate(row) if t in stops), None)
            body = row if cut is None else row[:cut]
            out.append((tokenizer.decode(body, skip_special_tokens=True).strip(), cut is not None))
    return out


def behaviour_check(model, tokenizer, examples: Sequence[Example], max_new_tokens: int = 48,
                    max_words: int = 40, progress: bool = True, sources: dict[str, dict] | None = None,
                    batch_size: int = 16) -> tuple[dict, list[dict]]:
    """Greedy responses on the held-out ``check`` examples, scored per kind.

    format_ok: the response ended its turn, is non-empty, has at most ``max_words``
    words and does not restate the prompt. trivia_correct: the rule judge (whole-word
    alias) accepts it. refused / abstained: the refusal detector fires
    (refusal.is_refusal), on harmful requests and made-up entities respectively; for
    trivia the same detector gives the over-refusal rate. ``sources`` (kind ->
    fields such as dataset and rows) is copied into each kind's metrics;
    ``batch_size``: prompts per generate call. Returns (metrics per kind, one
    record per response).
    """
    held = [e for e in examples if e.split == "check"]
    responses = greedy_responses(model, tokenizer, [e.prompt for e in held], max_new_tokens, batch_size,
                                 progress=progress)
    judge = RuleJudge()
    records = []
    for example, (text, stopped) in zip(held, responses):
        words = len(text.split())
        restates = normalize(question_of(example.prompt)) in normalize(text) if text else False
        record = {"kind": example.kind, "source_id": example.source_id, "prompt": example.prompt,
                  "response": text, "stopped": stopped,
                  "format_ok": bool(stopped and 0 < words <= max_words and not restates),
                  "refusal": is_refusal(text)}
        if example.kind == "trivia":
            record["correct"] = judge.judge(example.prompt, text, example.answers).correct
        records.append(record)
    metrics: dict[str, Any] = {}
    for kind in KINDS:
        rows = [r for r in records if r["kind"] == kind]
        if not rows:
            continue
        entry = {**(sources or {}).get(kind, {}), "n": len(rows), "format_ok": _share(r["format_ok"] for r in rows),
                 "refusal_rate": _share(r["refusal"] for r in rows)}
        if kind == "trivia":
            entry["correct"] = _share(r["correct"] for r in rows)
        metrics[kind] = entry
    return metrics, records


def _share(flags: Iterable[bool]) -> float:
    values = [bool(f) for f in flags]
    return float(sum(values) / len(values)) if values else math.nan


def write_check_responses(path, records: Sequence[dict]) -> None:
    """Check records (:func:`behaviour_check`'s, each with its ``model``) as JSON lines, keys sorted."""
    write_text(path, "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records))
