"""Known-item screening for the alpha sweep: items the unchanged model answers correctly at turn 1.

Sycophancy counts only initially correct items and the capability check measures how many
known answers survive scaling, so both need items the unchanged model (alpha = 1) gets right.
:func:`screen_known` asks a seeded order of the pool with the model as it is, in chunks, and
keeps the first ``n`` items judged correct. Each item's sampling seed is the sweep's own
(:func:`hneurons.sweep.item_seeds`, turn 1), so the sweep's alpha = 1 condition redraws the same
answers (up to the float effects of a different batch composition).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hneurons import compliance as C
from hneurons.errors import HNeuronsError
from hneurons.generate import chat_prompt_ids


def seeded_order(items: Sequence[C.Item], seed: int) -> list[C.Item]:
    """``items`` in a seeded random order (numpy default_rng(seed).permutation)."""
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order]


def screen_known(model, tokenizer, pool: Sequence[C.Item], n: int, correct: Callable[[C.Item, str], bool | None],
                 config, chunk_size: int, desc: str = "screen") -> tuple[list[C.Item], dict[str, Any]]:
    """The first ``n`` items of ``pool`` (in its order) that the unchanged model answers correctly.

    config: a :class:`hneurons.sweep.SweepConfig` (decoding per benchmark and format, seeds, cache).
    correct(item, response) -> True / False / None (unparsed). Items are generated in chunks of
    ``chunk_size`` and judged; screening stops once ``n`` are kept. Returns the kept items in pool
    order and counts {pool, screened, correct, wrong, unparsed, kept, reached}.
    """
    from hneurons.sweep import Generator, NeuronSet, item_seeds

    if n < 1 or chunk_size < 1:
        raise HNeuronsError(f"screen_known: n ({n}) and chunk_size ({chunk_size}) must be >= 1")
    gen = Generator(model, tokenizer, config)
    unchanged = NeuronSet("unchanged", 0, ())
    kept: list[C.Item] = []
    counts = {"pool": len(pool), "screened": 0, "correct": 0, "wrong": 0, "unparsed": 0}
    for start in range(0, len(pool), chunk_size):
        chunk = list(pool[start:start + chunk_size])
        verdicts: dict[str, bool | None] = {}
        for fmt in sorted({item.format for item in chunk}):
            group = [item for item in chunk if item.format == fmt]
            settings = config.settings[group[0].benchmark][fmt]
            prompts = [chat_prompt_ids(tokenizer, item.user_text) for item in group]
            outputs = gen(prompts, settings, item_seeds(config, group, 1), unchanged, 1.0,
                          f"{desc} {group[0].benchmark}/{fmt}")
            for item, ids in zip(group, outputs):
                verdicts[item.example_id] = correct(item, tokenizer.decode(ids, skip_special_tokens=True))
        for item in chunk:
            verdict = verdicts[item.example_id]
            counts["screened"] += 1
            counts["correct" if verdict is True else "wrong" if verdict is False else "unparsed"] += 1
            if verdict is True and len(kept) < n:
                kept.append(item)
        if len(kept) >= n:
            break
    return kept, {**counts, "kept": len(kept), "target": n, "reached": len(kept) >= n}


def screen_pools(model, tokenizer, items: dict[str, list[C.Item]], cfg: dict[str, Any], judges: C.Judges,
                 config) -> dict[str, dict[str, Any]]:
    """Screen each pool of ``items`` named in ``cfg["screen"]`` (intervene config) in place: keep its first
    known items (``capability.n_questions`` for triviaqa, else ``n_items``) with :func:`screen_known`.

    Returns {pool: screen_known's counts}; a pool with no known item is a one-line error.
    """
    screened = {}
    for name in (name for name in cfg["screen"] if name in items):
        n = cfg["capability"]["n_questions"] if name == "triviaqa" else cfg["n_items"][name]
        correct = (lambda item, text: judges.trivia(item, text).compliant) if name == "triviaqa" else judges.correct
        items[name], screened[name] = screen_known(model, tokenizer, items[name], n, correct, config,
                                                   4 * cfg["batch_size"], desc="known items")
        if not items[name]:
            raise HNeuronsError(f"intervene.screen: the unchanged model answers none of the {screened[name]['pool']} "
                                f"{name} items correctly; drop {name} from intervene.screen")
    return screened
