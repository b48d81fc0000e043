"""What the extract stage reads from a samples file: the representative rows of the selected
questions, and the check that both classes survive answer-span alignment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from hneurons import spans
from hneurons.errors import HNeuronsError
from hneurons.io import read_schema, read_table

SAMPLE_COLUMNS = ("example_id", "question", "answers", "prompt_ids", "response_ids", "correct", "label", "split",
                  "representative")
CLASS_NAMES = {0: "faithful", 1: "hallucinated"}


def read_samples(path: Path) -> list[dict[str, Any]]:
    """The representative, selected (label >= 0) sample rows as records."""
    if not path.is_file():
        raise HNeuronsError(f"{path}: samples not found (run the sample stage)")
    names = read_schema(path).names
    missing = [c for c in SAMPLE_COLUMNS if c not in names]
    if missing:
        raise HNeuronsError(f"{path}: missing column(s) {', '.join(missing)}")
    table = read_table(path, columns=list(SAMPLE_COLUMNS))
    selected = pc.and_(pc.fill_null(table["representative"], False), pc.greater_equal(table["label"], 0))
    return table.filter(pc.fill_null(selected, False)).to_pylist()


def check_classes(examples: list[spans.SpanExample], where: str, dropped: dict) -> None:
    """Stop if a class has no example left after alignment."""
    for label, name in CLASS_NAMES.items():
        if not any(e.label == label for e in examples):
            lost = {k: v for k, v in dropped.items() if k.endswith(f"label={label}")}
            raise HNeuronsError(f"{where}: no {name} (label {label}) examples left after span alignment "
                                f"(dropped: {lost or 'none; the samples hold none'})")
