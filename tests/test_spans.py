"""Answer-span alignment through token offsets of the kept ids (tiny BPE tokenizer, authors' annotations)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hneurons.errors import HNeuronsError
from hneurons.spans import (
    AnnotatedSpan,
    align_answer_spans,
    annotation_char_span,
    annotation_pieces,
    char_span_to_tokens,
    content_char_span,
    decode_ids,
    load_annotations,
    token_offsets,
)
from tiny import make_tokenizer

ROOT = Path(__file__).resolve().parents[1]
ANNOTATIONS = sorted((ROOT / "data/raw/triviaqa/thunlp_h_neurons_examples").glob("*answer_tokens*.jsonl"))


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def _ids(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def _prompt(tok, question: str = "What is the capital of France?") -> list[int]:
    return list(tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                        tokenize=True, return_dict=False))


def find_first(text: str, aliases):
    """A plain case-sensitive alias finder standing in for the judge's (same signature)."""
    hits = [(text.find(a), a) for a in aliases if a and text.find(a) >= 0]
    if not hits:
        return None
    start, alias = min(hits)
    return start, start + len(alias)


def _covers(tok, ids, span, text: str) -> bool:
    return text in decode_ids(tok, ids[span[0]:span[1]])


@pytest.mark.parametrize("text", ["Paris is the capital.", "Simón Bolívar – 212°F", "O'Neill, 1972!", "日本 Japan"])
def test_offsets_partition_the_text(tok, text):
    ids = _ids(tok, text)
    decoded, offsets = token_offsets(tok, ids)
    assert decoded == text
    assert offsets[0, 0] == 0 and offsets[-1, 1] == len(text)
    assert np.all(offsets[1:, 0] == offsets[:-1, 1]) and np.all(offsets[:, 1] >= offsets[:, 0])


@pytest.mark.parametrize("text,answer", [("Paris is the capital.", "Paris"), ("The answer is Paris.", "Paris"),
                                         ("Simón Bolívar", "Bolívar"), ("Simón Bolívar", "ó"),
                                         ("It was 日本.", "日本"), ("Dame Judi Dench, York", "York")])
def test_char_span_to_tokens_is_the_smallest_cover(tok, text, answer):
    ids = _ids(tok, text)
    _, offsets = token_offsets(tok, ids)
    start = text.index(answer)
    span = char_span_to_tokens(offsets, start, start + len(answer))
    assert _covers(tok, ids, span, answer)
    if span[1] - span[0] > 1:  # dropping either end token loses part of the answer
        assert not _covers(tok, ids, (span[0] + 1, span[1]), answer)
        assert not _covers(tok, ids, (span[0], span[1] - 1), answer)


def test_char_span_outside_text_is_none(tok):
    _, offsets = token_offsets(tok, _ids(tok, "Paris"))
    assert char_span_to_tokens(offsets, 10, 12) is None
    assert char_span_to_tokens(offsets, 2, 2) is None


def test_offsets_for_non_canonical_ids(tok):
    """Sampled ids need not be the tokenizer's own segmentation; offsets follow the kept ids."""
    pieces = [_ids(tok, c) for c in "Paris"]  # one id per character
    ids = [i for p in pieces for i in p]
    assert ids != _ids(tok, "Paris")
    text, offsets = token_offsets(tok, ids)
    assert text == "Paris" and offsets.tolist() == [[i, i + 1] for i in range(5)]


@pytest.mark.parametrize("text,expected", [("Paris.", "Paris"), ("  Paris!!  \n", "Paris"),
                                           ('He said "no".', 'He said "no'), ("1972", "1972")])
def test_content_char_span(text, expected):
    start, end = content_char_span(text)
    assert text[start:end] == expected


def test_content_char_span_empty():
    assert content_char_span(" ...\n") is None
    assert content_char_span("") is None


def _record(tok, example_id, response, correct, answers=("Paris",), label=None, split="train"):
    return {"example_id": example_id, "label": (0 if correct else 1) if label is None else label,
            "correct": correct, "answers": list(answers), "prompt_ids": _prompt(tok),
            "response_ids": _ids(tok, response), "split": split}


def test_default_rule_alias_for_correct_content_for_incorrect(tok):
    records = [_record(tok, "a", "The capital is Paris.", True),
               _record(tok, "b", "London, I think.", False),
               _record(tok, "c", "Rome", True),             # judged correct, alias absent: dropped
               _record(tok, "d", "...", False),             # no content: dropped
               {**_record(tok, "e", "x", False), "response_ids": []}]
    kept, dropped = align_answer_spans(records, tok, "default", locate=find_first)
    assert [e.example_id for e in kept] == ["a", "b"]
    a, b = kept
    assert decode_ids(tok, a.response_ids[a.answer[0]:a.answer[1]]).strip() == "Paris"
    assert decode_ids(tok, b.response_ids[b.answer[0]:b.answer[1]]).strip() == "London, I think"
    assert a.prompt_ids.tolist() == _prompt(tok) and a.label == 0 and b.label == 1 and a.split == "train"
    assert dropped == {"alias_not_found": 1, "alias_not_found/label=0": 1, "no_content": 1,
                       "no_content/label=1": 1, "empty_response": 1, "empty_response/label=1": 1}


def test_content_rule_ignores_aliases(tok):
    kept, dropped = align_answer_spans([_record(tok, "a", "Paris is the capital.", True)], tok, "content")
    a = kept[0]
    assert decode_ids(tok, a.response_ids[a.answer[0]:a.answer[1]]) == "Paris is the capital"
    assert not dropped


def test_special_tokens_are_not_answer_tokens(tok):
    record = _record(tok, "a", "London.", False)
    record["response_ids"] = record["response_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    (a,), _ = align_answer_spans([record], tok, "content")
    assert decode_ids(tok, a.response_ids[a.answer[0]:a.answer[1]]) == "London"


def test_unknown_rule_and_missing_annotations(tok):
    with pytest.raises(HNeuronsError, match="span_rule"):
        align_answer_spans([], tok, "gpt4o")
    with pytest.raises(HNeuronsError, match="annotation"):
        align_answer_spans([], tok, "annotation")


def test_annotation_rule(tok):
    annotations = {"a": AnnotatedSpan("Sinclair Lewis", 9, 14), "b": AnnotatedSpan("York", 0, 4)}
    records = [_record(tok, "a", " Sinclair Lewis", True), _record(tok, "b", "Paris", False),
               _record(tok, "c", "York", True)]
    kept, dropped = align_answer_spans(records, tok, "annotation", annotations=annotations)
    assert [e.example_id for e in kept] == ["a"]
    a = kept[0]
    assert decode_ids(tok, a.response_ids[a.answer[0]:a.answer[1]]).strip() == "Lewis"
    assert dropped["annotation_text_mismatch"] == 1 and dropped["annotation_missing"] == 1


def test_annotation_pieces_byte_level_and_sentencepiece():
    assert annotation_pieces(["Sim", "Ã³n", "ĠBol", "ÃŃ", "var"], False) == ["Sim", "ón", " Bol", "í", "var"]
    assert annotation_pieces(["The", "▁Naked"], True) == ["The", " Naked"]
    assert annotation_pieces(["Ã"], False) is None  # an unfinished character
    assert annotation_char_span("Rugby School", ["R", "ug", "by", "ĠSchool"], ["by", "ĠSchool"], False) == (3, 12)
    assert annotation_char_span("X", ["X"], [], False) == "annotation_empty"
    assert annotation_char_span("X", ["X"], ["Y"], False) == "annotation_not_in_response"


@pytest.mark.skipif(not ANNOTATIONS, reason="authors' annotation files not present")
@pytest.mark.parametrize("path", ANNOTATIONS, ids=lambda p: p.name)
def test_authors_annotations_align_to_our_tokens(tok, path):
    """Every usable authors' span maps to the smallest run of tiny-tokenizer tokens covering its text."""
    spans, dropped = load_annotations(path)
    lines = [json.loads(line) for line in open(path, encoding="utf-8")]
    empty = sum(1 for line in lines for v in line.values() if not v["answer_tokens"])
    assert dropped["annotation_empty"] == empty
    assert len(spans) + sum(dropped.values()) == len(lines)
    assert len(spans) >= 0.97 * len(lines)
    for key, annotated in spans.items():
        answer = annotated.response[annotated.start:annotated.end]
        assert answer.strip(), key
        ids = _ids(tok, annotated.response)
        _, offsets = token_offsets(tok, ids)
        span = char_span_to_tokens(offsets, annotated.start, annotated.end)
        assert _covers(tok, ids, span, answer), key
        if span[1] - span[0] > 1:
            assert not _covers(tok, ids, (span[0] + 1, span[1]), answer), key
            assert not _covers(tok, ids, (span[0], span[1] - 1), answer), key


def test_load_annotations_bad_file(tmp_path):
    with pytest.raises(HNeuronsError, match="not found"):
        load_annotations(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1, "b": 2}\n')
    with pytest.raises(HNeuronsError, match="bad.jsonl:1"):
        load_annotations(bad)


def test_default_rule_uses_the_judges_alias_match(tok):
    """Without ``locate`` the judge's whole-word alias finder gives the span (case and punctuation ignored)."""
    records = [_record(tok, "a", "I believe it is the city of paris, France.", True, answers=["Paris"]),
               _record(tok, "b", "Sinclair Lewis (1930)", True, answers=["sinclair lewis"]),
               _record(tok, "c", "Parisian", True, answers=["Paris"])]  # no whole-word match
    kept, dropped = align_answer_spans(records, tok, "default")
    spans = {e.example_id: decode_ids(tok, e.response_ids[e.answer[0]:e.answer[1]]).strip() for e in kept}
    assert spans == {"a": "paris", "b": "Sinclair Lewis"}
    assert dropped["alias_not_found"] == 1


def test_default_rule_skips_aliases_the_question_already_holds(tok):
    """The span is the alias the judge credited: an alias inside the question is not it."""
    question = "Which city is the capital of France?"
    record = {**_record(tok, "a", "The capital of France is Paris.", True, answers=["capital of France", "Paris"]),
              "question": question}
    kept, _ = align_answer_spans([record], tok, "default")
    assert decode_ids(tok, kept[0].response_ids[kept[0].answer[0]:kept[0].answer[1]]).strip() == "Paris"
    del record["question"]                      # without the question the earliest alias wins
    kept, _ = align_answer_spans([record], tok, "default")
    assert decode_ids(tok, kept[0].response_ids[kept[0].answer[0]:kept[0].answer[1]]).strip() == "capital of France"
