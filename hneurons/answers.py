"""Answer normalization and alias matching: the core of the rule judges.

Text and aliases are normalized (lowercase, ``_`` and punctuation -> space, articles
a/an/the and contraction endings dropped, decimals kept whole; :func:`normalize`). An alias
is named in a response when it occurs there **as whole words** (:func:`find_alias`):
compared with number words as digits, ordinals alike, plurals singular and spaces inside
names ignored ("New York" = "newyork"). Paper [C]'s ``rule`` judge accepts any substring
("york" inside "yorkshire", "1" inside "1931").

Given the question, :func:`find_alias` further ignores the aliases that occur in the
question itself (:func:`answer_aliases`), so a response that merely repeats the question
does not count; an either/or question needs its right option chosen; a negated mention
("not Y", "unlike Y") does not count; nor does a common-noun alias inside a longer name
("states" in "United States"), a copy of the question when every alias is in it, or a
year inside a date of the wrong month.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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

