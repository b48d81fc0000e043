"""Judging responses: answer normalization, a rule judge, a refusal detector, an LLM judge.

Rule judge (paper [C] ``rule``, with one deliberate change): text and aliases are
normalized (lowercase, ``_`` and punctuation -> space, articles a/an/the dropped,
whitespace collapsed); a response is correct when a normalized alias occurs in the
normalized response **as whole words**. [C] accepts any substring ("york" inside
"yorkshire", "1" inside "1931"); whole words are stricter (issue 3). Second change:
aliases that occur in the question itself are ignored (see :func:`answer_aliases`);
on SmolLM2-135M, 43 of 134 "consistently correct" questions were otherwise
responses that merely repeated the question.

Refusal / uncertainty detector: [C]'s pre-filter phrases ("don't know", "cannot",
"not provided", "no information") plus common refusal and hedging phrases, and
empty responses (no content is a non-answer). A refusal is never correct, and a
question with any refusal cannot be labelled consistently hallucinated (paper §2).

LLM judge: any OpenAI-compatible ``/chat/completions`` endpoint at temperature 0
with [C]'s prompt; the reply is read as t/f. The refusal pre-filter runs first,
as in [C]. The key comes from the constructor or an environment variable and is
only ever sent in the Authorization header, never recorded.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from typing import Protocol, Sequence

from hneurons.errors import HNeuronsError

_NORMALIZE_RE = re.compile(r"[^\w\s]")
_WORD_RE = re.compile(r"[^\W_]+")
ARTICLES = frozenset(("a", "an", "the"))


def normalize(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace (SQuAD/TriviaQA style)."""
    text = _NORMALIZE_RE.sub(" ", text.lower().replace("_", " "))
    return " ".join(word for word in text.split() if word not in ARTICLES)


def normalized_words(text: str) -> list[tuple[str, int, int]]:
    """Words of ``normalize(text)`` with the [start, end) char span of each in ``text``.

    Joining the words with single spaces gives ``normalize(text)`` (up to the rare
    characters whose lowercase form changes length).
    """
    out = []
    for match in _WORD_RE.finditer(text):
        for word in normalize(match.group()).split():
            out.append((word, match.start(), match.end()))
    return out


_CHOICE_RE = re.compile(r"\bor\b", re.IGNORECASE)


def answer_aliases(question: str, aliases: Sequence[str]) -> list[str]:
    """The aliases that count as an answer to ``question``: those not already in the question.

    TriviaQA alias lists hold phrases from the question ("capital of Kenya" for
    Nairobi, a character's name for the series); a small model that parrots the
    question would otherwise be judged correct ("The capital of Sierra Leone is
    Kisena."). Exception: an either/or question (it contains "or") names its own
    answer, so its aliases are all kept; so are they when every alias is in the question.
    """
    if _CHOICE_RE.search(question):
        return list(aliases)
    kept = [alias for alias in aliases if _match(normalized_words(question), alias) is None]
    return kept or list(aliases)


def _match(words: list[tuple[str, int, int]], alias: str) -> tuple[int, int] | None:
    """(first word index, n words) of the first whole-word occurrence of ``alias`` in ``words``."""
    target = normalize(alias or "").split()
    if not target:
        return None
    tokens = [w for w, _, _ in words]
    n = len(target)
    for index in range(len(tokens) - n + 1):
        if tokens[index:index + n] == target:
            return index, n
    return None


def find_alias(response: str, aliases: Sequence[str], question: str | None = None) -> tuple[int, int] | None:
    """Char span [start, end) in ``response`` of the first whole-word alias match, or None.

    Aliases are normalized like the response; among matches the earliest start
    wins, then the longest. Aliases that normalize to nothing are ignored. With
    ``question``, only :func:`answer_aliases` count (what the rule judge uses).
    """
    if question is not None:
        aliases = answer_aliases(question, aliases)
    words = normalized_words(response)
    matches = [m for m in (_match(words, alias) for alias in aliases) if m is not None]
    if not matches:
        return None
    first, n = min(matches, key=lambda m: (m[0], -m[1]))
    return words[first][1], words[first + n - 1][2]


_REFUSAL_PATTERNS = [
    r"\bdon'?t know\b", r"\bdo not know\b", r"\bdoesn'?t know\b", r"\bcannot\b",
    r"\bi can'?t\b", r"\bcan'?t (?:answer|provide|help|say|tell|determine|find|be sure)\b",
    r"\bnot provided\b", r"\bno information\b", r"\bnot sure\b", r"\bunsure\b", r"\buncertain\b",
    r"\bunable to\b", r"\bi'?m sorry\b", r"\bi am sorry\b", r"\bi apologi[sz]e\b", r"\bno answer\b",
    r"\bnot enough information\b", r"\bi don'?t have\b", r"\bi do not have\b", r"\bnot aware of\b",
    r"\bno (?:known|reliable|such)\b", r"\bis unknown\b", r"\bnot possible to (?:say|know|determine)\b",
    r"\bas an ai\b", r"\bcould not find\b", r"\bcouldn'?t find\b", r"\bno record\b",
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


class RuleJudge:
    """Correct iff an answer alias (:func:`answer_aliases`) occurs as whole words in the response, no refusal."""

    name = "rule"

    def judge(self, question: str, response: str, aliases: Sequence[str]) -> Judgement:
        refusal = is_refusal(response)
        span = find_alias(response, aliases, question)
        return Judgement(correct=span is not None and not refusal, refusal=refusal, span=span, judge=self.name)


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
        if not base_url:
            raise HNeuronsError(f"{where}.base_url: required for the llm judge")
        if not model:
            raise HNeuronsError(f"{where}.model: required for the llm judge")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"llm:{model}"
        self._key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        self.timeout, self.retries, self.backoff, self.where = timeout, max(1, retries), backoff, where
        self._memo: dict[tuple[str, str, tuple[str, ...]], bool] = {}

    def _ask(self, prompt: str) -> str:
        import httpx

        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        body = {"model": self.model, "temperature": 0, "max_tokens": 5,
                "messages": [{"role": "user", "content": prompt}]}
        url = f"{self.base_url}/chat/completions"
        problem = ""
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                reply = httpx.post(url, json=body, headers=headers, timeout=self.timeout)
            except httpx.HTTPError as exc:
                problem = f"unreachable ({type(exc).__name__})"
                continue
            if reply.status_code == 429 or reply.status_code >= 500:
                problem = f"HTTP {reply.status_code}"
                continue
            if reply.status_code != 200:
                raise HNeuronsError(f"{self.where}.base_url={self.base_url}: HTTP {reply.status_code} "
                                    f"from {url} (check {self.where}.model and the API key)")
            try:
                return str(reply.json()["choices"][0]["message"]["content"])
            except (ValueError, KeyError, IndexError, TypeError):
                problem = "reply is not a chat completion"
        raise HNeuronsError(f"{self.where}.base_url={self.base_url}: {problem} after {self.retries} tries")

    def check(self) -> None:
        """One request to the endpoint; raises the one-line HNeuronsError if it cannot be used."""
        self._ask("Reply with the single letter t.")

    def judge(self, question: str, response: str, aliases: Sequence[str]) -> Judgement:
        refusal = is_refusal(response)
        span = find_alias(response, aliases, question)
        if refusal:
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
        return Judgement(correct=self._memo[key], refusal=False, span=span, judge=self.name)


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
