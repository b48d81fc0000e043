"""BioASQ rule judge (:class:`BioRuleJudge`).

Abbreviations both ways, word order, biomedical spelling variants, number ranges; a list
answer with a wrong item is wrong. The text helpers are in :mod:`hneurons.bio_answers`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from hneurons.answers import _either_or, find_alias
from hneurons.bio_answers import (
    _BIO_STOP,
    _GENERIC_TAIL,
    _LEAD_RE,
    _MODIFIER_RE,
    _fuzzy_match,
    _glued_matches,
    _is_acronym,
    _number_in_range,
    _other_subtype,
    _range_end,
    _refines,
    _said_alike,
    _short_tokens,
    _single_word_abbreviation,
    _trim,
    _uncopied,
    _upper_words,
    _written_score,
    bio_alias_variants,
    bio_items,
    bio_words,
)
from hneurons.judge import Judgement
from hneurons.refusal import refusal_outside


class BioRuleJudge:
    """BioASQ rule judge: an answer that names a reference answer, in any of its usual written forms.

    Per alias variant (:func:`bio_alias_variants`; variants inside the question are ignored,
    as in :func:`hneurons.answers.answer_aliases`), over :func:`bio_words` (plurals, British spellings, Greek
    letters, hyphens / spaces inside names folded), the response (or a list item) matches when
    it holds the variant as glued whole words ("non-metastatic" = "nonmetastatic"); or, for a
    variant of 2+ content words, all of them (any order; 3 of 4, 4 of 5, ... for 4+ words);
    or a near spelling (:func:`_fuzzy_match`); or an acronym of it either way ("EGFR" /
    epidermal growth factor receptor, "AF" / atrial fibrillation; capitals in the original);
    or a number inside the variant's range (also a range inside a range, numbers below "before
    age N"); or a more specific form of a variant word (:func:`_refines`: a chromosome sub-band,
    a histone mark's methylation degree, "midfoot" for foot); or a short response (1-6 words,
    one not in the question) lies whole inside the variant ("diabetes" / "diabetes mellitus").
    A response naming a subtype code ("type 2J") is wrong when every alias names other codes
    ("CMT 4D"); in a list, a one-word modifier sharing the next item's head ("Eastern and
    Central North America") is no item of its own.

    An either/or question ("Is X up or downregulated?") needs the right option chosen alone
    (:func:`find_alias`). When every variant is in the question, the runs of words the response
    copies from the question are not searched. Acronym and abbreviation matches need letters
    the question does not already give.

    A list answer (:func:`bio_items`; in a one-sentence reply, what follows its last is/are/was/were)
    that names a variant in one of its items is correct only when
    every item matches or lies inside a variant: "T cells and B cells" is wrong when only T cells
    are gold (a match only across the items, "movement of leaves or shoots in response to darkness",
    is judged on the whole). Refusals are never correct.
    """

    name = "rule-bio"

    def judge(self, question: str, response: str, aliases: Sequence[str]) -> Judgement:
        span = find_alias(response, aliases, question)
        refusal = refusal_outside(response, span)
        correct = not refusal and self.correct(question, response, aliases)
        return Judgement(correct=correct, refusal=refusal, span=span, judge=self.name)

    def correct(self, question: str, response: str, aliases: Sequence[str]) -> bool:
        """The rule without the refusal check."""
        return self.reason(question, response, aliases).startswith("correct")

    def reason(self, question: str, response: str, aliases: Sequence[str]) -> str:
        """"correct: <rule>" or "wrong: <why>" (the rule without the refusal check)."""
        variants = self._variants(question, aliases)
        if not variants:
            return "wrong: no alias"
        core = _trim(bio_words(_LEAD_RE.sub("", response.strip().rstrip(".!"))))
        asked = bio_words(question)
        if len(core) == 1 and core[0] in _upper_words(response) and any(
                _is_acronym(core[0], asked[i:j]) for i in range(len(asked)) for j in range(i + 2, len(asked) + 1)):
            return "wrong: abbreviates the question"
        if _either_or(question, aliases):
            chosen = find_alias(response, aliases, question) is not None
            return "correct: chose the right option" if chosen else "wrong: did not choose the right option alone"
        if all(_glued_matches(asked, "".join(w)) for _, w in variants):
            response = _uncopied(response, question)  # every alias is in the question: look past the copied parts
        items = bio_items(response)
        if items is None:  # "The first line treatment ... is immunotherapy and corticosteroids."
            copula = list(re.finditer(r"\b(?:is|are|was|were)\s+", response.strip()))
            if copula and not re.search(r"[.!?]\s", response.strip()):
                items = bio_items(response.strip()[copula[-1].end():])
        if _other_subtype(response, aliases):
            return "wrong: another subtype"
        whole = self._matches(response, variants, question)
        if items is None:
            return f"correct: {whole}" if whole else "wrong: no match"
        found = [self._matches(item, variants, question) for item in items]
        if whole and not any(found):
            return f"correct: {whole} (across the coordination)"  # "movement of leaves or shoots in response to ..."
        if found[-1] and re.match(r"(?:and |or )?other\b", items[-1], re.IGNORECASE):
            return f"correct: list ending in its category, {found[-1]}"  # "ticks, mites and other arthropods"
        extra = [item for k, (item, hit) in enumerate(zip(items, found))
                 if not hit and not self._inside(bio_words(item), variants)
                 and not (k + 1 < len(items) and _MODIFIER_RE.fullmatch(item.strip())
                          and len(items[k + 1].split()) >= 2)]  # "Eastern and Central North America"
        if extra:
            return f"wrong: list item {extra[0]!r} is not an alias"
        hit = whole or next((h for h in found if h), None)
        return f"correct: list, {hit}" if hit else "wrong: no match"

    @staticmethod
    def _variants(question: str, aliases: Sequence[str]) -> list[tuple[str, list[str]]]:
        asked = bio_words(question)
        found: dict[tuple[str, ...], str] = {}  # words -> the alias text (most capitals, then most punctuation)
        for alias in aliases:
            for variant in bio_alias_variants(str(alias)):
                words = _trim(bio_words(variant))
                forms = [words] + ([words[:-1]] if len(words) >= 2 and words[-1] in _GENERIC_TAIL
                                   and len("".join(words[:-1])) >= 4 else [])
                for form in filter(None, forms):
                    key = tuple(form)
                    if key not in found or _written_score(variant) > _written_score(found[key]):
                        found[key] = variant
        out = [(raw, list(words)) for words, raw in found.items()]
        kept = [(v, w) for v, w in out if not _glued_matches(asked, "".join(w))]
        return kept or out

    @staticmethod
    def _inside(words: list[str], variants: Sequence[tuple[str, list[str]]]) -> bool:
        """The words lie inside a variant: contiguous, or every content word in it ("lacrimal glands")."""
        words = _trim(words)
        if not words:
            return False
        target, content = "".join(words), set(words) - _BIO_STOP
        return any(_glued_matches(variant, target) or content <= set(variant) for _, variant in variants)

    def _matches(self, text: str, variants: Sequence[tuple[str, list[str]]], question: str) -> str | None:
        """The first rule by which ``text`` names a variant (see the class docstring), or None."""
        words = bio_words(text)
        if not words:
            return None
        said = set(words)
        upper = _upper_words(text)
        core = _trim(bio_words(_LEAD_RE.sub("", text.strip().rstrip(".!"))))
        asked = set(bio_words(question))
        for raw, variant in variants:
            glued = "".join(variant)
            if _glued_matches(words, glued) and not _range_end(text, glued):
                return "glued"
            content = [w for w in variant if w not in _BIO_STOP]
            new = set(content) - asked  # words the question already gives are not asked of the answer
            if len(content) >= 2 and len(new) >= 2 and set(_short_tokens(content)) <= said:
                need = len(new) if len(new) <= 3 else math.ceil(0.75 * len(new))
                if sum(_said_alike(w, said - asked) for w in new) >= need:
                    return "all words"
            if _fuzzy_match(words, variant):
                return "spelling"
            if any(_is_acronym(w, variant) for w in upper - asked):
                return "acronym"
            if len(variant) == 1 and (variant[0] in _upper_words(raw) or raw.isupper()):
                short, n = variant[0], len(words)
                spans = [(0, len(core))] if len(short) < 3 else \
                    [(i, j) for i in range(n) for j in range(i + 2, min(n, i + len(short) + 3) + 1)]
                text_words = core if len(short) < 3 else words  # a two-letter acronym: the whole answer
                if any(_is_acronym(short, text_words[i:j], initials=True) and not set(text_words[i:j]) <= asked
                       for i, j in spans):
                    return "acronym"
            if len(variant) == 1 and any(_single_word_abbreviation(w, variant[0]) for w in upper - asked):
                return "abbreviation"
            if len(variant) <= 8 and _number_in_range(text, raw):
                return "number range"
            if any(_refines(w, v, len(variant) == 1) for w in set(words) - asked for v in variant):
                return "more specific"
            numeric = all(w.isdigit() for w in core)  # a bare number only inside "16569 bps", not "hr 1 04"
            if 1 <= len(core) <= 6 and set(core) - asked - _BIO_STOP and _glued_matches(variant, "".join(core)) \
                    and (not numeric or [w for w in variant if any(c.isdigit() for c in w)] == core) \
                    and (len(content) <= 8 or 3 * len(core) >= len(content)):
                return "inside alias"
        return None
