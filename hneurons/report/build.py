"""The whole report: every section of every family, the deviations table and the artifacts read."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hneurons.report.detection import detection_section
from hneurons.report.deviations import deviations, deviations_markdown
from hneurons.report.figures import PLOT_COLUMNS
from hneurons.report.identification import identification_section
from hneurons.report.inputs import FamilyPaths, Inputs
from hneurons.report.intervention import intervention_section
from hneurons.report.origin import origin_section
from hneurons.report.section import Figure, Section
from hneurons.report.sources import sources_markdown
from hneurons.report.training_data import data_section

SECTIONS: tuple[tuple[str, str, Callable[[Inputs, FamilyPaths], Section]], ...] = (
    ("data", "Training data (consistency sampling, paper §2.1)", data_section),
    ("identification", "1. Identification (paper §3, Table 1 ratio)", identification_section),
    ("detection", "2. Detection (paper §5, Table 1)", detection_section),
    ("intervention", "3. Intervention (paper §6, Fig. 3)", intervention_section),
    ("origin", "4. Origin (paper §7, Fig. 4)", origin_section),
)


@dataclass
class Report:
    """The rendered report: Markdown, headline metrics, figures to draw, figure-data frames."""

    markdown: str
    metrics: dict[str, Any]
    figures: list[Figure]
    data: dict[str, pd.DataFrame]


def build_report(root: Path, families: Sequence[FamilyPaths], settings: Mapping[str, Any],
                 lock: Mapping[str, Any] | None) -> Report:
    """Render every section of every family from the artifacts under ``root``.

    families: artifact paths per family (report order); settings: ``{dotted key:
    value}`` of the params compared in the deviations table (see :func:`deviations`);
    lock: parsed ``dvc.lock`` (``hneurons.dvc_lock.load_lock``) or None.
    """
    inputs = Inputs(root, lock)
    rows = deviations(settings)
    parts = ["# H-Neurons reproduction report", "",
             "This run next to *H-Neurons* (Gao et al., arXiv 2512.01797 v2). Paper numbers: Table 1 from the text; "
             "Fig. 3 and Fig. 4 values read off the figures (about ±0.3 pp). Fractions from the pipeline are shown "
             "in percent; intervals are 95% bootstrap CIs of this run.", "",
             f"Families: {', '.join(f'`{f.family}`' for f in families) or 'none (report.families is empty)'}.", "",
             "## Deviations from the paper", "", deviations_markdown(rows), ""]
    metrics: dict[str, Any] = {"families": {}, "deviations": {
        "n_compared": len(rows), "n_differs": sum(r["status"].startswith("differs") for r in rows),
        "differs": [r["key"] for r in rows if r["status"].startswith("differs")]}}
    figures: list[Figure] = []
    data: dict[str, list[dict[str, Any]]] = {name: [] for name in PLOT_COLUMNS}
    for paths in families:
        parts += [f"## Family `{paths.family}`", ""]
        family_metrics = {}
        for key, title, render in SECTIONS:
            section = render(inputs, paths)
            parts += [f"### {title}", "", section.text, ""]
            family_metrics[key] = section.metrics
            figures += section.figures
            for name, items in section.data.items():
                data[name] += items
        metrics["families"][paths.family] = family_metrics
    parts += ["## Artifacts read", "", sources_markdown(inputs.read), ""]
    frames = {name: pd.DataFrame(items, columns=PLOT_COLUMNS[name]) for name, items in data.items()}
    return Report("\n".join(parts), metrics, figures, frames)
