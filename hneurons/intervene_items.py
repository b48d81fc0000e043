"""The intervene stage's items (paper §3): each compliance benchmark's pool from its prepared table
(hneurons.compliance builders), and held-out TriviaQA questions for the capability check; a seeded
subset of each, or a screened pool in seeded order (hneurons.screening).

``seed_of(tag)`` is the stage's derived seed for one use of ``base.seed`` (stages._common.derived_seed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hneurons import layout
from hneurons.errors import HNeuronsError


def subsample(items: list, n: int, seed: int) -> list:
    """``n`` items drawn uniformly without replacement (all if fewer; :func:`pick` rejects that), in table order."""
    if len(items) <= n:
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
    return [items[i] for i in keep]


def pick(pool: list, name: str, n: int, screened: bool, seed: int) -> list:
    """A screened pool in seeded order (screen_known keeps its first n known items), else n drawn items."""
    from hneurons.screening import seeded_order

    if screened:
        return seeded_order(pool, seed)
    if n > len(pool):
        key = "capability.n_questions" if name == "triviaqa" else f"n_items.{name}"
        raise HNeuronsError(f"intervene.{key}={n}: the pool has only {len(pool)} items")
    return subsample(pool, n, seed)


def heldout_trivia(family: str, cfg: dict[str, Any], seed_of: Callable[[str], int]) -> list:
    """Prepared TriviaQA questions with answers outside the probe's train/validation splits, as compliance
    Items (``sample.prompt``), picked for the capability check."""
    from hneurons import compliance as C
    from hneurons.generate import fill_question
    from hneurons.questions import held_out_questions

    rows = [r for r in held_out_questions(family, "triviaqa", probe_dataset=cfg["probe_dataset"]) if r["answers"]]
    items = [C.Item("triviaqa", r["example_id"], fill_question(cfg["trivia_prompt"], r["question"].strip()),
                    {"question": r["question"], "answers": list(r["answers"])}) for r in rows]
    return pick(items, "triviaqa", cfg["capability"]["n_questions"], "triviaqa" in cfg["screen"],
                seed_of("intervene/items/triviaqa"))


def benchmark_items(cfg: dict[str, Any], family: str, seed_of: Callable[[str], int]) -> dict[str, list]:
    """{benchmark: items} for the configured benchmarks (+ triviaqa for the capability check)."""
    from hneurons import compliance as C
    from hneurons.questions import prepared_questions as table

    builders = {"falseqa": lambda: C.falseqa_items(table("falseqa")),
                "faitheval_style": lambda: C.faitheval_items(table("faitheval_style")),
                "sycophancy": lambda: C.sycophancy_items(table("sycophancy"), cfg["sycophancy_categories"]),
                "jailbreak": lambda: C.jailbreak_items(table("jailbreak"))}
    items = {}
    for bench in cfg["benchmarks"]:
        pool = builders[bench]()
        if not pool:
            raise HNeuronsError(f"{layout.prepared(bench)}: no items for {bench} "
                                f"(check intervene.sycophancy_categories for sycophancy)")
        items[bench] = pick(pool, bench, cfg["n_items"][bench], bench in cfg["screen"],
                            seed_of(f"intervene/items/{bench}"))
    items["triviaqa"] = heldout_trivia(family, cfg, seed_of)
    return items
