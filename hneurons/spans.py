"""Answer spans of generated responses, in token positions of the kept response ids.

A span is found in two steps, never by matching decoded token strings:

1. a rule gives a character span ``[start, end)`` in the response text, where
   the text is ``tokenizer.decode(response_ids)`` (special tokens kept, no
   clean-up), i.e. exactly the characters the kept ids spell; the rules see the
   characters of special tokens blanked, and special tokens at a span's ends
   are trimmed, so they are never answer tokens;
2. :func:`token_offsets` gives each kept id its character range in that text
   (from prefix decodes, so it works for any tokenizer and for ids that are not
   the canonical tokenisation of the text), and :func:`char_span_to_tokens`
   returns the smallest run of tokens covering the character span.

Rules (``SPAN_RULES``):

- ``default``: a correct response -> the characters of the matched alias
  (``hneurons.judge.find_alias``); an incorrect one -> its content characters
  (:func:`content_char_span`: leading whitespace and trailing whitespace and
  punctuation removed; the template and end-of-turn are not in ``response_ids``).
- ``content``: the content characters for every response (the authors'
  cheaper "all output tokens" option).
- ``annotation``: an annotation file in the authors' format (their GPT-4o
  answer-token lists, ``*_answer_tokens_*.jsonl``), see :func:`load_annotations`.
  The annotation's own token list is turned into a character span of its own
  response text, which must equal ours (up to surrounding whitespace).

Deviation from the paper: the paper (and the authors' code) asks GPT-4o for the
answer tokens of every response; ``default`` uses the alias match for correct
responses and the whole content for incorrect ones (no LLM call). Examples whose
span cannot be found are dropped and counted by reason (``DROP_REASONS``), never
silently.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hneurons.errors import HNeuronsError

SPAN_RULES = ("default", "content", "annotation")
DROP_REASONS = (
    "empty_response",           # no response ids
    "alias_not_found",          # correct response, no alias occurs in its text
    "no_content",               # the response is only whitespace/punctuation/special tokens
    "span_not_aligned",         # a character span no token covers
    "annotation_missing",       # no annotation for the example id
    "annotation_empty",         # the annotation's answer-token list is empty
    "annotation_not_in_response",  # the answer tokens are not a contiguous run of the annotated tokens
    "annotation_text_mismatch",    # the annotated response differs from the kept response
)

CharSpan = tuple[int, int]
Locate = Callable[[str, Sequence[str]], "CharSpan | None"]


@dataclass(frozen=True)
class SpanExample:
    """One response with its answer span, ready for CETT extraction.

    ``prompt_ids``: int64[n_prompt] (chat-formatted prompt); ``response_ids``:
    int64[n_response]; ``answer``: token positions ``[start, end)`` inside
    ``response_ids`` (non-empty); ``label``: 1 = hallucinated, 0 = faithful.
    """

    example_id: str
    label: int
    split: str
    prompt_ids: np.ndarray
    response_ids: np.ndarray
    answer: tuple[int, int]


@dataclass(frozen=True)
class AnnotatedSpan:
    """An annotation's response text and the answer's character span in it."""

    response: str
    start: int
    end: int


# ---------------------------------------------------------------- offsets


def decode_ids(tokenizer: Any, ids: Sequence[int]) -> str:
    """The text the ids spell: special tokens kept, no clean-up of spaces."""
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def token_offsets(tokenizer: Any, ids: Sequence[int]) -> tuple[str, np.ndarray]:
    """(text, offsets int64[n_ids, 2]): each kept id's character range ``[start, end)`` in text.

    Token i ends where the decode of ``ids[:i+1]`` stops agreeing with the full
    text (a byte-level token holding only part of a multi-byte character gets an
    empty range at that character's start; the token completing it covers it).
    Ranges are contiguous, non-decreasing and end at ``len(text)``.
    """
    ids = [int(i) for i in ids]
    text = decode_ids(tokenizer, ids)
    if not ids:
        return text, np.zeros((0, 2), dtype=np.int64)
    prefixes = tokenizer.batch_decode([ids[:i] for i in range(1, len(ids) + 1)], skip_special_tokens=False,
                                      clean_up_tokenization_spaces=False)
    ends = np.empty(len(ids), dtype=np.int64)
    reached = 0
    for i, prefix in enumerate(prefixes):
        reached = max(reached, _common_prefix(prefix, text))
        ends[i] = reached
    ends[-1] = len(text)
    starts = np.concatenate([[0], ends[:-1]])
    return text, np.stack([starts, ends], axis=1)


def char_span_to_tokens(offsets: np.ndarray, start: int, end: int) -> tuple[int, int] | None:
    """The smallest token run ``[first, last)`` whose characters cover ``[start, end)``.

    A token belongs to the span if its range overlaps it, or if it is empty and
    lies inside it (part of a split multi-byte character). None if no token does.
    """
    if end <= start:
        return None
    lo, hi = offsets[:, 0], offsets[:, 1]
    inside = ((lo < end) & (hi > start)) | ((lo == hi) & (lo >= start) & (lo < end))
    hits = np.flatnonzero(inside)
    if hits.size == 0:
        return None
    return int(hits[0]), int(hits[-1]) + 1


def content_char_span(text: str) -> CharSpan | None:
    """``[start, end)`` of text without leading whitespace and trailing whitespace/punctuation."""
    start = len(text) - len(text.lstrip())
    end = len(text)
    while end > start and (text[end - 1].isspace() or unicodedata.category(text[end - 1]).startswith("P")):
        end -= 1
    return (start, end) if end > start else None


def blank_special(text: str, offsets: np.ndarray, ids: Sequence[int], special: set[int]) -> str:
    """text with the characters of special-token ids replaced by spaces (same length)."""
    chars = list(text)
    for (start, end), token in zip(offsets, ids):
        if int(token) in special:
            chars[start:end] = " " * (end - start)
    return "".join(chars)


def _trim_special(span: tuple[int, int], ids: Sequence[int], special: set[int]) -> tuple[int, int] | None:
    first, last = span
    while first < last and int(ids[first]) in special:
        first += 1
    while last > first and int(ids[last - 1]) in special:
        last -= 1
    return (first, last) if last > first else None


# ---------------------------------------------------------------- annotations (authors' format)


def _byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level alphabet: character -> byte."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


_BYTES = _byte_decoder()


def annotation_pieces(tokens: Sequence[str], sentencepiece: bool) -> list[str] | None:
    """Token strings of an annotation as text pieces (None if they are not valid byte-level tokens).

    SentencePiece tokens (Gemma) map ``▁`` to a space; byte-level tokens (Llama 3,
    Mistral Tekken) are decoded from the GPT-2 byte alphabet. A multi-byte
    character split over several tokens is assigned to the token that completes it.
    """
    if sentencepiece:
        return [token.replace("▁", " ") for token in tokens]
    pieces, pending = [], b""
    for token in tokens:
        try:
            pending += bytes(_BYTES[c] for c in token)
        except KeyError:
            return None
        for cut in range(len(pending), -1, -1):  # longest decodable prefix
            try:
                head = pending[:cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            pieces.append(head)
            pending = pending[cut:]
            break
    return pieces if not pending else None


def _sublist(haystack: Sequence[str], needle: Sequence[str]) -> int | None:
    for i in range(len(haystack) - len(needle) + 1):
        if list(haystack[i:i + len(needle)]) == list(needle):
            return i
    return None


def annotation_char_span(response: str, tokens: Sequence[str], answer_tokens: Sequence[str],
                         sentencepiece: bool) -> CharSpan | str:
    """Character span of ``answer_tokens`` (first contiguous occurrence in ``tokens``) in ``response``.

    Returns a drop reason (str) instead when the annotation cannot be used.
    """
    if not answer_tokens:
        return "annotation_empty"
    first = _sublist(tokens, answer_tokens)
    if first is None:
        return "annotation_not_in_response"
    pieces = annotation_pieces(tokens, sentencepiece)
    if pieces is None or not response.startswith("".join(pieces)):
        return "annotation_text_mismatch"
    start = sum(len(p) for p in pieces[:first])
    end = start + sum(len(p) for p in pieces[first:first + len(answer_tokens)])
    return (start, end) if end > start else "annotation_empty"


def load_annotations(path: str | Path) -> tuple[dict[str, AnnotatedSpan], Counter]:
    """Read an authors'-format answer-token file: ({example_id: AnnotatedSpan}, drop counts).

    Each line is ``{id: {response, tokenized_response, answer_tokens, question}}``.
    The tokenizer kind (SentencePiece if any token holds ``▁``) is decided per file.
    """
    path = Path(path)
    if not path.is_file():
        raise HNeuronsError(f"{path}: annotation file not found")
    rows: list[tuple[str, Mapping[str, Any]]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                (key, value), = json.loads(line).items()
                rows.append((str(key), value))
            except (ValueError, AttributeError):
                raise HNeuronsError(f"{path}:{number}: not a one-key JSON object per line") from None
    sentencepiece = any("▁" in t for _, v in rows for t in v.get("tokenized_response", []))
    spans: dict[str, AnnotatedSpan] = {}
    dropped: Counter = Counter()
    for key, value in rows:
        try:
            found = annotation_char_span(value["response"], value["tokenized_response"],
                                         value["answer_tokens"], sentencepiece)
        except KeyError as exc:
            raise HNeuronsError(f"{path}: entry {key!r} lacks field {exc}") from None
        if isinstance(found, str):
            dropped[found] += 1
        else:
            spans[key] = AnnotatedSpan(value["response"], *found)
    return spans, dropped


def _shift_to(text: str, annotated: AnnotatedSpan) -> CharSpan | None:
    """The annotated span in ``text`` coordinates if both texts agree up to surrounding whitespace."""
    if text.strip() != annotated.response.strip():
        return None
    shift = (len(text) - len(text.lstrip())) - (len(annotated.response) - len(annotated.response.lstrip()))
    return annotated.start + shift, annotated.end + shift


# ---------------------------------------------------------------- rules


def _default_locate() -> Locate:
    try:
        from hneurons.judge import find_alias
    except ImportError:
        raise HNeuronsError("span_rule=default needs hneurons.judge.find_alias (the sample stage's judge)") from None
    return find_alias


def _judged_aliases(record: Mapping[str, Any]) -> list[str]:
    """The aliases the rule judge counted for this record: with a ``question``, those
    not already in the question (``hneurons.judge.answer_aliases``), so the span is
    the answer the judge credited, never a parroted part of the question."""
    aliases = list(record.get("answers") or [])
    question = record.get("question")
    if not question:
        return aliases
    from hneurons.judge import answer_aliases
    return answer_aliases(str(question), aliases)


def char_span(text: str, record: Mapping[str, Any], rule: str, locate: Locate | None,
              annotations: Mapping[str, AnnotatedSpan] | None) -> CharSpan | str:
    """The rule's character span of one response's text, or a drop reason."""
    if rule == "annotation":
        annotated = (annotations or {}).get(str(record["example_id"]))
        if annotated is None:
            return "annotation_missing"
        return _shift_to(text, annotated) or "annotation_text_mismatch"
    correct = bool(record["correct"]) if "correct" in record else int(record["label"]) == 0
    if rule == "default" and correct:
        found = locate(text, _judged_aliases(record))
        return tuple(found) if found is not None else "alias_not_found"
    return content_char_span(text) or "no_content"


def align_example(record: Mapping[str, Any], tokenizer: Any, rule: str = "default",
                  locate: Locate | None = None,
                  annotations: Mapping[str, AnnotatedSpan] | None = None) -> SpanExample | str:
    """One record -> a SpanExample, or the reason it is dropped (one of DROP_REASONS).

    ``record`` needs example_id, label, prompt_ids, response_ids; ``correct``
    (else label == 0) and ``answers`` for the default rule; ``question`` (aliases it holds are skipped,
    as the judge does) and ``split`` are optional.
    """
    response_ids = np.asarray(record["response_ids"], dtype=np.int64).reshape(-1)
    if response_ids.size == 0:
        return "empty_response"
    text, offsets = token_offsets(tokenizer, response_ids)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    found = char_span(blank_special(text, offsets, response_ids, special), record, rule, locate, annotations)
    if isinstance(found, str):
        return found
    span = char_span_to_tokens(offsets, *found)
    if span is not None:
        span = _trim_special(span, response_ids, special)
    if span is None:
        return "span_not_aligned"
    return SpanExample(str(record["example_id"]), int(record["label"]), str(record.get("split") or ""),
                       np.asarray(record["prompt_ids"], dtype=np.int64).reshape(-1), response_ids, span)


def align_answer_spans(records: Iterable[Mapping[str, Any]], tokenizer: Any, rule: str = "default",
                       locate: Locate | None = None,
                       annotations: Mapping[str, AnnotatedSpan] | None = None,
                       ) -> tuple[list[SpanExample], Counter]:
    """Align every record's answer span: (kept examples in input order, drop counts).

    Drop counts are keyed ``"<reason>"`` and ``"<reason>/label=<l>"`` so a
    class-dependent loss is visible. ``locate(text, aliases) -> (start, end) | None``
    finds a correct response's alias (default: ``hneurons.judge.find_alias``).
    """
    if rule not in SPAN_RULES:
        raise HNeuronsError(f"span_rule={rule!r}: expected one of {', '.join(SPAN_RULES)}")
    if rule == "annotation" and annotations is None:
        raise HNeuronsError("span_rule=annotation needs an annotation file")
    if rule == "default" and locate is None:
        locate = _default_locate()
    kept: list[SpanExample] = []
    dropped: Counter = Counter()
    for record in records:
        result = align_example(record, tokenizer, rule, locate, annotations)
        if isinstance(result, str):
            dropped[result] += 1
            dropped[f"{result}/label={int(record['label'])}"] += 1
        else:
            kept.append(result)
    return kept, dropped
