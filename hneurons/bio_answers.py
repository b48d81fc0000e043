"""Biomedical answer text for the BioASQ rule judge (:mod:`hneurons.bio_judge`).

Words with spelling variants folded (:func:`bio_words`), acronyms and abbreviations,
numbers and ranges, near spellings, alias variants (:func:`bio_alias_variants`) and the
items of a list answer (:func:`bio_items`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from hneurons.answers import _WORD_RE, ARTICLES

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

