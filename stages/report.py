"""report: every stage's outputs that exist -> reports/summary.md + figures, next to the paper.

Reads, per family of ``report.families``, the artifacts below (any may be missing:
its section then says "not run"), the params keys the deviations table compares
(``hneurons.report.setting_keys()`` plus the ``models`` and ``datasets``
sections) and ``dvc.lock`` (only to name the stage and lock hash of each
artifact read; see hneurons.report.sources.provenance). Writes

- ``reports/summary.md``: the report (links ``figures/*.png`` and the origin
  stage's drift strip);
- ``reports/figures/``: identification / detection / compliance / origin PNGs per family;
- ``reports/summary.json``: headline metrics per family and section (``dvc metrics diff``);
- ``reports/figure_data/{detection,compliance,transfer}.csv``: the numbers behind the
  figures, long over families (``dvc plots diff``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hneurons import layout
from hneurons.errors import HNeuronsError
from stages._common import param, run, setup_runtime
from stages.config import Config, load_config

log = logging.getLogger("report")
SECTION = "report"
SUMMARY, METRICS, FIGURES, FIGURE_DATA = layout.SUMMARY_MD, layout.SUMMARY_JSON, layout.FIGURES, layout.FIGURE_DATA
LOCK = Path("dvc.lock")
MISSING = object()


def family_paths(family: str):
    """Where each stage writes a family's artifacts (:mod:`hneurons.layout`)."""
    from hneurons.report import FamilyPaths

    return FamilyPaths.of(family)


def read_families(params: Config) -> list[str]:
    families = params.report.families if params.report else None
    if not isinstance(families, list) or not all(isinstance(f, str) and f for f in families):
        raise HNeuronsError(f"{SECTION}.families={families!r}: expected a list of family names")
    if len(set(families)) != len(families):
        raise HNeuronsError(f"{SECTION}.families={families!r}: a family is listed twice")
    return families


def read_settings(params: dict[str, Any]) -> dict[str, Any]:
    """``{dotted key: value}`` of the compared settings present in the params mapping (as written), plus models
    and datasets."""
    from hneurons.report import setting_keys

    values = {key: param(params, key, MISSING) for key in setting_keys()}
    values = {key: value for key, value in values.items() if value is not MISSING}
    values["models"] = param(params, "models", {})
    values["datasets"] = param(params, "datasets", {})
    return values


def write_outputs(report) -> None:
    """Figures, figure data, metrics, then the Markdown (each path atomically)."""
    from hneurons.io import atomic_path, csv_text, dumps_json, jsonable, write_text

    with atomic_path(FIGURES) as tmp:
        tmp.mkdir()
        for figure in report.figures:
            figure.draw(tmp / figure.name)
    with atomic_path(FIGURE_DATA) as tmp:
        tmp.mkdir()
        for name, frame in report.data.items():
            (tmp / f"{name}.csv").write_text(csv_text(frame, "%.6g"), encoding="utf-8")
    write_text(METRICS, dumps_json(jsonable(report.metrics)))
    write_text(SUMMARY, report.markdown)


def main(argv: list[str]) -> None:
    if argv:
        raise HNeuronsError("usage: python -m stages.report (no arguments; families from report.families)")
    params = load_config()
    setup_runtime(params)
    from hneurons.dvc_lock import load_lock
    from hneurons.report import build_report

    families = read_families(params)
    lock = load_lock(LOCK) if LOCK.is_file() else None
    report = build_report(Path("."), [family_paths(f) for f in families], read_settings(params.raw), lock)
    write_outputs(report)
    log.info("%d families, %d figures -> %s", len(families), len(report.figures), SUMMARY)


if __name__ == "__main__":
    run(main)
