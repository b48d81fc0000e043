"""Section 4, origin (paper §7, Fig. 4): backward-transfer AUROC with CIs and parameter-drift mean rank of the
H-Neurons vs the paper's values, the behaviour check of a tuned instruct twin, and the transfer figure."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hneurons.report.figures import PLOT_COLUMNS, _pct_num, _pyplot, _savefig
from hneurons.report.inputs import FamilyPaths, Inputs, get
from hneurons.report.markdown import md_table, mean_sd_text, not_run, pct, pct_ci, range_text
from hneurons.report.paper import DATASET_NAMES, FIG4A, FIG4A_DATASETS, FIG4B
from hneurons.report.section import Figure, Section


def origin_section(inputs: Inputs, paths: FamilyPaths) -> Section:
    """Backward-transfer AUROC and parameter drift of the H-Neurons vs the paper's Fig. 4."""
    from hneurons.stats import flag_small

    family = paths.family
    if not inputs.exists(paths.origin_metrics):
        return Section(not_run(f"origin@{family}", paths.origin_metrics))
    where = paths.origin_metrics
    m = inputs.json(where)
    if "skipped" in m:
        return Section(f"_{m['skipped']}._\n\n{inputs.source(where)}", {"skipped": 1})
    drift = get(m, "drift", where)
    lines, section_metrics = twin_lines(inputs, paths), {}
    rows = []
    for scope, label in (("global", "global z-score (paper's reading)"), ("per_layer", "per-layer z-score")):
        h, rand = get(drift, f"{scope}.h_neurons", where), get(drift, f"{scope}.random", where)
        matched = drift[scope].get("random_layer_matched") or {}
        rows.append([label, h["n"], f"{h['mean_rank']:.3f}",
                     _p_text(h.get("p_empirical")) + (f" ({rand['n_sets']} sets)" if rand.get("n_sets") else ""),
                     _p_text(h.get("p_empirical_layer_matched")), _p_text(h.get("p_value")),
                     (f"{rand['mean_rank']['mean']:.3f} ± {rand['mean_rank']['sd']:.3f}"
                      if rand.get("n_sets") else "n/a"),
                     f"{matched['mean_rank']['mean']:.3f} ± {matched['mean_rank']['sd']:.3f}"
                     if matched.get("n_sets") else "n/a",
                     pct(rand.get("share_p_below_0.05"))])
        section_metrics[f"drift_{scope}_mean_rank"] = h["mean_rank"]
        section_metrics[f"drift_{scope}_p_empirical"] = h.get("p_empirical")
        section_metrics[f"drift_{scope}_p_value"] = h.get("p_value")
    paper_ranks = np.array([v[0] for v in FIG4B.values()])
    lines += ["Parameter drift base → instruct (paper §7.2, Fig. 4b): mean normalized rank of the H-Neurons "
              "(1 = most stable, 0.5 = random). Significance is the one-sided empirical p against random neuron "
              "sets of the same size (share of sets at least as stable, +1 smoothed), uniform and layer-matched; the "
              "paper's one-sided Welch t-test is kept as a secondary column, with the share of random sets it calls "
              "significant at 0.05 (5% if it were calibrated):", "",
              md_table(["scope", "H-Neurons", "mean rank", "empirical p (random sets)", "empirical p (layer-matched)",
                        "Welch t-test", "random: mean rank", "layer-matched: mean rank",
                        "random sets with Welch p<0.05 (%)"], rows), "",
              "Paper Fig. 4b: " + ", ".join(f"{k} {v[0]:.3f} ({v[1]})" for k, v in FIG4B.items())
              + f"; mean {paper_ranks.mean():.3f}.", ""]
    if inputs.exists(paths.origin_strip):
        lines += [f"![Drift ranks](origin/{family}/drift_strip.png)", ""]
    transfer = get(m, "transfer", where)
    data, trows = [], []
    for d in [x for x in FIG4A_DATASETS if x in transfer] + sorted(set(transfer) - set(FIG4A_DATASETS)):
        t = transfer[d]
        i = FIG4A_DATASETS.index(d) if d in FIG4A_DATASETS else None
        paper = np.array([v[i] for v in FIG4A.values()]) if i is not None else None
        rnd = (t.get("random_neurons") or {}).get("auroc")
        counts = "/".join(str(t.get(k, "?")) for k in ("n_correct", "n_wrong", "n_refusal"))
        trows.append([DATASET_NAMES.get(d, d), counts, t.get("n", 0), pct_ci(t.get("auroc"), t.get("auroc_ci95")),
                      mean_sd_text(rnd), range_text(paper) if paper is not None else "n/a",
                      t.get("note") or flag_small({"per class": int(t.get("n", 0)) // 2}) or ""])
        section_metrics[f"transfer_auroc_{d}"] = t.get("auroc")
        ci = t.get("auroc_ci95") or [None, None]
        data.append({"family": family, "dataset": DATASET_NAMES.get(d, d), "auroc": _pct_num(t.get("auroc")),
                     "ci_lo": _pct_num(ci[0]), "ci_hi": _pct_num(ci[1]),
                     "random_auroc": _pct_num((rnd or {}).get("mean")),
                     "paper_mean": float(paper.mean()) if paper is not None else None})
    name = f"origin_{family}.png"
    lines += [f"![Backward transfer](figures/{name})\n",
              "Backward transfer (paper §7.1, Fig. 4a): the instruct probe applied unchanged to the base model's "
              "answers (prompt: question + \"\\nAnswer:\", answer cut at the first line break after it begins; "
              "leading blank lines are kept, a reading of the paper's newline stop); balanced n = 2 × the smaller "
              "class; AUROC (%) with 95% bootstrap CIs; chance = 50 (the paper has no random-neuron control):", "",
              md_table(["dataset", "base answers correct/wrong/dropped", "n", "AUROC (this run)",
                        "random neurons (mean ± sd)",
                        "paper mean (range) of 6 base models", "note"], trows), "",
              inputs.source(*([where] + [p for p in (paths.origin_transfer, paths.origin_strip) if inputs.exists(p)]))]
    figure = Figure(name, lambda path: draw_origin(data, family, path))
    return Section("\n".join(lines), section_metrics, [figure], {"transfer": data})


def twin_lines(inputs: Inputs, paths: FamilyPaths) -> list[str]:
    """When the instruct model is this project's tuned twin: the behaviour check of base vs twin."""
    if not paths.tune_metrics or not inputs.exists(paths.tune_metrics):
        return []
    where = paths.tune_metrics
    m = inputs.json(where)
    base, twin = m.get("check_base") or {}, get(m, "check_instruct", where)
    cell = lambda c, k: pct(c[k]) if c and c.get(k) is not None else "—"  # noqa: E731
    rows = [[check_kind_text(kind, twin[kind]), twin[kind].get("n"), cell(base.get(kind), "format_ok"),
             cell(twin[kind], "format_ok"),
             cell(base.get(kind), "refusal_rate"), cell(twin[kind], "refusal_rate"),
             cell(base.get(kind), "correct"), cell(twin[kind], "correct")] for kind in twin]
    loss = m.get("loss") or {}
    return ["The instruct model of this family is not a vendor checkpoint but the base model instruction-tuned by "
            f"`tune@{paths.family}` (loss of the first batch {loss.get('first', float('nan')):.2f}, "
            f"mean of the last 20 "
            f"batches {loss.get('mean_last_20', float('nan')):.2f} nats per response token). Its behaviour on held-out "
            "examples of each instruction kind, greedy (%; refusal = refusal or abstention):", "",
            md_table(["kind", "n", "format ok: base", "twin", "refusal: base", "twin", "correct: base", "twin"],
                     rows), "", inputs.source(where), ""]


def check_kind_text(kind: str, entry: Mapping[str, Any]) -> str:
    """'trivia (nq_open rows 2610–3610)': a behaviour-check kind with the data it was drawn from."""
    dataset = entry.get("dataset")
    if not dataset:
        return kind
    rows = entry.get("rows")
    where = f" rows {rows[0]}–{rows[1]}" if isinstance(rows, list) and len(rows) == 2 else \
        f" {entry['split']}" if entry.get("split") else ""
    short = f"; short: {entry['short']}" if entry.get("short") else ""
    return f"{kind} ({dataset}{where}{short})"


def _p_text(p: Any) -> str:
    if p is None or not np.isfinite(float(p)):
        return "n/a"
    label = next((f"p < {cut:g}" for cut in (0.001, 0.01, 0.05) if p < cut), "n.s.")
    return f"p = {float(p):.3g} ({label})"


def draw_origin(data: list[dict[str, Any]], family: str, path: Path) -> None:
    """Transfer AUROC bars with CIs, random-neuron AUROC and the paper's mean as markers, chance at 50."""
    plt = _pyplot()
    frame = pd.DataFrame(data, columns=PLOT_COLUMNS["transfer"])
    x = np.arange(len(frame))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    value = frame["auroc"].astype(float).to_numpy()
    err = np.nan_to_num(np.vstack([value - frame["ci_lo"].astype(float), frame["ci_hi"].astype(float) - value]))
    ax.bar(x, np.nan_to_num(value), color="tab:red", yerr=err, capsize=3, label="H-Neuron probe (this run)")
    ax.scatter(x, frame["random_auroc"].astype(float), marker="o", color="tab:blue", zorder=3, label="random neurons")
    ax.scatter(x, frame["paper_mean"].astype(float), marker="D", color="black", zorder=3, label="paper mean")
    ax.axhline(50, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, frame["dataset"])
    ax.set(ylim=(0, 100), ylabel="AUROC (%)", title=f"{family}: instruct probe on the base model")
    ax.legend(fontsize=7)
    _savefig(fig, path)
