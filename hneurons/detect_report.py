"""The detect stage's outputs: paper Table 1 (rows Random / H-Neurons, one column per dataset) as a
table and a bar plot, and the responses, Table 1 and metrics files of ``reports/detect/<family>/`` and
``data/detect/<family>/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hneurons import layout
from hneurons.detect import DATASETS, TABLE_METRICS
from hneurons.errors import HNeuronsError

TABLE1_NAMES = {"triviaqa": "TriviaQA", "nq_open": "NQ-Open", "bioasq": "BioASQ", "nonexist": "NonExist"}


def table1(results: Mapping[str, Mapping[str, Any]], metric: str = "accuracy") -> pd.DataFrame:
    """Paper Table 1 shape: rows Random / H-Neurons, columns TriviaQA, NQ-Open, BioASQ, NonExist
    (datasets present in ``results``, in paper order), values ``metric`` in percent.

    results: {dataset: detection_metrics(...)}. Random is the mean over seeds.
    """
    if metric not in TABLE_METRICS:
        raise HNeuronsError(f"detect.table_metric={metric!r}: expected one of {', '.join(TABLE_METRICS)}")
    names = [d for d in DATASETS if d in results]
    rows = []
    getters = (("Random", lambda r: r["random"][metric]["mean"]), ("H-Neurons", lambda r: r["h_neurons"][metric]))
    for label, get in getters:
        rows.append({"neurons": label, **{TABLE1_NAMES[d]: 100.0 * float(get(results[d])) for d in names}})
    return pd.DataFrame(rows, columns=["neurons"] + [TABLE1_NAMES[d] for d in names])


def plot_table1(results: Mapping[str, Mapping[str, Any]], metric: str, title: str, path: str | Path) -> None:
    """Grouped bars (Random vs H-Neurons per dataset) with the H-Neuron bootstrap 95% CI and the
    random sd as error bars, and a dashed chance line at 50; a deterministic PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hneurons.io import atomic_path

    names = [d for d in DATASETS if d in results]
    x = np.arange(len(names))
    h = np.array([100 * results[d]["h_neurons"][metric] for d in names], dtype=float)
    ci = np.array([[100 * v if v is not None else np.nan for v in results[d]["h_neurons"][f"{metric}_ci95"]]
                   for d in names], dtype=float).reshape(-1, 2)
    r = np.array([100 * results[d]["random"][metric]["mean"] for d in names], dtype=float)
    r_sd = np.nan_to_num(np.array([100 * (results[d]["random"][metric]["sd"] or 0.0) for d in names], dtype=float))
    h_err = np.nan_to_num(np.abs(np.stack([h - ci[:, 0], ci[:, 1] - h]))) if names else None
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=110)
    ax.bar(x - 0.2, r, 0.4, yerr=r_sd, capsize=3, label="Random neurons (mean ± sd)", color="#95a5a6")
    ax.bar(x + 0.2, h, 0.4, yerr=h_err, capsize=3, label="H-Neurons (95% CI)", color="#c0392b")
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, [TABLE1_NAMES[d] for d in names])
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def write_responses_and_table1(frames: list[pd.DataFrame], results: Mapping[str, Mapping[str, Any]],
                               metrics: Mapping[str, Any], prompt: str, table_metric: str, data_dir: Path,
                               report_dir: Path) -> None:
    """``data_dir/responses.parquet`` (every dataset's judged responses), ``report_dir/table1.csv`` and
    ``report_dir/table1.png``; ``metrics``: the stage's metrics (family, n_h_neurons, decoding)."""
    import pyarrow as pa

    from hneurons.io import csv_text, jsonable, write_parquet, write_text

    family = metrics["family"]
    responses = pd.concat(frames, ignore_index=True)
    write_parquet(data_dir / layout.DETECT_RESPONSES, pa.Table.from_pandas(responses, preserve_index=False),
                  jsonable({"family": family, "decoding": metrics["decoding"], "prompt": prompt}))
    write_text(report_dir / layout.DETECT_TABLE1_CSV, csv_text(table1(results, table_metric), "%.2f"))
    sizes = ", ".join(f"{r['h_neurons']['n_faithful']}/{r['h_neurons']['n_hallucinated']}" for r in results.values())
    title = (f"{family}: {metrics['n_h_neurons']} H-Neurons, {table_metric} on balanced sets "
             f"(faithful/hallucinated: {sizes})")
    plot_table1(results, table_metric, title, report_dir / layout.DETECT_TABLE1_PNG)


def detect_metrics(family: str, fingerprint: str, n_h_neurons: int, cfg: Mapping[str, Any], meta: Mapping[str, Any],
                   agreement: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, Any]:
    """metrics.json's body before the generation and machine facts: the run's settings (``cfg``: the
    stage's config), the training activations' span rule, region variant and readout (``meta``), the
    judges' agreement and the per-dataset ``results``."""
    return {"family": family, "model_fingerprint": fingerprint, "n_h_neurons": n_h_neurons,
            "probe_dataset": cfg["probe_dataset"],
            "decoding": {d: cfg["decoding"][d].as_dict() for d in cfg["datasets"]}, "prompt": cfg["prompt"],
            "span_rule": meta["span_rule"], "region_variant": meta["region_variant"], "readout": meta["readout"],
            "table_metric": cfg["table_metric"], "judge_agreement": agreement, "datasets": results}
