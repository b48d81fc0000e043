"""Text helpers for the report: percent and CI text from fractions, Markdown tables, inline values."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def pct(x: Any, digits: int = 1) -> str:
    """A fraction as percent text ('n/a' for None/nan)."""
    if x is None or not np.isfinite(float(x)):
        return "n/a"
    return f"{100.0 * float(x):.{digits}f}"


def pct_ci(value: Any, ci: Sequence[Any] | None) -> str:
    """'78.4 [74.1, 82.0]' from fractions (CI omitted when absent or nan)."""
    text = pct(value)
    if ci and len(ci) == 2 and all(v is not None and np.isfinite(float(v)) for v in ci):
        text += f" [{pct(ci[0])}, {pct(ci[1])}]"
    return text


def mean_sd_text(stat: Mapping[str, Any] | None, scale: float = 100.0) -> str:
    """'61.7 +/- 2.1' from a {mean, sd} dict of fractions."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    sd = stat.get("sd")
    text = f"{scale * float(stat['mean']):.1f}"
    return text + (f" ± {scale * float(sd):.1f}" if sd is not None and np.isfinite(float(sd)) else "")


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def value_text(value: Any) -> str:
    """A params value as compact inline code."""
    return "`" + json.dumps(value, sort_keys=True, ensure_ascii=False, default=str) + "`"


def not_run(stage: str, path: str) -> str:
    return f"_Not run: `{path}` does not exist (stage `{stage}` has not produced it)._"


def range_text(values: np.ndarray, digits: int = 1) -> str:
    """'78.8 (70.1-83.6)': mean and range."""
    return f"{values.mean():.{digits}f} ({values.min():.{digits}f}–{values.max():.{digits}f})"


def floor_flag(n_faithful: Any, n_hallucinated: Any) -> str | None:
    """Why a detection cell is too small to read (:func:`hneurons.stats.flag_small`), or None."""
    from hneurons.stats import flag_small

    if not all(isinstance(n, (int, np.integer)) for n in (n_faithful, n_hallucinated)):
        return "class counts missing"
    return flag_small({"faithful": n_faithful, "hallucinated": n_hallucinated})
