"""Section 1, identification (paper §3, Table 1 ratio): C path, H-Neurons per layer, per-mille ratio vs the
paper's six models, in-domain test detection with CIs (probe stage), and its figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hneurons.report.figures import _pyplot, _savefig
from hneurons.report.inputs import FamilyPaths, Inputs, get
from hneurons.report.markdown import floor_flag, md_table, mean_sd_text, not_run, pct, pct_ci, range_text
from hneurons.report.paper import PAPER_MODELS, TABLE1, paper_column, paper_ratio_text
from hneurons.report.section import Figure, Section


def length_confound_note(probe: dict, lengths: dict, margin: float = 0.02) -> str | None:
    """A caution line when a length-only probe's AUROC comes within ``margin`` of the H-Neuron probe's
    (span and response length can separate the classes by themselves; docs/params.md, extract), else None."""
    if not np.isfinite(probe.get("auroc", np.nan)):
        return None
    close = [(name, s["auroc"]) for name, s in lengths.items()
             if s.get("auroc") is not None and np.isfinite(s["auroc"]) and s["auroc"] >= probe["auroc"] - margin]
    if not close:
        return None
    name, value = max(close, key=lambda item: item[1])
    if any(n == "response_tokens" for n, _ in close):
        advice = ("the response length alone separates the classes here: more examples, or classes matched on "
                  "length, are needed before the neurons can be credited")
    else:
        advice = ("the answer span's length does it: try `extract.span_rule: content`, the same span rule for both "
                  "classes")
    return (f"**Caution: length confound.** The length-only probe `{name}` reaches AUROC {100 * value:.1f}% "
            f"against the H-Neuron probe's {100 * probe['auroc']:.1f}%: on this run the detection result does not "
            f"show more than length ({advice}).")


def identification_section(inputs: Inputs, paths: FamilyPaths) -> Section:
    """C path, H-Neurons per layer, per-mille vs Table 1, in-domain held-out detection (probe stage)."""
    family = paths.family
    if not inputs.exists(paths.probe_metrics):
        return Section(not_run(f"probe@{family}", paths.probe_metrics))
    where = paths.probe_metrics
    m = inputs.json(where)
    grid = inputs.csv(paths.probe_c_grid, ["C", "val_accuracy", "task_accuracy", "score", "n_positive"])
    layers = inputs.csv(paths.probe_per_layer, ["layer", "n_h_neurons"])
    n_h, n_feat, per_mille = get(m, "n_h_neurons", where), get(m, "n_features", where), get(m, "per_mille", where)
    chosen = get(m, "chosen_C", where)
    ratios = np.array([TABLE1[x]["per_mille"] for x in PAPER_MODELS])
    position = ("inside" if ratios.min() <= per_mille <= ratios.max()
                else "above" if per_mille > ratios.max() else "below")
    lines = [
        f"**{n_h} H-Neurons** (positive weights) of {n_feat:,} FFN neurons = **{per_mille:.3f}‰** at the chosen "
        f"C = {chosen:g} ({get(m, 'C_selection.criterion', where)}; alpha = {get(m, 'C_selection.alpha', where):g}). "
        f"Paper Table 1 ratios (‰): {paper_ratio_text()}; this run is {position} the paper's range "
        f"({ratios.min():.2f}–{ratios.max():.2f}‰ ≈ "
        f"{ratios.min() * n_feat / 1000:.1f}–{ratios.max() * n_feat / 1000:.1f} "
        f"neurons at this model's size). The paper reports no C path (grid and final C unstated, paper.md §4.2).",
        "",
        md_table(["C", "validation acc. (%)", "task acc. suppressed (%)", "criterion", "positive", "‰"],
                 [[f"{r.C:g}" + (" ←" if r.C == chosen else ""), pct(r.val_accuracy), pct(r.task_accuracy),
                   f"{r.score:.3f}", int(r.n_positive), f"{1000 * r.n_positive / n_feat:.3f}"]
                  for r in grid.itertuples()]),
        "",
    ]
    counts = layers["n_h_neurons"].to_numpy()
    n_layers = len(layers)
    if counts.sum():
        thirds = np.array_split(counts, 3)
        lines.append(f"H-Neurons per layer: {int((counts > 0).sum())} of {n_layers} layers hold at least one; "
                     f"first / middle / last third of the layers: "
                     f"{' / '.join(str(int(t.sum())) for t in thirds)}. The paper gives no layer distribution "
                     f"(paper.md §8).")
        lines.append("")
    test = get(m, "test", where)
    probe, l2 = get(test, "probe", where), test.get("h_neurons_l2")
    tq_h, tq_r = paper_column("h_neurons", 0), paper_column("random", 0)
    rows = [["H-Neuron L1 probe (this run)", probe["n"], pct_ci(probe["accuracy"], probe.get("accuracy_ci95")),
             pct_ci(probe["auroc"], probe.get("auroc_ci95"))]]
    if l2:
        rows.append(["H-Neurons, L2 refit", l2["n"], pct_ci(l2["accuracy"], l2.get("accuracy_ci95")),
                     pct_ci(l2["auroc"], l2.get("auroc_ci95"))])
    for key, label in (("random", "random neurons (same count)"), ("random_layer_matched", "random, layer-matched")):
        if key in test:
            rows.append([f"{label}, {test[key]['n_seeds']} seeds (mean ± sd)", probe["n"],
                         mean_sd_text(test[key]["accuracy"]), mean_sd_text(test[key]["auroc"])])
    for name, summary in (test.get("length") or {}).items():
        rows.append([f"length only ({name})", summary["n"], pct_ci(summary["accuracy"], summary.get("accuracy_ci95")),
                     pct_ci(summary["auroc"], summary.get("auroc_ci95"))])
    rows.append(["paper H-Neurons, mean (range) of 6 models", "", range_text(tq_h), "not reported"])
    rows.append(["paper random neurons, mean (range)", "", range_text(tq_r), "not reported"])
    caution = length_confound_note(probe, test.get("length") or {})
    small = floor_flag(probe.get("n_faithful"), probe.get("n_hallucinated"))
    lines += ["Held-out TriviaQA test answers (the probe's own split; accuracy at 0.5, 95% bootstrap CIs):", "",
              md_table(["probe", "n", "accuracy (%)", "AUROC (%)"], rows), "",
              *([f"⚑ Too few rows to read: the test split has {small}.", ""] if small else []),
              *([caution, ""] if caution else []),
              inputs.source(paths.probe_metrics, paths.probe_c_grid, paths.probe_per_layer)]
    name = f"identification_{family}.png"
    lines.insert(0, f"![C path and H-Neurons per layer](figures/{name})\n")
    metrics = {"chosen_C": chosen, "n_h_neurons": n_h, "per_mille": per_mille,
               "paper_per_mille_range": [float(ratios.min()), float(ratios.max())],
               "test_accuracy": probe["accuracy"], "test_auroc": probe["auroc"],
               "random_test_accuracy": (test.get("random") or {}).get("accuracy", {}).get("mean")}
    figure = Figure(name, lambda path: draw_identification(grid, layers, chosen, n_feat, ratios, family, path))
    return Section("\n".join(lines), metrics, [figure])


def draw_identification(grid: pd.DataFrame, layers: pd.DataFrame, chosen: float, n_feat: int,
                        ratios: np.ndarray, family: str, path: Path) -> None:
    """Left: C path (validation/task accuracy, criterion; H-Neuron count on a twin axis, the paper's
    per-mille range shaded in count units). Right: H-Neurons per layer."""
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 3.8))
    for column, label in (("val_accuracy", "validation accuracy"), ("task_accuracy", "task accuracy (suppressed)"),
                          ("score", "criterion (sum)")):
        ax.plot(grid["C"], grid[column], marker="o", label=label)
    ax.axvline(chosen, color="grey", linestyle="--", linewidth=1)
    ax.set(xscale="log", xlabel="C (inverse L1 penalty)", ylabel="accuracy / criterion", title=f"{family}: C path")
    twin = ax.twinx()
    twin.plot(grid["C"], grid["n_positive"], color="black", marker="s", linewidth=1, label="H-Neurons")
    twin.axhspan(ratios.min() * n_feat / 1000, ratios.max() * n_feat / 1000, color="tab:red", alpha=0.12,
                 label="paper ratio range")
    twin.set_ylabel("H-Neurons (positive weights)")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], fontsize=7, loc="best")
    bx.bar(layers["layer"], layers["n_h_neurons"], color="tab:red")
    bx.set(xlabel="layer", ylabel="H-Neurons", title=f"H-Neurons per layer (C={chosen:g})")
    from matplotlib.ticker import MaxNLocator

    for axis in (bx.xaxis, bx.yaxis, twin.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    _savefig(fig, path)
