"""Consistency sampling (paper §2): sample, judge, label, select a balanced set, split it.

:func:`run_consistency` samples every question ``n_samples`` times through a generation
backend (:func:`hneurons.generate.generate_cached`), judges each response, labels each
question consistently faithful / hallucinated / neither (:func:`consistency_label`), picks
a representative sample (:func:`representative_index`), selects a seeded balanced set
(:func:`select_balanced`) and splits it by question id (:func:`assign_splits`). The rows
come back as a :data:`SAMPLES_SCHEMA` table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from hneurons.answers import normalize
from hneurons.errors import HNeuronsError
from hneurons.generate import DecodingSettings, chat_prompt_ids, fill_question, generate_cached, sample_seed

PAPER_PROMPT = "{question} Respond with the answer only, without any explanation."
SAMPLES_SCHEMA = pa.schema([
    ("example_id", pa.string()), ("sample_index", pa.int32()), ("question", pa.string()),
    ("answers", pa.list_(pa.string())), ("prompt_ids", pa.list_(pa.int32())),
    ("response_ids", pa.list_(pa.int32())), ("finished", pa.bool_()), ("response", pa.string()),
    ("correct", pa.bool_()), ("refusal", pa.bool_()), ("judge", pa.string()),
    ("span_start", pa.int32()), ("span_end", pa.int32()), ("consistency", pa.int8()),
    ("label", pa.int8()), ("split", pa.string()), ("representative", pa.bool_()),
])


@dataclass(frozen=True)
class RunConfig:
    """Settings of one consistency-sampling run (see :func:`run_consistency`).

    prompt_template: the user turn, with ``{question}`` (paper: PAPER_PROMPT).
    early_stop_after: sample counts after which a question that can no longer be
    labelled stops being sampled (labels are unchanged by this; see
    :func:`still_labelable`); empty = every question gets n_samples at once.
    lazy_majority: complete the more plentiful class only until it matches the
    scarcer one (see :func:`run_consistency`); needs early_stop_after.
    min_agreement: see :func:`consistency_label`. max_per_class: cap of the balanced
    selection (None = as many as the smaller class). split_fractions: train /
    validation / test.
    """

    settings: DecodingSettings = field(default_factory=DecodingSettings)
    prompt_template: str = PAPER_PROMPT
    seed: int = 0
    batch_size: int = 80
    early_stop_after: tuple[int, ...] = ()
    lazy_majority: bool = False
    min_agreement: float = 1.0
    max_per_class: int | None = None
    split_fractions: dict[str, float] = field(
        default_factory=lambda: {"train": 0.6, "validation": 0.2, "test": 0.2})

    def validate(self, where: str = "sample") -> RunConfig:
        """Return self, or raise a one-line HNeuronsError naming ``<where>.<key>``."""
        self.settings.validate(where)
        if not isinstance(self.prompt_template, str) or "{question}" not in self.prompt_template:
            raise HNeuronsError(f"{where}.prompt={self.prompt_template!r}: must contain {{question}}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise HNeuronsError(f"{where}.batch_size={self.batch_size!r}: expected an integer >= 1")
        if any(not isinstance(c, int) or c < 1 for c in self.early_stop_after):
            raise HNeuronsError(f"{where}.early_stop_after={list(self.early_stop_after)!r}: expected integers >= 1")
        if not isinstance(self.lazy_majority, bool):
            raise HNeuronsError(f"{where}.lazy_majority={self.lazy_majority!r}: expected true or false")
        check_min_agreement(self.min_agreement, f"{where}.min_agreement")
        if self.max_per_class is not None and (not isinstance(self.max_per_class, int) or self.max_per_class < 1):
            raise HNeuronsError(f"{where}.max_per_class={self.max_per_class!r}: expected an integer >= 1 or null")
        fractions = self.split_fractions
        if (not isinstance(fractions, dict) or sorted(fractions) != ["test", "train", "validation"]
                or any(not isinstance(v, (int, float)) or v < 0 for v in fractions.values())
                or abs(sum(fractions.values()) - 1) > 1e-6 or fractions["train"] <= 0):
            raise HNeuronsError(f"{where}.splits={fractions!r}: expected train/validation/test fractions "
                                f"summing to 1, train > 0")
        return self

    def checkpoints(self) -> list[int]:
        """Sample counts at which rounds end: early stops below n_samples, then n_samples."""
        n = self.settings.n_samples
        return sorted({c for c in self.early_stop_after if c < n}) + [n]

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["early_stop_after"] = list(self.early_stop_after)
        return out


@dataclass
class ConsistencyResult:
    """table: SAMPLES_SCHEMA rows sorted by (question order, sample_index); counts/metrics: JSON-able."""

    table: pa.Table
    counts: dict[str, Any]
    metrics: dict[str, Any]


@dataclass
class _Question:
    example_id: str
    question: str
    answers: list[str]
    prompt: list[int]
    responses: list[list[int]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    verdicts: list[Any] = field(default_factory=list)

    def reachable(self, config: RunConfig) -> frozenset[int]:
        return reachable_labels([v.correct for v in self.verdicts], [v.refusal for v in self.verdicts],
                                  config.settings.n_samples, config.min_agreement)

    def label(self, config: RunConfig) -> int:
        if len(self.verdicts) < config.settings.n_samples:
            return UNLABELLED
        return consistency_label([v.correct for v in self.verdicts], [v.refusal for v in self.verdicts],
                                   config.min_agreement)


class _Sampler:
    """Draws, decodes and judges samples of questions in rounds (state lives in the _Question items)."""

    def __init__(self, backend, tokenizer, config: RunConfig, judge, cache_dir, cache_salt: str, progress: bool):
        self.backend, self.tokenizer, self.config, self.judge = backend, tokenizer, config, judge
        self.cache_dir, self.cache_salt, self.progress = cache_dir, cache_salt, progress
        self.calls = 0

    def draw(self, items: list[_Question], stop: int) -> None:
        """Bring every item to ``stop`` samples (in place)."""
        rows = [(item, index) for item in items for index in range(len(item.responses), stop)]
        if not rows:
            return
        self.calls += 1
        prompts = [item.prompt for item, _ in rows]
        seeds = [sample_seed(self.config.seed, item.example_id, index) for item, index in rows]
        outputs = generate_cached(self.backend, prompts, self.config.settings, seeds,
                                  self.config.batch_size, self.cache_dir, salt=self.cache_salt,
                                  progress=self.progress, desc=f"sampling (pass {self.calls}, to {stop})")
        for (item, _), ids in zip(rows, outputs):
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            item.responses.append(ids)
            item.texts.append(text)
            item.verdicts.append(self.judge.judge(item.question, text, item.answers))

    def complete(self, items: list[_Question]) -> None:
        """Sample items to n_samples, dropping those that can no longer be labelled at each checkpoint."""
        for stop in self.config.checkpoints():
            self.draw([item for item in items if len(item.responses) < stop and item.reachable(self.config)], stop)


def _lazy_class(items: list[_Question]) -> int:
    """The class to complete lazily, decided after the first round: the one most first samples
    point to (wrong -> hallucinated, correct -> faithful; refusals count as neither)."""
    n_correct = sum(bool(item.verdicts and item.verdicts[0].correct) for item in items)
    n_wrong = sum(bool(item.verdicts and not item.verdicts[0].correct and not item.verdicts[0].refusal)
                  for item in items)
    return HALLUCINATED if n_wrong >= n_correct else FAITHFUL


def _split_pool(items: list[_Question], config: RunConfig, lazy: int) -> tuple[list[_Question], list[_Question]]:
    """(eager, pool): still-labelable items that can reach another class than ``lazy``, and those
    that can *only* reach ``lazy`` (they wait in the lazy pool)."""
    eager, pool = [], []
    for item in items:
        reachable = item.reachable(config)
        if reachable == {lazy}:
            pool.append(item)
        elif reachable:
            eager.append(item)
    return eager, pool


def run_consistency(backend, tokenizer, example_ids: Sequence[str], questions: Sequence[str],
                    answers: Sequence[Sequence[str]], config: RunConfig, judge, cache_dir: str | Path | None = None,
                    cache_salt: str = "", progress: bool = False) -> ConsistencyResult:
    """Sample every question, judge, label, pick representatives, select a balanced set and split it.

    Paper §2: consistently correct (label 0) / consistently wrong without refusals
    (label 1); the representative is the most frequent normalized answer; a
    balanced seeded selection is split by question id. ``backend``: a generation
    backend (:mod:`hneurons.backends`); ``tokenizer`` builds the prompts and decodes.
    ``judge``: an object with ``name`` and ``judge(question, response, aliases) -> Judgement``.

    Sampling runs in rounds (``config.checkpoints()``); after each, questions that
    can no longer be labelled are not sampled further (fewer rows; same labels).
    With ``lazy_majority``, the questions that can only reach the more plentiful
    class (the lazy pool) wait: every other question is
    completed, then lazy-pool questions are completed in a seeded random order
    until that class has as many labelled questions as the scarcer one (capped by
    max_per_class). Since the balanced selection keeps a uniform random subset of
    the plentiful class anyway, the selected set has the same distribution as with
    full sampling, at a fraction of the cost; lazy-pool questions left waiting keep
    the samples they had and label -1. The pool is re-read at every checkpoint: with
    min_agreement < 1 one sample rules no class out, so questions join it when a
    later checkpoint leaves them only the lazy class. Deviation from the paper: its
    per-class yield is then only observed for the completed questions (see metrics).
    """
    config.validate()
    if not example_ids:
        raise HNeuronsError("sample: the question list is empty")
    if len(set(example_ids)) != len(example_ids):
        raise HNeuronsError("sample: duplicate example_id in the question list")
    items = [_Question(str(i), q, [str(a) for a in ans], chat_prompt_ids(
        tokenizer, fill_question(config.prompt_template, q.strip())))
        for i, q, ans in zip(example_ids, questions, answers)]
    sampler = _Sampler(backend, tokenizer, config, judge, cache_dir, cache_salt, progress)
    selection_seed = sample_seed(config.seed, "sample.select", 0)
    lazy_info: dict[str, Any] = {}
    if config.lazy_majority and len(config.checkpoints()) > 1:
        checkpoints = config.checkpoints()
        sampler.draw(items, checkpoints[0])
        lazy = _lazy_class(items)
        eager, pool = _split_pool(items, config, lazy)
        for stop in checkpoints[1:]:               # the pool is re-read at every checkpoint but the last
            sampler.draw([item for item in eager if len(item.responses) < stop], stop)
            if stop < config.settings.n_samples:
                eager, more = _split_pool(eager, config, lazy)
                pool += more
        scarce = sum(item.label(config) == 1 - lazy for item in items)
        target = scarce if config.max_per_class is None else min(scarce, config.max_per_class)
        order = [pool[i] for i in torch.randperm(len(pool), generator=torch.Generator().manual_seed(
            selection_seed)).tolist()]
        done, rows_per_item = 0, config.settings.n_samples - checkpoints[0]
        while done < len(order) and sum(item.label(config) == lazy for item in items) < target:
            missing = target - sum(item.label(config) == lazy for item in items)
            chunk = order[done:done + max(missing, -(-config.batch_size // rows_per_item))]
            sampler.complete(chunk)
            done += len(chunk)
        lazy_info = {"class": {0: "faithful", 1: "hallucinated"}[lazy], "pool": len(pool), "completed": done,
                     "found_in_pool": sum(item.label(config) == lazy for item in order[:done])}
    else:
        sampler.complete(items)
    consistency = [item.label(config) for item in items]
    selected = select_balanced(consistency, config.max_per_class, selection_seed)
    splits = assign_splits([item.example_id for item in items], consistency, selected,
                             config.split_fractions, selection_seed)
    representatives = [representative_index(item.texts, [v.correct for v in item.verdicts], label)
                       if sel else None for item, label, sel in zip(items, consistency, selected)]
    table = _samples_table(items, consistency, selected, splits, representatives, config)
    counts = _counts(items, consistency, selected, splits)
    metrics = _metrics(items, consistency, selected, representatives, config, judge.name, counts, lazy_info)
    return ConsistencyResult(table, counts, metrics)


def _samples_table(items, consistency, selected, splits, representatives, config: RunConfig) -> pa.Table:
    columns: dict[str, list] = {name: [] for name in SAMPLES_SCHEMA.names}
    for item, cons, sel, split, rep in zip(items, consistency, selected, splits, representatives):
        for index, (ids, text, verdict) in enumerate(zip(item.responses, item.texts, item.verdicts)):
            span = verdict.span or (-1, -1)
            values = {
                "example_id": item.example_id, "sample_index": index, "question": item.question,
                "answers": item.answers, "prompt_ids": item.prompt, "response_ids": ids,
                "finished": len(ids) < config.settings.max_new_tokens, "response": text,
                "correct": bool(verdict.correct), "refusal": bool(verdict.refusal), "judge": verdict.judge,
                "span_start": span[0], "span_end": span[1], "consistency": cons,
                "label": cons if sel else -1, "split": split, "representative": rep == index,
            }
            for name, value in values.items():
                columns[name].append(value)
    return pa.Table.from_pydict(columns, schema=SAMPLES_SCHEMA)


def _counts(items, consistency, selected, splits) -> dict[str, Any]:
    return {
        "questions": len(items), "rows": sum(len(item.responses) for item in items),
        "consistent": {"faithful": consistency.count(0), "hallucinated": consistency.count(1)},
        "selected_per_class": sum(selected) // 2,
        "splits": {name: splits.count(name) for name in ("train", "validation", "test")},
    }


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _metrics(items, consistency, selected, representatives, config: RunConfig, judge_name: str,
             counts: dict[str, Any], lazy_info: dict[str, Any]) -> dict[str, Any]:
    """Yield, refusal rate, per-sample accuracy, truncation and response lengths per class.

    Rates over all drawn samples are biased by early stopping; ``first_round`` rates
    use the samples every question has (sample_index < first checkpoint).
    """
    verdicts = [v for item in items for v in item.verdicts]
    lengths = [len(ids) for item in items for ids in item.responses]
    first = config.checkpoints()[0]
    first_round = [v for item in items for v in item.verdicts[:first]]
    classes = {"faithful": 0, "hallucinated": 1}
    rep_tokens, sample_tokens = {}, {}
    for name, cls in classes.items():
        rep_tokens[name] = _mean([len(item.responses[rep]) for item, rep, sel, c in
                                  zip(items, representatives, selected, consistency) if sel and c == cls])
        sample_tokens[name] = _mean([len(ids) for item, c in zip(items, consistency) if c == cls
                                     for ids in item.responses])
    yields = {name: round(consistency.count(cls) / len(items), 4) for name, cls in classes.items()}
    if lazy_info and lazy_info["completed"]:
        # the lazy class was only observed on the completed part of its pool: extrapolate
        name = lazy_info["class"]
        outside = consistency.count(classes[name]) - lazy_info["found_in_pool"]
        estimate = outside + lazy_info["found_in_pool"] * lazy_info["pool"] / lazy_info["completed"]
        yields[name] = round(estimate / len(items), 4)
        lazy_info = dict(lazy_info, yield_is_estimate=True)
    return {
        "judge": judge_name,
        "questions_seen": len(items),
        "samples_drawn": len(verdicts),
        "questions_stopped_early": sum(len(item.responses) < config.settings.n_samples for item in items),
        "consistent": counts["consistent"],
        "yield": yields,
        "lazy_majority": lazy_info or None,
        "selected_per_class": counts["selected_per_class"],
        "splits": counts["splits"],
        "refusal_rate": round(sum(v.refusal for v in verdicts) / len(verdicts), 4),
        "first_round": {"samples": len(first_round),
                        "accuracy": round(sum(v.correct for v in first_round) / len(first_round), 4),
                        "refusal_rate": round(sum(v.refusal for v in first_round) / len(first_round), 4)},
        "truncated_rate": round(sum(n >= config.settings.max_new_tokens for n in lengths) / len(lengths), 4),
        "mean_response_tokens": {"all_samples": _mean(lengths), "consistent_samples": sample_tokens,
                                 "selected_representatives": rep_tokens},
    }


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
