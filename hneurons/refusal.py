"""Refusal / uncertainty detector.

[C]'s pre-filter phrases ("don't know", "cannot", "not provided", "no information") plus
common refusal and hedging phrases, and empty responses (no content is a non-answer);
phrases inside the matched alias do not count (:func:`refusal_outside`). A refusal is
never correct, and a question with any refusal cannot be labelled consistently
hallucinated (paper §2).
"""

from __future__ import annotations

import re

from hneurons.answers import _WORD_RE

_REFUSAL_PATTERNS = [
    r"\bdon'?t know\b", r"\bdo not know\b", r"\bdoesn'?t know\b", r"\bcannot\b",
    r"\bi can'?t\b", r"\bcan'?t (?:answer|provide|help|say|tell|determine|find|be sure)\b",
    r"\bnot provided\b", r"\bno information\b", r"\bnot sure\b", r"\bunsure\b", r"\buncertain\b",
    r"\bunable to\b", r"\bi'?m sorry\b", r"\bi am sorry\b", r"\bi apologi[sz]e\b", r"\bno answer\b",
    r"\bnot enough information\b", r"\bi don'?t have\b", r"\bi do not have\b", r"\bnot aware of\b",
    r"\bno (?:known|reliable|such)\b", r"\bis unknown\b", r"\bnot possible to (?:say|know|determine)\b",
    r"\bas an ai\b", r"\bcould not find\b", r"\bcouldn'?t find\b", r"\bno record\b",
    r"\b(?:topic|subject|matter) of (?:ongoing |active |much )?(?:debate|research|discussion|speculation)\b",
    r"\bis not known\b", r"\bnot specified\b",
]
_REFUSAL_RE = re.compile("|".join(_REFUSAL_PATTERNS))


def is_refusal(response: str) -> bool:
    """True for a refusal, "I don't know", hedged uncertainty, or an empty response."""
    text = response.lower().replace("\u2019", "'").replace("\u2018", "'")
    if not _WORD_RE.search(text):
        return True
    return bool(_REFUSAL_RE.search(text))


def refusal_outside(response: str, span: tuple[int, int] | None) -> bool:
    """:func:`is_refusal` of the response with the alias match blanked out.

    A refusal phrase inside the matched title ("I'm Sorry I Haven't a Clue", "No Such Thing
    as a Fish") is no refusal; a response that is only the alias is none either.
    """
    if span is None:
        return is_refusal(response)
    rest = response[:span[0]] + " " + response[span[1]:]
    return bool(_WORD_RE.search(rest)) and is_refusal(rest)
