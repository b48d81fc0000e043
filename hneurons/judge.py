"""The verdict of a judge (:class:`Judgement`), the judge interface, and the rule judge.

Rule judge (paper [C] ``rule``, with deliberate changes; :class:`RuleJudge`): a response
is correct when it names an answer alias as whole words (:func:`hneurons.answers.find_alias`
with the question) and is no refusal (:func:`hneurons.refusal.refusal_outside`).

Other judges: :class:`hneurons.bio_judge.BioRuleJudge` (BioASQ) and
:class:`hneurons.llm_judge.LLMJudge` (an OpenAI-compatible endpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# hneurons/spans.py imports find_alias and answer_aliases from here (its source is hashed into the activation
# manifests, so it keeps this import path).
from hneurons.answers import answer_aliases, find_alias  # noqa: F401
from hneurons.refusal import refusal_outside


@dataclass(frozen=True)
class Judgement:
    """One response's verdict: ``span`` is the rule alias match in the response text, if any."""

    correct: bool
    refusal: bool
    span: tuple[int, int] | None
    judge: str


class Judge(Protocol):
    name: str

    def judge(self, question: str, response: str, aliases: Sequence[str]) -> Judgement: ...


class RuleJudge:
    """Correct iff an answer alias is named (:func:`find_alias` with the question) and the response is no refusal.

    Refusal phrases inside the matched alias do not count (:func:`refusal_outside`).
    """

    name = "rule"

    def judge(self, question: str, response: str, aliases: Sequence[str]) -> Judgement:
        span = find_alias(response, aliases, question)
        refusal = refusal_outside(response, span)
        return Judgement(correct=span is not None and not refusal, refusal=refusal, span=span, judge=self.name)
