"""The probe report's PNGs: metric vs C, non-zero weight count vs C, H-Neurons per layer."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hneurons import layout


def plot_pngs(out: Path, grid: pd.DataFrame, per_layer: pd.DataFrame, chosen_C: float) -> None:
    """metric_vs_C.png, count_vs_C.png, per_layer.png (matplotlib, Agg, no timestamps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    meta = {"Software": None}
    fig, ax = plt.subplots(figsize=(6, 4))
    for column, label in (("val_accuracy", "validation accuracy"), ("task_accuracy", "task accuracy (suppressed)"),
                          ("score", "sum (criterion)")):
        ax.plot(grid["C"], grid[column], marker="o", label=label)
    ax.axvline(chosen_C, color="grey", linestyle="--", label=f"chosen C={chosen_C:g}")
    ax.set(xscale="log", xlabel="C", ylabel="value", title="C selection")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / layout.PROBE_METRIC_PNG, dpi=100, metadata=meta)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(grid["C"], grid["n_positive"], marker="o", label="positive (H-Neurons)")
    ax.plot(grid["C"], grid["n_negative"], marker="s", label="negative")
    ax.axvline(chosen_C, color="grey", linestyle="--")
    ax.set(xscale="log", xlabel="C", ylabel="neurons with non-zero weight", title="Sparsity vs C")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / layout.PROBE_COUNT_PNG, dpi=100, metadata=meta)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(per_layer["layer"], per_layer["n_h_neurons"])
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(xlabel="layer", ylabel="H-Neurons", title=f"H-Neurons per layer (C={chosen_C:g})")
    fig.tight_layout()
    fig.savefig(out / layout.PROBE_LAYER_PNG, dpi=100, metadata=meta)
    plt.close(fig)
