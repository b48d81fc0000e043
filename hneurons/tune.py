"""The instruction set that tunes a base model into its instruct twin (paper §4 needs a
base/instruct pair; none with a matched base ships on PyPI). Training on it:
:mod:`hneurons.tune_train`; the behaviour check of the result: :mod:`hneurons.tune_check`.

Instruction set (seeded, documented, disjoint from every evaluation question):

==========  ======================================================================
kind        source -> (user prompt, model response)
==========  ======================================================================
trivia      NQ-Open dev rows reserved for tuning (the caller passes them; params
            state the range) -> the question -> the first gold answer.
premise     FalseQA **train** rows with label 1 (false premise) -> the question ->
            the reference rebuttal.
refusal     AdvBench ``harmful_behaviors`` goals (not the 390 forbidden questions
            of the jailbreak evaluation) -> the goal -> one of REFUSALS.
abstain     Questions about made-up entities from :func:`made_up_entities` (a
            seeded pseudo-word generator of its own: different entity kinds,
            question templates and syllables from the NonExist set) -> one of
            ABSTENTIONS, each of which the refusal detector recognises.
==========  ======================================================================

Every prompt but a harmful request gets a seeded surface form (capitalized with
"?" or lower-case without; :func:`surface_form`), and any prompt, with seeded
probability ``suffix_share``, the paper's sampling suffix " Respond with the
answer only, without any explanation." (used by the sample stage), so neither
formatting nor the suffix tells the twin which behaviour is wanted.

Every candidate whose normalized question equals a question of an evaluation
set is dropped (``excluded``), and made-up names share no word with the
evaluation texts (NonExist entities included). Each kind is shuffled with the
seed; the first min(``n_check``, ``check_before_train``) items are held out for
the behaviour check, the next ``n_train`` are trained on, and the check takes the
rest of its ``n_check`` items from after the training block (see
:func:`build_instruction_set`).
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hneurons import layout
from hneurons.answers import normalize
from hneurons.errors import HNeuronsError
from hneurons.io import read_table

KINDS = ("trivia", "premise", "refusal", "abstain")
SAMPLING_SUFFIX = " Respond with the answer only, without any explanation."
REFUSALS = (
    "I can't help with that.",
    "I can't help with that request, because it could cause real harm.",
    "Sorry, I cannot assist with this. It could hurt people.",
    "I won't help with that. I can't provide instructions that could be used to cause harm.",
)
ABSTENTIONS = (
    "I don't know of any {kind} called {name}; I have no information about it.",
    "I'm not aware of a {kind} named {name}, so I can't answer that.",
    "I have no record of a {kind} called {name}. It may not exist.",
    "I don't know. I have no information about a {kind} named {name}.",
)
# Made-up entity kinds and question templates (NonExist uses medicine/animal/plant/bacteria).
ENTITY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "novel": ("Who wrote the novel {name}?", "In which year was the novel {name} first published?",
              "What is the novel {name} about?"),
    "town": ("In which country is the town of {name}?", "What is the population of the town of {name}?",
             "Which river flows through the town of {name}?"),
    "composer": ("Which opera did the composer {name} write?", "Where was the composer {name} born?",
                 "When did the composer {name} die?"),
    "company": ("What does the company {name} manufacture?", "Where is the company {name} headquartered?",
                "Who founded the company {name}?"),
    "mountain": ("How high is the mountain {name}?", "Who first climbed the mountain {name}?",
                 "In which range is the mountain {name}?"),
    "painting": ("Who painted {name}?", "In which museum does the painting {name} hang?",
                 "When was the painting {name} completed?"),
}
_ONSETS = ("k", "v", "z", "m", "l", "r", "t", "sh", "kr", "vl", "zh", "n", "h", "j", "w", "y")
_NUCLEI = ("a", "e", "o", "u", "ei", "ou", "ay")
_CODAS = ("", "", "n", "k", "sh", "rd", "lt", "m")


@dataclass(frozen=True)
class Example:
    """One instruction pair: ``kind`` in KINDS, ``split`` 'train' or 'check'; ``answers`` are
    the gold aliases for trivia (empty otherwise)."""

    kind: str
    source_id: str
    prompt: str
    response: str
    answers: tuple[str, ...]
    split: str


# ------------------------------------------------------------------ instruction set

def pseudo_word(rng: random.Random, syllables: int) -> str:
    """A pronounceable made-up word of ``syllables`` onset+nucleus(+coda) syllables, capitalized."""
    parts = [rng.choice(_ONSETS) + rng.choice(_NUCLEI) + (rng.choice(_CODAS) if i == syllables - 1 else "")
             for i in range(syllables)]
    return "".join(parts).capitalize()


def _made_up_name(kind: str, rng: random.Random) -> str:
    if kind == "composer":
        return f"{pseudo_word(rng, 2)} {pseudo_word(rng, rng.choice((2, 3)))}"
    if kind in ("novel", "painting"):
        article = rng.choice(("The", "A"))
        return f"{article} {pseudo_word(rng, 2)} of {pseudo_word(rng, rng.choice((2, 3)))}"
    if kind == "mountain":
        return f"Mount {pseudo_word(rng, rng.choice((2, 3)))}"
    if kind == "company":
        return f"{pseudo_word(rng, rng.choice((2, 3)))} {rng.choice(('Industries', 'Systems', 'Works'))}"
    return pseudo_word(rng, rng.choice((2, 3)))


def made_up_entities(n: int, seed: int, forbidden_words: Iterable[str]) -> list[tuple[str, str, str]]:
    """``n`` distinct (kind, name, question) triples about entities made up here.

    No made-up word (lowercased) may be in ``forbidden_words`` (e.g. every word of
    the evaluation questions and NonExist entities); names are unique.
    """
    forbidden = {w.lower() for w in forbidden_words}
    fixed = {"the", "a", "of", "mount", "industries", "systems", "works"}
    rng = random.Random(seed)
    kinds = sorted(ENTITY_TEMPLATES)
    out, names = [], set()
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise HNeuronsError(f"could not make {n} distinct made-up entities")
        kind = kinds[len(out) % len(kinds)]
        name = _made_up_name(kind, rng)
        words = {w.lower() for w in name.split()} - fixed
        if name in names or words & forbidden:
            continue
        names.add(name)
        template = rng.choice(ENTITY_TEMPLATES[kind])
        out.append((kind, name, template.format(name=name)))
    return out


def text_words(texts: Iterable[str]) -> set[str]:
    """Lowercase alphabetic words of ``texts`` (for the made-up-name overlap check)."""
    words: set[str] = set()
    for text in texts:
        words.update(re.findall(r"[a-z]+", text.lower()))
    return words


def surface_form(text: str, rng: random.Random) -> str:
    """A seeded surface variant of a prompt, so casing and a final "?" carry no label.

    With probability 1/2: first letter upper-cased and, for a question without
    terminal punctuation, "?" appended (the FalseQA / made-up-entity style);
    otherwise: first letter lower-cased and a final "?" dropped (the NQ-Open
    style). Without this, a twin tuned on lower-case NQ trivia and well-formed
    abstention questions learned to abstain on every well-formed question.
    """
    core = text.strip()
    bare = core[:-1].rstrip() if core.endswith("?") else core
    if rng.random() < 0.5:
        return bare[:1].upper() + bare[1:] + ("" if bare[-1:] in ".!" else "?")
    return bare[:1].lower() + bare[1:]


def _candidates(trivia: Sequence[dict], premise: Sequence[dict], harmful: Sequence[dict],
                seed: int, suffix_share: float, n_abstain: int,
                forbidden_words: set[str]) -> dict[str, list[tuple[str, str, str, tuple[str, ...]]]]:
    """(source_id, prompt, response, answers) candidates per kind, before exclusion and selection.

    Every question prompt gets a :func:`surface_form` and, with probability
    ``suffix_share``, the sampling suffix (all kinds alike, so neither is a cue).
    """
    rng = random.Random(seed)

    def prompt_of(question: str, is_question: bool = True) -> str:
        form = surface_form(question, rng) if is_question else question
        return form + (SAMPLING_SUFFIX if rng.random() < suffix_share else "")

    out: dict[str, list[tuple[str, str, str, tuple[str, ...]]]] = {}
    out["trivia"] = []
    for row in trivia:
        answers = tuple(a for a in row["answers"] if a and a.strip())
        if answers:
            out["trivia"].append((row["example_id"], prompt_of(row["question"]), answers[0].strip(), answers))
    out["premise"] = [(r["example_id"], prompt_of(r["question"]), r["answers"][0].strip(), ())
                      for r in premise if int(r.get("label", 1)) == 1 and r.get("split", "train") == "train"
                      and len(r["answers"]) and r["answers"][0].strip()]
    out["refusal"] = [(r["example_id"], prompt_of(r["question"], is_question=False), rng.choice(REFUSALS), ())
                      for r in harmful]
    out["abstain"] = []
    for index, (kind, name, question) in enumerate(made_up_entities(n_abstain, seed, forbidden_words)):
        response = rng.choice(ABSTENTIONS).format(kind=kind, name=name)
        out["abstain"].append((f"madeup_{index:04d}", prompt_of(question), response, ()))
    return out


def check_counts(n_check: int | dict[str, int], where: str = "tune.n_check") -> dict[str, int]:
    """Held-out check items per kind from one count or a mapping kind -> count (exactly the KINDS)."""
    if isinstance(n_check, dict):
        unknown = sorted(set(n_check) - set(KINDS))
        if unknown:
            raise HNeuronsError(f"{where}.{unknown[0]}: unknown kind (expected {', '.join(KINDS)})")
        missing = [kind for kind in KINDS if kind not in n_check]
        if missing:
            raise HNeuronsError(f"{where}: missing {', '.join(missing)} (expected keys {', '.join(KINDS)})")
        counts = dict(n_check)
    else:
        counts = {kind: n_check for kind in KINDS}
    for kind, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            suffix = f".{kind}" if isinstance(n_check, dict) else ""
            raise HNeuronsError(f"{where}{suffix}={value!r}: expected an integer >= 0")
    return counts


def build_instruction_set(trivia: Sequence[dict], premise: Sequence[dict], harmful: Sequence[dict],
                          eval_questions: Iterable[str], eval_texts: Iterable[str], sizes: dict[str, int],
                          n_check: int | dict[str, int], seed: int, suffix_share: float = 0.5,
                          check_before_train: int | None = None) -> tuple[list[Example], dict]:
    """The instruction set and a summary of how it was built.

    trivia / premise / harmful: prepared-schema records (``example_id``, ``question``,
    ``answers``; premise also ``split`` and ``label``) from the tuning sources.
    eval_questions: every evaluation question (dropped from the candidates by
    normalized equality). eval_texts: evaluation texts whose words made-up names
    must avoid. sizes: training items per kind (keys = KINDS). n_check: held-out
    check items per kind (one count or a mapping kind -> count).

    Layout of each kind's shuffled candidates: the first h = min(n_check,
    ``check_before_train``) are held out (h = n_check when check_before_train is
    None), the next ``sizes[kind]`` are trained on, and when n_check > h the check
    takes the rest from after the training block (skipping a question equal, after
    normalization, to one already taken). Once n_check >= check_before_train, the
    training rows no longer depend on n_check. Made-up entities are generated on demand: the first h + sizes.abstain
    are shuffled as the pool, the extra check entities follow in generation order.
    A pool that cannot give n_check keeps what it has; the summary says so
    (``check_short``). Returns (examples ordered by kind, check then train;
    summary per kind).
    """
    missing = [kind for kind in KINDS if kind not in sizes]
    if missing:
        raise HNeuronsError(f"sizes: missing {', '.join(missing)} (expected keys {', '.join(KINDS)})")
    counts = check_counts(n_check)
    ahead = {kind: counts[kind] if check_before_train is None else min(counts[kind], int(check_before_train))
             for kind in KINDS}
    excluded_questions = {normalize(q) for q in eval_questions}
    forbidden = text_words(eval_texts)
    n_abstain = ahead["abstain"] + int(sizes["abstain"])
    candidates = _candidates(trivia, premise, harmful, seed, suffix_share,
                             n_abstain + max(0, counts["abstain"] - ahead["abstain"]), forbidden)
    examples: list[Example] = []
    summary: dict[str, Any] = {}
    for offset, kind in enumerate(KINDS):
        pool = candidates[kind]
        block = n_abstain if kind == "abstain" else len(pool)
        kept = [c for c in pool[:block] if normalize(question_of(c[1])) not in excluded_questions]
        random.Random(seed + 7919 * (offset + 1)).shuffle(kept)
        kept += [c for c in pool[block:] if normalize(question_of(c[1])) not in excluded_questions]
        n_ahead, n_train, wanted = ahead[kind], int(sizes[kind]), counts[kind]
        need = n_ahead + n_train
        if len(kept) < need:
            raise HNeuronsError(f"tune.sizes.{kind}={sizes[kind]}: only {len(kept)} candidates left after "
                                f"excluding evaluation questions; need {need} (with {n_ahead} held out)")
        train = kept[n_ahead:need]
        check = kept[:n_ahead]
        seen = {normalize(question_of(c[1])) for c in train + check}
        duplicates = 0
        for candidate in kept[need:]:
            if len(check) >= wanted:
                break
            key = normalize(question_of(candidate[1]))
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            check.append(candidate)
        for split, chosen in (("check", check), ("train", train)):
            examples += [Example(kind, source_id, prompt, response, answers, split)
                         for source_id, prompt, response, answers in chosen]
        entry = {"candidates": len(pool), "excluded": len(pool) - len(kept), "train": n_train,
                 "check": len(check), "check_requested": wanted, "check_before_train": n_ahead,
                 "check_after_train": len(check) - n_ahead}
        if duplicates:
            entry["check_duplicates_skipped"] = duplicates
        if len(check) < wanted:
            entry["check_short"] = (f"{len(kept)} candidates after exclusion: {n_ahead} held out before and "
                                    f"{n_train} trained on leave {len(kept) - need}"
                                    + (f" ({duplicates} repeating a question already taken)" if duplicates else "")
                                    + f"; {len(check)} of {wanted} held out without cutting training")
        summary[kind] = entry
    return examples, summary


def question_of(prompt: str) -> str:
    """A prompt without the sampling suffix (the question as asked)."""
    return prompt[: -len(SAMPLING_SUFFIX)] if prompt.endswith(SAMPLING_SUFFIX) else prompt


def examples_frame(examples: Sequence[Example]):
    """pandas frame of the instruction set (one row per example, Example's fields)."""
    import pandas as pd

    rows = [{**asdict(e), "answers": list(e.answers)} for e in examples]
    return pd.DataFrame(rows, columns=["kind", "source_id", "prompt", "response", "answers", "split"])


# ------------------------------------------------------------------ sources (prepared tables, AdvBench)

def read_prepared(name: str) -> list[dict]:
    """Rows of data/prepared/<name>.parquet as dicts."""
    path = layout.prepared(name)
    if not path.is_file():
        raise HNeuronsError(f"{path}: not found; run prepare@{name}")
    return read_table(path).to_pylist()


def harmful_requests(path: Path) -> list[dict]:
    """AdvBench harmful_behaviors.csv (column ``goal``) as prepared-style records."""
    if not path.is_file():
        raise HNeuronsError(f"tune.harmful: {path} not found")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "goal" not in rows[0]:
        raise HNeuronsError(f"tune.harmful: {path} has no 'goal' column")
    return [{"example_id": f"advbench_{i:03d}", "question": r["goal"], "answers": []} for i, r in enumerate(rows)]


def instruction_sources(cfg: dict[str, Any]) -> tuple[list[dict], list[dict], list[dict], list[str], list[str]]:
    """(trivia, premise, harmful, eval_questions, eval_texts) for :func:`build_instruction_set`.

    cfg: the tune stage's config (``trivia_dataset``, ``trivia_rows`` [start, stop],
    ``premise_dataset``, ``eval_datasets``, ``harmful`` path). Evaluation questions
    are every row of every ``eval_datasets`` table except the rows the instruction
    set itself takes (by table and row), so a tuning row never excludes itself
    while any other use of its question does.
    """
    tables = {name: read_prepared(name) for name in sorted(set(cfg["eval_datasets"])
                                                       | {cfg["trivia_dataset"], cfg["premise_dataset"]})}
    start, stop = cfg["trivia_rows"]
    trivia_table = tables[cfg["trivia_dataset"]]
    if stop > len(trivia_table):
        raise HNeuronsError(f"tune.trivia.rows={cfg['trivia_rows']}: data/prepared/"
                            f"{cfg['trivia_dataset']}.parquet has {len(trivia_table)} rows")
    trivia = [{**row, "example_id": f"{cfg['trivia_dataset']}_row{start + i}"}
              for i, row in enumerate(trivia_table[start:stop])]
    premise = [r for r in tables[cfg["premise_dataset"]] if r.get("split") == "train" and r.get("label") == 1]
    taken = {(cfg["trivia_dataset"], i) for i in range(start, stop)}
    taken |= {(cfg["premise_dataset"], i) for i, r in enumerate(tables[cfg["premise_dataset"]])
              if r.get("split") == "train" and r.get("label") == 1}
    questions, texts = [], []
    for name in cfg["eval_datasets"]:
        for index, row in enumerate(tables[name]):
            texts.append(row["question"])
            texts.extend(row.get("answers") or [])
            if row.get("entity"):
                texts.append(row["entity"])
            if (name, index) not in taken:
                questions.append(row["question"])
    return trivia, premise, harmful_requests(cfg["harmful"]), questions, texts


def check_sources(cfg: dict[str, Any], built: dict[str, dict]) -> dict[str, dict]:
    """Per kind: the source of its check items (dataset and rows / split / file) and the check counts."""
    start, stop = cfg["trivia_rows"]
    sources = {
        "trivia": {"dataset": cfg["trivia_dataset"], "rows": [start, stop]},
        "premise": {"dataset": cfg["premise_dataset"], "split": "train", "label": 1},
        "refusal": {"dataset": "advbench", "file": str(cfg["harmful"])},
        "abstain": {"dataset": "generated", "generator": "hneurons.tune.made_up_entities"},
    }
    for kind, entry in sources.items():
        entry["n_requested"] = built[kind]["check_requested"]
        if "check_short" in built[kind]:
            entry["short"] = built[kind]["check_short"]
    return sources
