"""Prepared questions for the stages that ask the model (detect, intervene, origin).

``data/prepared/<dataset>.parquet`` holds every question of a dataset; the probe trained and
validated on the rows that ``data/samples/<family>/<probe dataset>.parquet`` puts in its
``train`` and ``validation`` splits, so a stage that tests the probe's neurons on new questions
asks only the others (:func:`held_out_questions`).
"""

from __future__ import annotations

from collections.abc import Sequence

from hneurons import layout
from hneurons.errors import HNeuronsError

PROBE_SPLITS = ("train", "validation")


def prepared_questions(dataset: str, columns: Sequence[str] | None = None) -> list[dict]:
    """Rows of ``data/prepared/<dataset>.parquet`` (``columns``; None = all), in table order."""
    from hneurons.io import read_table

    path = layout.prepared(dataset)
    if not path.is_file():
        raise HNeuronsError(f"{path}: not found; run prepare@{dataset}")
    return read_table(path, columns=None if columns is None else list(columns)).to_pylist()


def probe_question_ids(family: str, probe_dataset: str) -> set:
    """example_ids in the probe's train/validation splits (``data/samples/<family>/<probe_dataset>.parquet``)."""
    from hneurons.io import read_table

    samples = layout.samples(family, probe_dataset)
    if not samples.is_file():
        raise HNeuronsError(f"{samples}: not found (run sample@{family}); needed to hold out the probe's questions")
    used = read_table(samples, columns=["example_id", "split"]).to_pandas()
    return set(used.loc[used["split"].isin(list(PROBE_SPLITS)), "example_id"])


def held_out_questions(family: str, dataset: str, columns: Sequence[str] | None = None,
                       probe_dataset: str | None = None) -> list[dict]:
    """Prepared rows of ``dataset`` outside the probe's train/validation splits, in table order.

    The splits are those of ``data/samples/<family>/<probe_dataset>.parquet``; ``probe_dataset``
    defaults to ``dataset``. ``columns``: as :func:`prepared_questions` (must hold ``example_id``).
    """
    rows = prepared_questions(dataset, columns)
    taken = probe_question_ids(family, dataset if probe_dataset is None else probe_dataset)
    return [r for r in rows if r["example_id"] not in taken]
