"""Section 2, detection (paper §5, Table 1): Random / H-Neurons accuracy per dataset with this run's bootstrap
95% CIs next to the paper's mean and range over its models, judge agreement, and the figure."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hneurons.report.figures import PLOT_COLUMNS, _pct_num, _pyplot, _savefig
from hneurons.report.inputs import FamilyPaths, Inputs, get
from hneurons.report.markdown import floor_flag, md_table, mean_sd_text, not_run, pct, pct_ci, range_text
from hneurons.report.paper import DATASET_NAMES, DETECT_DATASETS, paper_column
from hneurons.report.section import Figure, Section


def detection_section(inputs: Inputs, paths: FamilyPaths) -> Section:
    """Table 1 shape (Random / H-Neurons per dataset) with this run's CIs next to the paper's mean and range."""
    family = paths.family
    if not inputs.exists(paths.detect_metrics):
        return Section(not_run(f"detect@{family}", paths.detect_metrics))
    where = paths.detect_metrics
    m = inputs.json(where)
    results = get(m, "datasets", where)
    names = [d for d in DETECT_DATASETS if d in results]
    metric = m.get("table_metric", "accuracy")
    sources = [paths.detect_metrics] + ([paths.detect_table1] if inputs.exists(paths.detect_table1) else [])
    header = ["neurons"] + [DATASET_NAMES[d] for d in names]
    this_h, this_r, paper_h, paper_r, counts = ["H-Neurons (this run)"], ["Random (this run, mean ± sd)"], \
        ["H-Neurons (paper, mean of 6)"], ["Random (paper, mean of 6)"], ["n faithful / hallucinated"]
    data, section_metrics, flags = [], {}, []
    for d in names:
        r = results[d]
        h, rand = get(r, "h_neurons", f"{where} datasets.{d}"), get(r, "random", f"{where} datasets.{d}")
        i = DETECT_DATASETS.index(d)
        this_h.append(pct_ci(h[metric], h.get(f"{metric}_ci95")))
        this_r.append(mean_sd_text(rand[metric]))
        paper_h.append(range_text(paper_column("h_neurons", i)))
        paper_r.append(range_text(paper_column("random", i)))
        small = floor_flag(h.get("n_faithful"), h.get("n_hallucinated"))
        counts.append(f"{h.get('n_faithful', '?')} / {h.get('n_hallucinated', '?')}" + (" ⚑" if small else ""))
        if small:
            flags.append(f"{DATASET_NAMES[d]}: {small}{asked_text(r)}")
        gain = 100 * (h[metric] - rand[metric]["mean"]) if h[metric] is not None and rand[metric]["mean"] is not None \
            and not small else None
        section_metrics[d] = {f"h_neurons_{metric}": h[metric], f"random_{metric}": rand[metric]["mean"],
                              "gain_pp": gain, "auroc": h.get("auroc"), "n": h.get("n"),
                              "n_faithful": h.get("n_faithful"), "n_hallucinated": h.get("n_hallucinated"),
                              "below_floor": bool(small)}
        ci = h.get(f"{metric}_ci95") or [None, None]
        data.append({"family": family, "dataset": DATASET_NAMES[d], "h_neurons": _pct_num(h[metric]),
                     "h_ci_lo": _pct_num(ci[0]), "h_ci_hi": _pct_num(ci[1]), "random": _pct_num(rand[metric]["mean"]),
                     "paper_h_neurons": float(paper_column("h_neurons", i).mean()),
                     "paper_random": float(paper_column("random", i).mean())})
    gains = ["gain, pp (this run / paper mean)"]
    for d in names:
        i = DETECT_DATASETS.index(d)
        paper_gain = (paper_column("h_neurons", i) - paper_column("random", i)).mean()
        g = section_metrics[d]["gain_pp"]
        mine = "too few rows" if section_metrics[d]["below_floor"] else f"{g:+.1f}" if g is not None else "n/a"
        gains.append(f"{mine} / {paper_gain:+.1f}")
    lines = [f"{metric.capitalize()} (%) on balanced sets, probe trained on TriviaQA and applied unchanged "
             f"(paper §5, Table 1; 95% bootstrap CIs for this run, mean ± sd over random-neuron seeds; the paper "
             f"reports single values without CIs):", "",
             md_table(header, [this_h, this_r, paper_h, paper_r, gains, counts]), ""]
    if flags:
        lines += ["⚑ Too few rows to read, so no gain is printed: " + "; ".join(flags) + ".", ""]
    lines += judge_lines(m.get("judge_agreement") or {})
    auroc_rows = [[DATASET_NAMES[d], pct_ci(results[d]["h_neurons"].get("auroc"),
                                            results[d]["h_neurons"].get("auroc_ci95")),
                   mean_sd_text(results[d]["random"].get("auroc")),
                   pct_ci((results[d].get("length") or {}).get("response_tokens", {}).get("auroc"), None)]
                  for d in names]
    lines += ["AUROC (%) (the paper reports none for Table 1):", "",
              md_table(["dataset", "H-Neurons", "random (mean ± sd)", "length only"], auroc_rows), "",
              inputs.source(*sources)]
    name = f"detection_{family}.png"
    lines.insert(0, f"![Detection vs the paper](figures/{name})\n")
    figure = Figure(name, lambda path: draw_detection(data, family, metric, path))
    return Section("\n".join(lines), section_metrics, [figure], {"detection": data})


def asked_text(result: Mapping[str, Any]) -> str:
    """', target 55 per class not reached after all 1,804 eligible questions' where the stage recorded it."""
    target, pool, asked = result.get("min_per_class"), result.get("n_pool"), result.get("n_questions")
    if target is None or pool is None or asked is None:
        return ""
    return f", target {target} per class not reached after {asked:,} of {pool:,} eligible questions"


def judge_lines(agreement: Mapping[str, Any]) -> list[str]:
    """Judge agreement with labels written outside this project's code: hand labels of real responses
    (per dataset and class) and GPT-4o verdicts on BioASQ answers (the half not used to write the rules)."""
    rows = []
    hand = agreement.get("hand_labels") or {}
    for name, entry in sorted((hand.get("by_dataset") or {}).items()):
        classes = "; ".join(f"{c}: precision {pct(entry[c].get('precision'))} of {entry[c].get('n_judge')}, "
                            f"recall {pct(entry[c].get('recall'))} of {entry[c].get('n_human')}"
                            for c in ("faithful", "hallucinated") if isinstance(entry.get(c), Mapping))
        rows.append([DATASET_NAMES.get(name, name), "hand labels, real responses", entry.get("n"),
                     pct(entry.get("agreement")), "–", classes])
    gpt = agreement.get("bioasq_gpt4o") or {}
    if isinstance(gpt.get("report"), Mapping):
        r = gpt["report"]
        rows.append(["BioASQ", f"GPT-4o verdicts, Gemma-3-4B answers (held-out half; judge `{gpt.get('judge')}`)",
                     r.get("n"), pct(r.get("agreement")), f"{r['kappa']:.2f}" if r.get("kappa") is not None else "–",
                     f"correct: precision {pct(r.get('precision'))} of {r.get('n_pred_true')}, recall "
                     f"{pct(r.get('recall'))} of {r.get('n_ref_true')}"])
    if not rows:
        return []
    return ["Judges against labels nobody here wrote (precision = share of the judge's class the reference "
            "agrees with; recall = share of the reference class the judge finds):", "",
            md_table(["dataset", "reference", "n", "agreement (%)", "Cohen's κ", "per class (%)"], rows), ""]


def draw_detection(data: list[dict[str, Any]], family: str, metric: str, path: Path) -> None:
    """Grouped bars Random / H-Neurons per dataset (H-Neuron CI as error bars), the paper's means as markers."""
    plt = _pyplot()
    frame = pd.DataFrame(data, columns=PLOT_COLUMNS["detection"])
    names = list(frame["dataset"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    h = frame["h_neurons"].astype(float).to_numpy()
    err = np.nan_to_num(np.vstack([h - frame["h_ci_lo"].astype(float), frame["h_ci_hi"].astype(float) - h]))
    ax.bar(x - 0.2, frame["random"].astype(float), width=0.4, color="tab:grey", label="random (this run, mean)")
    ax.bar(x + 0.2, h, width=0.4, color="tab:red", yerr=err, capsize=3, label="H-Neurons (this run, 95% CI)")
    ax.scatter(x - 0.2, frame["paper_random"].astype(float), marker="D", color="black", zorder=3)
    ax.scatter(x + 0.2, frame["paper_h_neurons"].astype(float), marker="D", color="black", zorder=3,
               label="paper mean of 6 models")
    ax.axhline(50, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(x, names)
    ax.set(ylim=(0, 100), ylabel=f"{metric} (%)", title=f"{family}: detection (paper Table 1 shape)")
    ax.legend(fontsize=7)
    _savefig(fig, path)
