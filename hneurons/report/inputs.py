"""Where one family's artifacts are (:class:`FamilyPaths`) and how the report reads them (:class:`Inputs`).

:class:`Inputs` records the provenance of every file it reads; a malformed file or
missing key is a one-line :class:`~hneurons.errors.HNeuronsError` naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hneurons import layout
from hneurons.errors import HNeuronsError
from hneurons.report.sources import provenance, source_line


@dataclass(frozen=True)
class FamilyPaths:
    """Repo-relative paths of one family's artifacts (decided by the stage; any may be absent).

    probe_*: ``probe@<family>``; detect_*: ``detect@<family>``; intervene_*:
    ``intervene@<family>``; origin_*: ``origin@<family>``; sample_metrics:
    ``sample@<family>``; tune_metrics: ``tune@<family>`` (a CPU-tuned instruct twin).
    """

    family: str
    sample_metrics: str
    probe_metrics: str
    probe_c_grid: str
    probe_per_layer: str
    detect_metrics: str
    detect_table1: str
    intervene_metrics: str
    intervene_compliance: str
    origin_metrics: str
    origin_transfer: str
    origin_strip: str
    tune_metrics: str = ""
    intervene_effects: str = ""
    intervene_effect_slopes: str = ""

    @classmethod
    def of(cls, family: str) -> FamilyPaths:
        """Where the stages write ``family``'s artifacts (:mod:`hneurons.layout`)."""
        def report(stage: str, name: str) -> str:
            return (layout.report_dir(stage, family) / name).as_posix()

        return cls(
            family=family, sample_metrics=report("sample", layout.METRICS),
            probe_metrics=report("probe", layout.METRICS), probe_c_grid=report("probe", layout.PROBE_C_GRID),
            probe_per_layer=report("probe", layout.PROBE_PER_LAYER),
            detect_metrics=report("detect", layout.METRICS),
            detect_table1=report("detect", layout.DETECT_TABLE1_CSV),
            intervene_metrics=report("intervene", layout.METRICS),
            intervene_compliance=report("intervene", layout.INTERVENE_COMPLIANCE_CSV),
            intervene_effects=report("intervene", layout.INTERVENE_EFFECTS),
            intervene_effect_slopes=report("intervene", layout.INTERVENE_SLOPES),
            origin_metrics=layout.origin_metrics(family).as_posix(),
            origin_transfer=report("origin", layout.ORIGIN_TRANSFER),
            origin_strip=report("origin", layout.ORIGIN_STRIP),
            tune_metrics=report("tune", layout.METRICS))


class Inputs:
    """Reads artifacts under ``root`` and records the provenance of each one read."""

    def __init__(self, root: Path, lock: Mapping[str, Any] | None) -> None:
        self.root = root
        self.lock = lock
        self.read: dict[str, dict[str, Any]] = {}

    def exists(self, path: str) -> bool:
        return (self.root / path).is_file()

    def _note(self, path: str) -> dict[str, Any]:
        if path not in self.read:
            self.read[path] = provenance(path, self.root, self.lock)
        return self.read[path]

    def json(self, path: str) -> dict[str, Any]:
        """A JSON object artifact (one-line error naming the file if unreadable)."""
        try:
            data = json.loads((self.root / path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HNeuronsError(f"{path}: not readable as JSON ({exc})") from None
        if not isinstance(data, dict):
            raise HNeuronsError(f"{path}: expected a JSON object")
        self._note(path)
        return data

    def csv(self, path: str, columns: Sequence[str]) -> pd.DataFrame:
        """A CSV artifact with at least ``columns`` (one-line error naming the file and missing columns)."""
        try:
            frame = pd.read_csv(self.root / path)
        except (OSError, ValueError) as exc:
            raise HNeuronsError(f"{path}: not readable as CSV ({exc})") from None
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise HNeuronsError(f"{path}: missing columns {missing}")
        self._note(path)
        return frame

    def source(self, *paths: str) -> str:
        return source_line([self._note(p) for p in paths])


def get(data: Mapping[str, Any], dotted: str, where: str) -> Any:
    """``data['a']['b']`` for ``'a.b'``; a missing key is a one-line error naming the file and key."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise HNeuronsError(f"{where}: missing key {dotted}")
        node = node[part]
    return node
