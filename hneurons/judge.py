"""Judging responses: answer normalization, rule judges, a refusal detector, an LLM judge.

Rule judge (paper [C] ``rule``, with deliberate changes; :class:`RuleJudge`): text and
aliases are normalized (lowercase, ``_`` and punctuation -> space, articles a/an/the and
contraction endings dropped, decimals kept whole); a response is correct when a normalized
alias occurs in it **as whole words** (:func:`find_alias`): compared with number words as
digits, ordinals alike, plurals singular and spaces inside names ignored ("New York" =
"newyork"). [C] accepts any substring ("york" inside "yorkshire", "1" inside "1931").
Further: aliases that occur in the question itself are ignored (:func:`answer_aliases`;
on SmolLM2-135M, 43 of 134 "consistently correct" questions were otherwise responses that
merely repeated the question); an either/or question needs its right option chosen; a
negated mention ("not Y", "unlike Y") does not count; nor does a common-noun alias inside a
longer name ("states" in "United States"), a copy of the question when every alias is in it,
or a year inside a date of the wrong month.

BioASQ rule judge (:class:`BioRuleJudge`): abbreviations both ways, word order,
biomedical spelling variants, number ranges; a list answer with a wrong item is wrong.

Refusal / uncertainty detector: [C]'s pre-filter phrases ("don't know", "cannot",
"not provided", "no information") plus common refusal and hedging phrases, and
empty responses (no content is a non-answer); phrases inside the matched alias do not
count (:func:`refusal_outside`). A refusal is never correct, and a question with any
refusal cannot be labelled consistently hallucinated (paper §2).

LLM judge: any OpenAI-compatible ``/chat/completions`` endpoint at temperature 0
with [C]'s prompt; the reply is read as t/f. The refusal pre-filter runs first,
as in [C] (it can be skipped per call). The key comes from the constructor or an
environment variable and is only ever sent in the Authorization header, never recorded.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol, Sequence

from hneurons.errors import HNeuronsError

_WORD_RE = re.compile(r"[^\W_]+")
ARTICLES = frozenset(("a", "an", "the"))


# Contraction endings after an apostrophe: dropped, except n't, read as "not" ("That's" -> "that", never "that s").
_CONTRACTIONS = frozenset(("s", "t", "re", "ll", "d", "ve", "m"))
_APOSTROPHES = "'\u2019\u2018`\u00b4"
_TOKEN_RE = re.compile(r"(\d+(?:[.,]\d+)+)(?![^\W_])|[^\W_]+")
_NUMBER_UNIT_RE = re.compile(r"(\d+)([^\W\d_]{3,})")


def normalized_words(text: str) -> list[tuple[str, int, int]]:
    """Words of ``normalize(text)`` with the [start, end) char span of each in ``text``.

    Lowercase, ``_`` and punctuation split words, articles a/an/the dropped; a
    contraction ending after an apostrophe ('s, 't, 're, 'll, 'd, 've, 'm) is dropped,
    except "n't", which becomes "not" ("isn't" -> "isn not"), so "That's" never yields
    a one-letter word "s"; a number glued to a word of 3+ letters is split ("1percent");
    a decimal number is one word ("8.5", never "8" and "5"), thousands separators are
    dropped ("1,450" -> "1450").
    Joining the words with single spaces gives ``normalize(text)``.
    """
    out = []
    for match in _TOKEN_RE.finditer(text):
        start, word = match.start(), match.group().lower()
        if match.group(1):  # a number with separators: "1,450" -> "1450", "8.5" stays one word
            if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", word):
                word = word.replace(",", "")
            if re.fullmatch(r"\d+(?:\.\d+)?", word):
                out.append((word, start, match.end()))
            else:
                out += [(m.group(), start + m.start(), start + m.end()) for m in re.finditer(r"\d+", word)]
            continue
        if start >= 2 and text[start - 1] in _APOSTROPHES and text[start - 2].isalpha() and word in _CONTRACTIONS:
            if word == "t" and text[start - 2] in "nN":
                out.append(("not", start, match.end()))
            continue
        glued = _NUMBER_UNIT_RE.fullmatch(word)
        if glued:  # "1percent" -> "1 percent"
            cut = start + len(glued.group(1))
            out += [(glued.group(1), start, cut), (glued.group(2), cut, match.end())]
        elif word not in ARTICLES:
            out.append((word, start, match.end()))
    return out


def normalize(text: str) -> str:
    """Lowercase, drop punctuation, articles and contraction endings, collapse whitespace (SQuAD/TriviaQA style)."""
    return " ".join(word for word, _, _ in normalized_words(text))


_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())} | {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60",
                                                      "seventy": "70", "eighty": "80", "ninety": "90"}
del _NUMBER_WORDS["one"]  # "one of the ..." is no number
_ORDINAL_WORDS = {w: f"#{i}" for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
    "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split(), start=1)}
_ORDINAL_RE = re.compile(r"(\d+)(?:st|nd|rd|th)")


def _canon(word: str) -> str:
    """A normalized word as the rule judge compares it: number words as digits ("five" = "5"),
    ordinals as #n ("fifth" = "5th"), plurals singular ("rhinos" = "rhino")."""
    if word in _NUMBER_WORDS:
        return _NUMBER_WORDS[word]
    if word in _ORDINAL_WORDS:
        return _ORDINAL_WORDS[word]
    ordinal = _ORDINAL_RE.fullmatch(word)
    if ordinal:
        return f"#{int(ordinal.group(1))}"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")) and not word.isdigit():
        if word.endswith("ies") and len(word) > 4:
            return word[:-3] + "y"
        if word.endswith(("sses", "ches", "shes", "xes")):
            return word[:-2]
        return word[:-1]
    return word


def _match_all(words: list[tuple[str, int, int]], alias: str) -> list[tuple[int, int]]:
    """(first word index, n words) of every whole-word occurrence of ``alias`` in ``words``.

    Words are compared by :func:`_canon`, and spaces inside the alias or the response
    are ignored as long as both ends fall on word boundaries ("New York" = "newyork",
    "Spider-Man" = "Spiderman", "Thegetaway" = "The Getaway").
    """
    target = "".join(_canon(w) for w, _, _ in normalized_words(alias or ""))
    if not target:
        return []
    tokens = [_canon(w) for w, _, _ in words]
    out = []
    for i in range(len(tokens)):
        # a leading article glued to the first word counts as dropped ("Thegetaway" = "The Getaway")
        for acc in {tokens[i]} | ({tokens[i][3:]} if tokens[i].startswith("the") and len(tokens[i]) >= 7 else set()):
            for j in range(i, len(tokens)):
                if j > i:
                    acc += tokens[j]
                if acc == target:
                    out.append((i, j - i + 1))
                if len(acc) >= len(target) or not target.startswith(acc):
                    break
    return sorted(set(out))


def _match(words: list[tuple[str, int, int]], alias: str) -> tuple[int, int] | None:
    """(first word index, n words) of the first whole-word occurrence of ``alias`` in ``words``."""
    found = _match_all(words, alias)
    return found[0] if found else None


_CHOICE_RE = re.compile(r"\bor\b", re.IGNORECASE)
_CLAUSE_RE = re.compile(r"[?!;:]|\s[-\u2013\u2014]\s|\.(?:\s|$)")
_LIST_COMMA_RE = re.compile(r",(?!\d)")


def choice_options(question: str) -> list[list[str]]:
    """Options of an "X or Y" / "X, Y or Z" question as normalized word lists ([] without "or").

    The clause holding the last "or" is split at commas and that "or". The first option
    carries the question's stem before it ("... in the USA double, triple or quadruple") and
    the last one the rest of the clause after it ("... or 2,050 miles long"); a stem can
    make a junk option ("who was born first" in "Who was born first, X or Y").
    """
    found = list(_CHOICE_RE.finditer(question))
    if not found:
        return []
    last = found[-1]
    left = _CLAUSE_RE.split(question[:last.start()])[-1]
    right = _LIST_COMMA_RE.split(_CLAUSE_RE.split(question[last.end():])[0])[0]
    pieces = [p for p in _LIST_COMMA_RE.split(left) if normalize(p)] + [right]
    options = [[w for w, _, _ in normalized_words(p)] for p in pieces]
    options = [o for o in options if o]
    return options if len(options) >= 2 else []


def _either_or(question: str, aliases: Sequence[str]) -> tuple[list[list[str]], list[list[str]]] | None:
    """(right options, the other options as a response would name them) when an option of the
    question is an alias, else None.

    An option is right when an alias is the whole option (the first option may carry the
    question's stem before it, the last one the rest of the question after it).
    """
    options = choice_options(question)

    def is_alias(option: list[str], first: bool, last: bool) -> bool:
        words = [(w, 0, 0) for w in option]
        return any((m[0] == 0 or first) and (m[0] + m[1] == len(option) or last)
                   for alias in aliases for m in _match_all(words, alias))

    last = len(options) - 1
    right = [k for k, o in enumerate(options) if is_alias(o, k == 0, k == last)]
    if not right:
        return None
    # how a response names another option: the first option by its last two words, the last by its first two
    named = [o[-2:] if k == 0 else o[:2] if k == last else o for k, o in enumerate(options) if k not in right]
    return [options[k] for k in right], named


def answer_aliases(question: str, aliases: Sequence[str]) -> list[str]:
    """The aliases that count as an answer to ``question``: those not already in the question.

    TriviaQA alias lists hold phrases from the question ("capital of Kenya" for
    Nairobi, a character's name for the series); a small model that parrots the
    question would otherwise be judged correct ("The capital of Sierra Leone is
    Kisena."). Exception: an either/or question (an alias is one of its options,
    :func:`choice_options`) names its own answer, so its aliases are all kept (the
    judge then asks that the response choose it, see :func:`find_alias`); so are they
    when every alias is in the question.
    """
    if _either_or(question, aliases):
        return list(aliases)
    words = normalized_words(question)
    kept = [alias for alias in aliases if _match(words, alias) is None]
    return kept or list(aliases)


# A match does not count when the clause says it is not the answer: a cue within the three words
# before it ("not Y", "unlike Y", "rather than Y", "instead of Y") or "Y is not correct / right" after it.
_NEGATION_CUES = frozenset(("not", "never", "unlike", "nor", "neither", "except", "instead", "rather", "no"))
_NOT_NEGATING = frozenset(("only", "just", "merely", "also"))
_WRONG_AFTER = ("not correct", "not right", "not answer", "incorrect", "wrong", "not it")
_CLAUSE_BREAK_RE = re.compile(r"[.,;:!?()\[\]\"\u201c\u201d]|\s[-\u2013\u2014]\s")


def _negated(text: str, words: list[tuple[str, int, int]], first: int, n: int, asked: frozenset[str]) -> bool:
    """True when words[first:first + n] are negated in their clause: a cue (_NEGATION_CUES) within
    the three words before, or "is not correct / right / the answer", "is not <a question word>",
    "is incorrect / wrong" right after."""
    for back in range(1, 4):
        k = first - back
        if k < 0 or _CLAUSE_BREAK_RE.search(text[words[k][2]:words[k + 1][1]]):
            break
        if words[k][0] in _NEGATION_CUES and not (k + 1 < first and words[k + 1][0] in _NOT_NEGATING):
            return True
    end = first + n
    if end < len(words) and words[end][0] in ("is", "was", "are", "were", "isn", "wasn", "aren", "weren") \
            and not _CLAUSE_BREAK_RE.search(text[words[end - 1][2]:words[end][1]]):
        after = [w for w, _, _ in words[end + 1:end + 3]]
        joined = " ".join(after)
        return any(joined.startswith(cue) for cue in _WRONG_AFTER) or (
            len(after) == 2 and after[0] == "not" and after[1] in asked)
    return False


def _alias_key(alias: str) -> str:
    return "".join(_canon(w) for w, _, _ in normalized_words(alias))


def _inside_longer_name(text: str, words: list[tuple[str, int, int]], first: int, n: int) -> bool:
    """True when a capitalized match is part of a longer capitalized name: a neighbouring word, with only a
    space between, is capitalized too ("States" in "The United States had ...", "Court" in "The Supreme Court").

    Applied only to aliases written without capitals in every form (a common noun such as "states" or
    "the court"), never to names ("Kennedy" in "John F. Kennedy").
    """
    span = words[first:first + n]
    if not all(text[s].isupper() for _, s, _ in span):
        return False
    for k in (first - 1, first + n):
        if 0 <= k < len(words):
            w, s, e = words[k]
            between = text[e:span[0][1]] if k < first else text[span[-1][2]:s]
            if text[s].isupper() and not between.strip() and not w.isdigit():
                return True
    return False


def _word_pairs(text: str) -> set[tuple[str, str]]:
    ws = [_canon(w) for w, _, _ in normalized_words(text)]
    return set(zip(ws, ws[1:]))


def _copied(words: list[tuple[str, int, int]], first: int, n: int, pairs: set[tuple[str, str]]) -> bool:
    """True when the match extends into a run copied from the question: the word before or after it forms,
    with the match's edge word, a word pair of the question ("A 72 oz steak is ..." for "$72" asked of
    "how much is a 72 oz steak"). Used only when every alias is in the question."""
    tokens = [_canon(w) for w, _, _ in words]
    end = first + n - 1
    return (first > 0 and (tokens[first - 1], tokens[first]) in pairs) or \
        (end + 1 < len(tokens) and (tokens[end], tokens[end + 1]) in pairs)


_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MONTH_SET = frozenset(_MONTHS) | frozenset(m[:3] for m in _MONTHS if m != "may")


def _month(word: str) -> str | None:
    return word[:3] if word in _MONTH_SET else None


def _other_date(text: str, words: list[tuple[str, int, int]], first: int, n: int, aliases: Sequence[str]) -> bool:
    """True when a year alias is matched inside a full date of another month ("surrendered on 11th of March
    1918" when an alias is "30 October 1918"): the response names a month within the three words before the
    year, an alias dates that year to a month, and no such alias has the response's month."""
    if n != 1 or not re.fullmatch(r"\d{4}", words[first][0]):
        return False
    said = [_month(w) for w, _, _ in words[max(0, first - 3):first]]
    said = [m for m in said if m]
    if not said:
        return False
    year, dated = words[first][0], set()
    for alias in aliases:
        alias_words = [w for w, _, _ in normalized_words(alias)]
        if year in alias_words:
            dated |= {m for m in map(_month, alias_words) if m}
    return bool(dated) and said[-1] not in dated


def find_alias(response: str, aliases: Sequence[str], question: str | None = None) -> tuple[int, int] | None:
    """Char span [start, end) in ``response`` of the first whole-word alias match, or None.

    Aliases are normalized like the response (:func:`_match_all`); among matches the
    earliest start wins, then the longest. Aliases that normalize to nothing are ignored.
    With ``question`` (what the rule judge uses): only :func:`answer_aliases` count,
    negated matches are skipped (:func:`_negated`: "it is not Y, it is Z", "unlike Y"),
    and for an either/or question the first option the response names must be a right one
    and the response must not offer two options joined by "or" ("X or Y"). Also skipped:
    a match of an alias written without capitals in all its forms (a common noun) that is
    capitalized inside a longer capitalized name (:func:`_inside_longer_name`: "states" in
    "The United States"); when every alias is in the question, a match inside a run copied
    from the question (:func:`_copied`); a year alias inside a date of another month than
    the aliases give (:func:`_other_date`).
    """
    words = normalized_words(response)
    choice, asked, all_asked = None, frozenset(), False
    if question is not None:
        choice = _either_or(question, aliases)
        kept = answer_aliases(question, aliases)
        all_asked = choice is None and len(kept) == len(aliases) and bool(aliases) and \
            all(_match(normalized_words(question), a) is not None for a in aliases if normalize(a))
        aliases = kept
        asked = frozenset(w for w, _, _ in normalized_words(question))
    found = [(m, alias) for alias in aliases for m in _match_all(words, alias)]
    if question is not None:
        proper = {_alias_key(a) for a in aliases if any(c.isupper() for c in a)}
        pairs = _word_pairs(question) if all_asked else set()
        found = [(m, a) for m, a in found if not _negated(response, words, *m, asked)
                 and not (_alias_key(a) not in proper and _inside_longer_name(response, words, *m))
                 and not (pairs and _copied(words, *m, pairs))
                 and not _other_date(response, words, *m, aliases)]
    matches = [m for m, _ in found]
    if not matches:
        return None
    first, n = min(matches, key=lambda m: (m[0], -m[1]))
    if choice is not None:
        right, other = choice
        named = [m for o in other for m in _match_all(words, " ".join(o)) if not _negated(response, words, *m, asked)]
        if any(m[0] < first for m in named):
            return None
        tokens = [w for w, _, _ in words]
        if any("or" in tokens[min(first, m[0]):max(first, m[0])] for m in named):
            return None
    return words[first][1], words[first + n - 1][2]


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


def refusal_outside(response: str, span: tuple[int, int] | None) -> bool:
    """:func:`is_refusal` of the response with the alias match blanked out.

    A refusal phrase inside the matched title ("I'm Sorry I Haven't a Clue", "No Such Thing
    as a Fish") is no refusal; a response that is only the alias is none either.
    """
    if span is None:
        return is_refusal(response)
    rest = response[:span[0]] + " " + response[span[1]:]
    return bool(_WORD_RE.search(rest)) and is_refusal(rest)


class RuleJudge:
    """Correct iff an answer alias is named (:func:`find_alias` with the question) and the response is no refusal.

    Refusal phrases inside the matched alias do not count (:func:`refusal_outside`).
    """

    name = "rule"

    def judge(self, question: str, response: str, aliases: Sequence[str]) -> Judgement:
        span = find_alias(response, aliases, question)
        refusal = refusal_outside(response, span)
        return Judgement(correct=span is not None and not refusal, refusal=refusal, span=span, judge=self.name)


# ---------------------------------------------------------------- BioASQ rule judge

_GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon", "ζ": "zeta", "η": "eta",
          "θ": "theta", "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu", "ξ": "xi", "π": "pi", "ρ": "rho",
          "σ": "sigma", "τ": "tau", "φ": "phi", "χ": "chi", "ψ": "psi", "ω": "omega"}
_GREEK_RE = re.compile("|".join(_GREEK))
_GREEK_NAMES = frozenset(_GREEK.values())
_BIO_STOP = frozenset(("of", "in", "and", "or", "to", "for", "by", "with", "on", "at", "from", "as", "its", "their"))
# Words skipped when an acronym is spelled out ("PCSK9" = proprotein convertase subtilisin/kexin type 9),
# and words it may leave out unless they come last ("PD-1" = programmed cell death 1 / programmed death receptor 1).
_ACRONYM_SKIP = _BIO_STOP | {"type"}
_ACRONYM_INNER = frozenset(("receptor", "cell", "protein"))
_AMINO_ACIDS = {"alanine": "ala", "arginine": "arg", "asparagine": "asn", "aspartate": "asp", "cysteine": "cys",
                "glutamine": "gln", "glutamate": "glu", "glycine": "gly", "histidine": "his", "isoleucine": "ile",
                "leucine": "leu", "lysine": "lys", "methionine": "met", "phenylalanine": "phe", "proline": "pro",
                "serine": "ser", "threonine": "thr", "tryptophan": "trp", "tyrosine": "tyr", "valine": "val"}
_SUFFIX_RE = re.compile(r"(?<=[a-z]{4})(?:ated|ation|ate|ion|ory|ing|ed)$")


def _bio_stem(word: str) -> str:
    """Spelling variants folded together: plurals, British -our/-ae-/-oe-/-ise/-lling, -viridae =
    -virus, the endings -ated/-ation/-ate/-ion/-ory/-ing/-ed ("acetylated" = "acetyl", "shunting" =
    "shunt", "inhibitory" = "inhibit") and amino acids by their three-letter codes ("serine" = "ser")."""
    if word.isdigit() or len(word) <= 3 or any(c.isdigit() for c in word):
        return word
    if len(word) > 5:
        word = re.sub(r"viridae$", "virus", word)
        word = re.sub(r"ae(?!r)", "e", word)
        word = re.sub(r"(?<=[^aeiou])oe", "e", word)
        word = re.sub(r"is(e|ed|es|ing|ation|ations)$", r"iz\1", word)
        word = re.sub(r"lling$", "ling", word)
        word = re.sub(r"our$", "or", word)
    if word.endswith(("ies", "series", "species")):
        word = word if word.endswith(("series", "species")) else word[:-3] + "y"
    elif word.endswith(("sses", "shes", "ches", "xes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is", "os")):
        word = word[:-1]
    word = _AMINO_ACIDS.get(word, word)
    return _SUFFIX_RE.sub("", word)


_STEREO_RE = re.compile(r"(?<![\w-])[ld]-(?=[a-z]+(?:ine|ose|dopa)\b)|(?<=[a-z]{3})-[ld]-(?=[a-z]+(?:ine|ose)\b)")


def bio_words(text: str) -> list[str]:
    """Lowercase words of biomedical text, spelling variants folded (:func:`_bio_stem`).

    Greek letters are spelled out, thousands separators dropped ("16,569" -> "16569"), a decimal
    number kept whole ("8.5" -> "8point5"),
    possessive 's dropped, "and/or" read as "and", "-ic acid" read as "-ate", L-/D- prefixes and
    articles dropped.
    """
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'").replace("\u2018", "'")
    text = _GREEK_RE.sub(lambda m: f" {_GREEK[m.group()]} ", text)
    text = re.sub(r"(?<=\d)[, ](?=\d{3}\b)", "", text)
    text = re.sub(r"(?<=\d)\.(?=\d)", "point", text)  # "8.5" is one number, not 8 and 5
    text = re.sub(r"(?<=\w)'s\b", "", text)
    text = re.sub(r"\band\s*/\s*or\b", "and", text)
    text = re.sub(r"\b(\w{3,})ic acid\b", r"\1ate", text)  # valproic acid = valproate
    text = _STEREO_RE.sub(" ", text)  # S-adenosyl-L-methionine, L-DOPA
    words = [w for w in _WORD_RE.findall(text) if w not in ARTICLES]
    words = [w for i, w in enumerate(words) if not (w == "s" and i > 0)]  # "parkinson s disease"
    return [_bio_stem(w) for w in words]


def _glued_matches(words: Sequence[str], target: str) -> list[tuple[int, int]]:
    """Word windows [i, j) whose concatenation equals ``target`` (spaces and hyphens ignored)."""
    out = []
    for i in range(len(words)):
        acc = ""
        for j in range(i, len(words)):
            acc += words[j]
            if acc == target:
                out.append((i, j + 1))
            if len(acc) >= len(target):
                break
    return out


def _said_alike(word: str, said: set[str]) -> bool:
    """``word`` or a word sharing its first 6+ letters and 3/4 of the shorter one ("transporter" / "transport")."""
    if word in said:
        return True
    if len(word) < 6:
        return False
    for other in said:
        k = 0
        while k < min(len(word), len(other)) and word[k] == other[k]:
            k += 1
        if k >= 6 and k >= 0.75 * min(len(word), len(other)):
            return True
    return False


def _short_tokens(words: Sequence[str]) -> list[str]:
    """Words that tell apart near-identical names: 1-2 letters, numbers, Greek letters (IL-6 / IL-8)."""
    return sorted(w for w in words if len(w) <= 2 or any(c.isdigit() for c in w) or w in _GREEK_NAMES)


def _fuzzy_match(words: Sequence[str], alias: Sequence[str]) -> bool:
    """A word window spelled nearly like the alias (typos: "fibrilation"): as many words, each the
    same or a near spelling of a long word (6+ letters, difflib ratio >= 0.8, same first letter),
    glued difflib ratio >= 0.9 (>= 0.85 from 16 letters), the same first 5 letters (hyper- /
    hypo-), alias at least 10 letters. "double stranded RNA" is no spelling of "... DNA"."""
    from difflib import SequenceMatcher

    target, n = "".join(alias), len(alias)
    if len(target) < 10:
        return False
    ratio = 0.85 if len(target) >= 16 else 0.9

    def near(a: str, b: str) -> bool:
        return a == b or (min(len(a), len(b)) >= 6 and a[0] == b[0] and SequenceMatcher(None, a, b).ratio() >= 0.8)

    for i in range(len(words) - n + 1):
        window = words[i:i + n]
        acc = "".join(window)
        if acc[:5] == target[:5] and all(near(a, b) for a, b in zip(window, alias)) \
                and SequenceMatcher(None, acc, target).ratio() >= ratio:
            return True
    return False


def _is_acronym(short: str, words: Sequence[str], initials: bool = False) -> bool:
    """``short`` spelled by the words' leading letters ("egfr" <- epidermal growth factor receptor).

    Each word gives a prefix of at least one letter (only its first with ``initials``; a
    number gives itself); linking words (of, in, and, type, ...) may give nothing (with
    ``initials`` they must), and so may receptor / cell / protein when another spelling word follows.
    """
    content = [w for w in words if w not in _ACRONYM_SKIP]
    if len(content) < 2 or not 2 <= len(short) <= 2 * len(content):
        return False
    last = max(i for i, w in enumerate(words) if w not in _ACRONYM_SKIP)

    def spell(i: int, j: int) -> bool:
        if i == len(short):
            return j > last
        if j == len(words):
            return False
        word = words[j]
        if (word in _ACRONYM_SKIP or (word in _ACRONYM_INNER and 0 < j < last)) and spell(i, j + 1):
            return True
        if initials and word in _ACRONYM_SKIP:
            return False
        if word.isdigit():
            return short.startswith(word, i) and spell(i + len(word), j + 1)
        k = 0
        while k < (1 if initials else len(word)) and i + k < len(short) and short[i + k] == word[k]:
            k += 1
            if spell(i + k, j + 1):
                return True
        return False

    return spell(0, 0)


def _single_word_abbreviation(short: str, word: str) -> bool:
    """"fxn" for frataxin: the word's first letter, then the rest of ``short`` in order, word >= 2x as long."""
    if len(short) < 3 or len(word) < 2 * len(short) or short[0] != word[0] or not (short + word).isalpha():
        return False
    rest = iter(word[1:])
    return all(c in rest for c in short[1:])


_NUMBER_RE = re.compile(r"(?<![^\W\d_])\d+(?:\.\d+)?(?![^\W\d_])")  # not part of a name such as Aβ42
_RANGE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*%?\s*(?:-|–|to)\s*(\d+(?:\.\d+)?)|"
                       r"between\s+(\d+(?:\.\d+)?)\s*%?\s*and\s+(\d+(?:\.\d+)?)")


def _numbers(text: str) -> list[float]:
    text = re.sub(r"(?<=\d)[, ](?=\d{3}\b)", "", text)
    return [float(n) for n in _NUMBER_RE.findall(text)]


def _number_in_range(response: str, alias: str) -> bool:
    """A single number in the response inside an alias range ("between 10,000 and 20,000", "50% to 80%",
    "more than 30"), the response's numbers below an alias bound ("before age 25", "less than 5"), a response
    range inside an alias range ("15-25%" for 11-75%), or an alias number strictly inside a response range
    ("20-40%" for 30%)."""
    said, gold = _numbers(response), _numbers(alias)
    text = re.sub(r"(?<=\d)[, ](?=\d{3}\b)", "", alias.lower())
    if len(said) == 1 and len(gold) == 2 and _RANGE_RE.search(text):
        return min(gold) <= said[0] <= max(gold)
    if len(said) == 1 and len(gold) == 1 and re.search(r"\b(?:more|greater) than\b|\bover\b", text):
        return said[0] > gold[0]
    if 1 <= len(said) <= 2 and len(gold) == 1 and re.search(r"\b(?:less|fewer|younger) than\b|\bunder\b|\bbelow\b|"
                                                        r"\bbefore (?:the )?age\b", text):
        return max(said) < gold[0]
    spoken = re.sub(r"(?<=\d)[, ](?=\d{3}\b)", "", response.lower())
    if len(said) == 2 and len(gold) == 2 and _RANGE_RE.search(text) and _RANGE_RE.search(spoken) \
            and not re.search(r"\bin\b|:|/", spoken):  # "15-25%" inside "11-75%"
        return min(gold) <= min(said) and max(said) <= max(gold)
    if len(said) == 2 and len(gold) == 1 and _RANGE_RE.search(spoken) and not re.search(r"\bin\b|:|/", spoken):
        return min(said) < gold[0] < max(said)
    return False


def _range_end(text: str, number: str) -> bool:
    """True when ``number`` is one end of a range in the text ("5-10%" does not say 10%)."""
    if not number.isdigit():
        return False
    spoken = re.sub(r"(?<=\d)[, ](?=\d{3}\b)", "", text.lower())
    return any(number in m.groups() for m in _RANGE_RE.finditer(spoken))


def _upper_words(text: str) -> set[str]:
    """Stemmed words written with two or more capitals, or capitals and digits (acronyms: EGFR, PD-1)."""
    out = set()
    for token in re.findall(r"[^\W_]+(?:-\d+)?", unicodedata.normalize("NFKC", text)):
        upper = sum(c.isupper() for c in token)
        if upper >= 2 or (upper and any(c.isdigit() for c in token)):
            out.add(_bio_stem(re.sub(r"\W", "", token.lower())))
    return out


_OR_RE = re.compile(r"\bor\b", re.IGNORECASE)
_AND_OR_RE = re.compile(r"\band\s*/?\s*or\b|\bor\s*/?\s*and\b", re.IGNORECASE)


def bio_alias_variants(alias: str) -> list[str]:
    """An alias and its parts: without / inside its parentheses, and each side of an "or"."""
    alias = _AND_OR_RE.sub("and", alias)
    out = [alias, re.sub(r"\([^()]*\)", " ", alias)] + re.findall(r"\(([^()]*)\)", alias)
    for piece in list(out):
        if _OR_RE.search(piece):
            out += _OR_RE.split(piece)
    return [v for v in dict.fromkeys(v.strip() for v in out) if v]


def _trim(words: Sequence[str]) -> list[str]:
    words = list(words)
    while words and words[0] in _BIO_STOP:
        words.pop(0)
    while words and words[-1] in _BIO_STOP:
        words.pop()
    return words


_LEAD_RE = re.compile(r"^(?:the answer is|answer:|approximately|about|around|roughly|nearly|typically|usually|"
                      r"generally|mostly|mainly|likely|probably)\s+", re.IGNORECASE)
_SEPARATOR_RE = re.compile(r"\s*(?:;|,(?!\d{3}\b))\s*(?:and\s+|or\s+)?|\s+(?:and|or|plus|followed by|as well as|"
                           r"along with|combined with|in combination with|versus|vs\.?|&)\s+", re.IGNORECASE)
_QUALIFIER_RE = re.compile(r"^(?:particularly|especially|mainly|mostly|primarily|predominantly|typically|usually|"
                           r"often|commonly|most commonly|including|such as|e\.g\.|i\.e\.|like|in|at|on|within|with|"
                           r"which|that|where|due to|caused by|resulting in|leading to)\b", re.IGNORECASE)
_MID_QUALIFIER_RE = re.compile(r"\s(?:with|particularly|especially|mainly|including|such as|e\.g\.|i\.e\.)\b",
                               re.IGNORECASE)
_VERB_RE = re.compile(r"\b(?:is|are|was|were|be|been|being|can|could|may|might|will|would|has|have|had|does|do|"
                      r"did|causes?|caused|involves?|leads?|results?|acts?|binds?|inhibits?|used)\b", re.IGNORECASE)


def bio_items(response: str) -> list[str] | None:
    """The items of a list answer ("T cells and B cells", "oral, intravenous"), or None when the response
    is not a short list (one item, a sentence with a verb, or an item over 6 words).

    Parentheses are dropped first; the text from a qualifier on ("particularly in ...", "with ...")
    is dropped, except "with" followed by one or two last words ("pembrolizumab with ipilimumab").
    """
    text = re.sub(r"\([^()]*\)", " ", response).strip().rstrip(".!").strip()
    text = _LEAD_RE.sub("", text)
    if not text or re.search(r"[.!?]\s", text) or "\n" in text or _VERB_RE.search(text):
        return None
    text = re.sub(r"\s+with\s+(?=\S+(?:\s+\S+)?$)", " and ", text, flags=re.IGNORECASE)  # "X with Y": a combination
    text = re.sub(r"\b(between\s+\S+)\s+and\b", r"\1 to", text, flags=re.IGNORECASE)  # one range, not two items
    items = []
    for item in _SEPARATOR_RE.split(text):
        item = item.strip()
        if _QUALIFIER_RE.match(item):
            break
        cut = _MID_QUALIFIER_RE.search(item)
        if cut:
            items.append(item[:cut.start()].strip())
            break
        if item:
            items.append(item)
    items = [item for item in items if item]
    if len(items) < 2 or any(len(item.split()) > 6 for item in items):
        return None
    return items


def _uncopied(response: str, question: str) -> str:
    """The response's words (:func:`bio_words`) without the runs of two or more it copies from the question."""
    words, asked = bio_words(response), bio_words(question)
    pairs = set(zip(asked, asked[1:]))
    copied = set()
    for i in range(len(words) - 1):
        if (words[i], words[i + 1]) in pairs:
            copied |= {i, i + 1}
    return " ".join(w for i, w in enumerate(words) if i not in copied)


_BAND_RE = re.compile(r"(?:\d{1,2}|x|y)[pq]\d+(?:point\d+)?")


def _refines(word: str, alias_word: str, whole: bool) -> bool:
    """``word`` names a part or a more specific form of ``alias_word``: a sub-band of a chromosome band
    ("Xp21.22" in Xp21), a methylation degree of a histone mark ("H3K9me3" for H3K9me, ``whole`` alias
    only) or a part of a body region ("midfoot", "forefoot", "hindfoot" for foot, ``whole`` alias only)."""
    if word == alias_word or not word.startswith(alias_word) and not word.endswith(alias_word):
        return False
    rest = word[len(alias_word):]
    if _BAND_RE.fullmatch(alias_word) and word.startswith(alias_word) and re.fullmatch(r"point\d+", rest):
        return True
    if whole and re.fullmatch(r"[a-z\d]*\d[a-z\d]*me", alias_word) and word.startswith(alias_word) \
            and rest in ("1", "2", "3"):
        return True
    return whole and alias_word.isalpha() and len(alias_word) >= 4 and word in {
        p + alias_word for p in ("mid", "fore", "hind")}


def _written_score(alias: str) -> tuple[int, int]:
    """Which of two spellings of an alias keeps more of how it was written: capitals (acronyms), then
    punctuation ("11-75%" over its normalized copy "11 75", so that the range is seen)."""
    return sum(map(str.isupper, alias)), sum(not c.isalnum() and not c.isspace() for c in alias)


# A one-word list item that only modifies the next item's head ("Eastern and Central North America").
_MODIFIER_RE = re.compile(r"[A-Za-z]+(?:al|ic|ar|ary|ous|ive|ern|ian)", re.IGNORECASE)
_SUBTYPE_RE = re.compile(r"(?<![\w.])(?=[a-z]{0,2}\d)(?=\d{0,2}[a-z])[a-z\d]{2,3}(?![\w.])")


def _subtypes(text: str) -> set[str]:
    """Short letter-digit codes that name a subtype ("type 2J", "CMT 4D", "1a")."""
    return set(_SUBTYPE_RE.findall(unicodedata.normalize("NFKC", text).lower()))


def _other_subtype(response: str, aliases: Sequence[str]) -> bool:
    """True when the response names a subtype code and every alias names subtype codes, none of them the
    response's ("Charcot-Marie-Tooth disease type 2J" for "CMT 4D")."""
    said = _subtypes(response)
    gold = [_subtypes(a) for a in aliases]
    return bool(said) and all(gold) and not any(said & g for g in gold)


# A last word that only names the kind of thing ("leishmania species", "apoe4 isoform", "htt gene").
_GENERIC_TAIL = frozenset(("species", "spp", "genus", "gene", "isoform", "family", "process", "activity", "therapy",
                           "status", "level", "expression"))


class BioRuleJudge:
    """BioASQ rule judge: an answer that names a reference answer, in any of its usual written forms.

    Per alias variant (:func:`bio_alias_variants`; variants inside the question are ignored,
    as in :func:`answer_aliases`), over :func:`bio_words` (plurals, British spellings, Greek
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


LLM_PROMPT = ("Question: {question}\nResponse: {response}\nCorrect Answers: {answers}\n"
              "Please judge whether the response is correct or not. Return 't' if the response is correct, "
              "and 'f' if the response is incorrect. Don't add any additional information.")


def parse_verdict(reply: str) -> bool | None:
    """t/true/correct/yes -> True, f/false/incorrect/no -> False, anything else None."""
    word = re.sub(r"[^a-z]", " ", reply.lower()).split()
    if not word:
        return None
    if word[0] in ("t", "true", "correct", "yes"):
        return True
    if word[0] in ("f", "false", "incorrect", "no", "wrong"):
        return False
    return None


class LLMJudge:
    """Correctness by an LLM over an OpenAI-compatible chat endpoint ([C]'s prompt, temperature 0).

    base_url: e.g. ``https://api.openai.com/v1`` (``/chat/completions`` is appended).
    The key is ``api_key`` if given, else ``os.environ[api_key_env]`` (may be empty
    for local servers). Refusals are decided by :func:`is_refusal` without a call.
    Replies are memoized per (question, response, aliases). ``where`` prefixes error
    messages (e.g. the params key of the judge). ``name`` is ``llm:<model>``.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0, retries: int = 3,
                 backoff: float = 1.0, where: str = "judge"):
        from hneurons.openai_http import OpenAIEndpoint

        if not base_url:
            raise HNeuronsError(f"{where}.base_url: required for the llm judge")
        if not model:
            raise HNeuronsError(f"{where}.model: required for the llm judge")
        self.endpoint = OpenAIEndpoint(base_url, api_key, api_key_env, timeout, retries, backoff, where)
        self.base_url, self.model, self.name = self.endpoint.base_url, model, f"llm:{model}"
        self.retries, self.where = self.endpoint.retries, where
        self._memo: dict[tuple[str, str, tuple[str, ...]], bool] = {}

    def _ask(self, prompt: str) -> str:
        body = {"model": self.model, "temperature": 0, "max_tokens": 5,
                "messages": [{"role": "user", "content": prompt}]}
        return self.endpoint.post("/chat/completions", body,
                                  lambda reply: str(reply["choices"][0]["message"]["content"]),
                                  "reply is not a chat completion")

    def check(self) -> None:
        """One request to the endpoint; raises the one-line HNeuronsError if it cannot be used."""
        self._ask("Reply with the single letter t.")

    def judge(self, question: str, response: str, aliases: Sequence[str], prefilter: bool = True) -> Judgement:
        """Correctness by the endpoint; with ``prefilter`` a refusal (:func:`refusal_outside`) is wrong without a call."""
        span = find_alias(response, aliases, question)
        refusal = refusal_outside(response, span)
        if refusal and prefilter:
            return Judgement(correct=False, refusal=True, span=span, judge=self.name)
        key = (question, response.strip(), tuple(aliases))
        if key not in self._memo:
            prompt = LLM_PROMPT.format(question=question, response=response.strip(), answers=list(aliases))
            verdict = None
            for _ in range(self.retries):
                verdict = parse_verdict(self._ask(prompt))
                if verdict is not None:
                    break
            if verdict is None:
                raise HNeuronsError(f"{self.where}.model={self.model}: replies are not t/f")
            self._memo[key] = verdict
        return Judgement(correct=self._memo[key], refusal=refusal, span=span, judge=self.name)


# ---------------------------------------------------------------- question-level consistency labels

HALLUCINATED, FAITHFUL, UNLABELLED = 1, 0, -1


def _needed(n_samples: int, min_agreement: float) -> int:
    """Samples that must agree: ceil(min_agreement * n_samples), at least 1."""
    return max(1, math.ceil(round(min_agreement * n_samples, 9)))


def check_min_agreement(min_agreement: float, where: str = "min_agreement") -> float:
    """min_agreement must lie in (0.5, 1] so the two classes cannot overlap."""
    if not isinstance(min_agreement, (int, float)) or not 0.5 < min_agreement <= 1:
        raise HNeuronsError(f"{where}={min_agreement!r}: expected a number in (0.5, 1]")
    return float(min_agreement)


def consistency_label(correct: Sequence[bool], refusal: Sequence[bool], min_agreement: float = 1.0) -> int:
    """1 = consistently hallucinated, 0 = consistently faithful, -1 = neither.

    Faithful: at least ceil(min_agreement * n) samples correct. Hallucinated: at
    least that many wrong and **no** sample a refusal. With min_agreement = 1 this is
    the paper's rule (all correct / all wrong and none a refusal).
    """
    n = len(correct)
    if n == 0:
        return UNLABELLED
    need = _needed(n, min_agreement)
    n_correct = sum(bool(c) for c in correct)
    if n_correct >= need:
        return FAITHFUL
    if n - n_correct >= need and not any(refusal):
        return HALLUCINATED
    return UNLABELLED


def reachable_labels(correct: Sequence[bool], refusal: Sequence[bool], n_samples: int,
                     min_agreement: float = 1.0) -> frozenset[int]:
    """Labels (FAITHFUL / HALLUCINATED) the question can still get once all ``n_samples`` are in.

    correct / refusal: verdicts of the samples drawn so far (at most n_samples).
    """
    need = _needed(n_samples, min_agreement)
    remaining = n_samples - len(correct)
    n_correct = sum(bool(c) for c in correct)
    n_wrong = len(correct) - n_correct
    out = set()
    if n_correct + remaining >= need:
        out.add(FAITHFUL)
    if not any(refusal) and n_wrong + remaining >= need:
        out.add(HALLUCINATED)
    return frozenset(out)


def still_labelable(correct: Sequence[bool], refusal: Sequence[bool], n_samples: int,
                    min_agreement: float = 1.0) -> bool:
    """Whether the first samples of a question still allow a label once all ``n_samples`` are in.

    Used to stop sampling a question early: dropping it then gives the same labels
    as sampling it in full.
    """
    return bool(reachable_labels(correct, refusal, n_samples, min_agreement))


def representative_index(responses: Sequence[str], correct: Sequence[bool], label: int) -> int | None:
    """Index of the question's representative sample: its most frequent normalized answer.

    Only samples whose verdict agrees with ``label`` are candidates (all of them when
    min_agreement = 1, as in [C], which takes the most frequent string); ties go to
    the answer seen first; the first sample with that answer is returned. None for
    an unlabelled question.
    """
    if label not in (FAITHFUL, HALLUCINATED):
        return None
    wanted = label == FAITHFUL
    candidates = [i for i, c in enumerate(correct) if bool(c) == wanted]
    if not candidates:
        return None
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i in candidates:
        key = normalize(responses[i])
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, i)
    best = max(counts, key=lambda k: (counts[k], -first[k]))
    return first[best]


def select_balanced(labels: Sequence[int], max_per_class: int | None, seed: int) -> list[bool]:
    """Seeded balanced selection: the same number of faithful and hallucinated items.

    labels: int[n] in {1, 0, -1}. Takes min(count per class, max_per_class) of each
    class, uniformly at random (numpy default_rng(seed)). Returns a mask[n].
    """
    import numpy as np

    labels = np.asarray(labels)
    pools = [np.flatnonzero(labels == cls) for cls in (FAITHFUL, HALLUCINATED)]
    size = min(len(p) for p in pools)
    if max_per_class is not None:
        size = min(size, int(max_per_class))
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for pool in pools:
        mask[rng.choice(pool, size=size, replace=False) if size else []] = True
    return mask.tolist()


SPLITS = ("train", "validation", "test")


def assign_splits(example_ids: Sequence[str], labels: Sequence[int], selected: Sequence[bool],
                  fractions: dict[str, float], seed: int) -> list[str]:
    """Split the selected items by id into train / validation / test, stratified by label.

    fractions: {"train": f, "validation": f, "test": f} summing to 1. Per class the
    validation and test counts are rounded and train takes the rest, so the splits
    stay balanced. Unselected items get "". The three id sets are asserted disjoint.
    """
    import numpy as np

    if set(fractions) != set(SPLITS) or any(f < 0 for f in fractions.values()) \
            or abs(sum(fractions.values()) - 1) > 1e-6:
        raise HNeuronsError(f"split fractions {fractions}: expected train/validation/test >= 0 summing to 1")
    rng = np.random.default_rng(seed)
    out = [""] * len(example_ids)
    for cls in (FAITHFUL, HALLUCINATED):
        pool = [i for i, (lab, sel) in enumerate(zip(labels, selected)) if sel and lab == cls]
        order = [pool[j] for j in rng.permutation(len(pool))]
        n_val = int(round(len(pool) * fractions["validation"]))
        n_test = int(round(len(pool) * fractions["test"]))
        n_train = len(pool) - n_val - n_test
        for rank, i in enumerate(order):
            out[i] = "train" if rank < n_train else "validation" if rank < n_train + n_val else "test"
    ids = {split: {example_ids[i] for i, s in enumerate(out) if s == split} for split in SPLITS}
    assert not (ids["train"] & ids["validation"] or ids["train"] & ids["test"] or ids["validation"] & ids["test"]), \
        "train/validation/test share question ids"
    return out
