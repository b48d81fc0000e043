"""Shared figure plumbing: the figure-data CSV columns, byte-stable PNG saving, value conversion for plotting.

Figure-data values are percent (fractions from the pipeline times 100), None where
the value is missing or not finite.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Figure-data CSVs (declared as DVC plots) and their columns, long format over families.
PLOT_COLUMNS: dict[str, list[str]] = {
    "detection": ["family", "dataset", "h_neurons", "h_ci_lo", "h_ci_hi", "random", "paper_h_neurons", "paper_random"],
    "compliance": ["family", "benchmark", "alpha", "h_neurons", "h_ci_lo", "h_ci_hi", "random", "random_ci_lo",
                   "random_ci_hi"],
    "transfer": ["family", "dataset", "auroc", "ci_lo", "ci_hi", "random_auroc", "paper_mean"],
}


def _savefig(fig: Any, path: Path) -> None:
    """Save a matplotlib figure as a byte-stable PNG (no software/timestamp metadata) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _pct_num(x: Any) -> float | None:
    return None if x is None or not np.isfinite(float(x)) else 100.0 * float(x)


def _num(x: Any) -> float | None:
    return None if x is None or not np.isfinite(float(x)) else float(x)
