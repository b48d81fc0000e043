"""Section 3, intervention (paper §6.3, Fig. 3): compliance vs alpha for the H-Neurons and a random-neuron
control (with CIs), slopes next to the paper's, paired H-minus-random effects, and the figure with the paper's
six curves drawn behind.

Compliance in ``compliance.csv`` is in percent (the intervene stage's contract);
slopes are in percentage points per unit alpha.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hneurons.errors import HNeuronsError
from hneurons.report.figures import PLOT_COLUMNS, _num, _pyplot, _savefig
from hneurons.report.inputs import FamilyPaths, Inputs
from hneurons.report.markdown import md_table, not_run, pct_ci
from hneurons.report.paper import BENCHMARK_PANELS, FIG3, FIG3_ALPHAS, PAPER_MODELS, PAPER_SLOPES, SMALL_MODELS
from hneurons.report.section import Figure, Section

COMPLIANCE_COLUMNS = ("benchmark", "neurons", "alpha", "compliance", "ci_lo", "ci_hi", "n", "n_parsed")


def slopes(alpha: np.ndarray, value: np.ndarray) -> tuple[float, float]:
    """(endpoint slope (v[max alpha] - v[min alpha]) / range, OLS slope) in value units per unit alpha."""
    order = np.argsort(alpha)
    alpha, value = np.asarray(alpha, float)[order], np.asarray(value, float)[order]
    if alpha.size < 2 or alpha[-1] == alpha[0]:
        return float("nan"), float("nan")
    endpoint = (value[-1] - value[0]) / (alpha[-1] - alpha[0])
    return float(endpoint), float(np.polyfit(alpha, value, 1)[0])


def paper_slopes(panel: str) -> dict[str, tuple[float, float]]:
    """Per paper model: (endpoint, OLS) slope in pp per unit alpha of one Fig. 3 panel."""
    return {model: slopes(np.array(FIG3_ALPHAS), np.array(values)) for model, values in FIG3[panel].items()}


def check_compliance(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """compliance.csv rows, validated: percent in [0, 100], one row per (benchmark, neurons, alpha)."""
    values = frame[["compliance", "ci_lo", "ci_hi"]].to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0 or finite.max() > 100):
        raise HNeuronsError(f"{where}: compliance and its CI must be percentages in [0, 100]")
    if frame.duplicated(["benchmark", "neurons", "alpha"]).any():
        raise HNeuronsError(f"{where}: more than one row for a (benchmark, neurons, alpha)")
    return frame.sort_values(["benchmark", "neurons", "alpha"]).reset_index(drop=True)


def intervention_section(inputs: Inputs, paths: FamilyPaths) -> Section:
    """Compliance vs alpha per benchmark (H-Neurons and random control, CIs) next to the paper's Fig. 3."""
    family = paths.family
    if not inputs.exists(paths.intervene_compliance):
        return Section(not_run(f"intervene@{family}", paths.intervene_compliance))
    where = paths.intervene_compliance
    from hneurons.stats import flag_small

    frame = check_compliance(inputs.csv(where, COMPLIANCE_COLUMNS), where)
    rows, data, section_metrics, flags = [], [], {}, []
    for (bench, neurons), part in frame.groupby(["benchmark", "neurons"], sort=True):
        alpha, value = part["alpha"].to_numpy(float), part["compliance"].to_numpy(float)
        endpoint, ols = slopes(alpha, value)
        parsed = part["n_parsed"].sum() / max(part["n"].sum(), 1)
        worst = (part["n_parsed"] / part["n"].clip(lower=1)).min()
        lo_row, hi_row = part.iloc[0], part.iloc[-1]
        panel = BENCHMARK_PANELS.get(bench)
        paper = paper_slopes(panel) if panel else {}
        paper_text = (f"{np.mean([e for e, _ in paper.values()]):+.2f} / {np.mean([o for _, o in paper.values()]):+.2f}"
                      if paper else "no paper panel")
        small = flag_small(int(part["n"].min()))
        if small:
            flags.append(f"{bench} {neurons}: {small.replace('per class', 'per condition')}")
        rows.append([bench + (" (stand-in for FaithEval)" if bench == "faitheval_style" else ""),
                     neurons + (" ⚑" if small else ""),
                     f"{pct_ci(lo_row.compliance / 100, [lo_row.ci_lo / 100, lo_row.ci_hi / 100])} "
                     f"@ α={lo_row.alpha:g}",
                     f"{pct_ci(hi_row.compliance / 100, [hi_row.ci_lo / 100, hi_row.ci_hi / 100])} "
                     f"@ α={hi_row.alpha:g}",
                     f"{endpoint:+.2f} / {ols:+.2f}", f"{100 * parsed:.1f} (min {100 * worst:.1f})", paper_text])
        section_metrics.setdefault(bench, {})[neurons] = {
            "endpoint_slope_pp": endpoint, "ols_slope_pp": ols, "parsed_share": float(parsed),
            "compliance_pct_min_alpha": float(lo_row.compliance), "compliance_pct_max_alpha": float(hi_row.compliance)}
    for (bench, alpha), part in frame.groupby(["benchmark", "alpha"], sort=True):
        row: dict[str, Any] = {"family": family, "benchmark": bench, "alpha": float(alpha)}
        for neurons, prefix in (("h_neurons", "h"), ("random", "random")):
            hit = part[part["neurons"] == neurons]
            first = hit.iloc[0] if len(hit) else None
            row[neurons] = _num(first.compliance) if first is not None else None
            row[f"{prefix}_ci_lo"] = _num(first.ci_lo) if first is not None else None
            row[f"{prefix}_ci_hi"] = _num(first.ci_hi) if first is not None else None
        data.append(row)
    small = [paper_slopes(p)[m][0] for p in FIG3 for m in SMALL_MODELS]
    large = [paper_slopes(p)[m][0] for p in FIG3 for m in PAPER_MODELS if m not in SMALL_MODELS]
    name = f"compliance_{family}.png"
    sources = [where] + ([paths.intervene_metrics] if inputs.exists(paths.intervene_metrics) else [])
    lines = [f"![Compliance vs alpha](figures/{name})\n",
             "Compliance rate (%) with the neurons' activations scaled by α (paper §6, Eq. 5; 95% CIs of this run; "
             "slopes in pp per unit α, endpoint / OLS; parsed = share of responses the scorer could parse, which "
             "falls with α in other audits). Paper column: mean over its six models of the same slopes, computed "
             "from the Fig. 3 values.", "",
             md_table(["benchmark", "neurons", "lowest α", "highest α", "slope (endpoint / OLS)", "parsed %",
                       "paper slope (endpoint / OLS)"], rows), "",
             *(["⚑ Too few items to read: " + "; ".join(flags) + ".", ""] if flags else []),
             *screening_lines(inputs, paths),
             *paired_effect_lines(inputs, paths, section_metrics),
             f"Paper: average slope ≈ {PAPER_SLOPES['three smaller models']:.2f} pp/α for the three smaller models "
             f"and ≈ {PAPER_SLOPES['three larger models']:.2f} for the three larger (definition unstated; the "
             f"endpoint slope from Fig. 3 gives {np.mean(small):.2f} and {np.mean(large):.2f}). The paper has no "
             f"random-neuron control and no CIs for this experiment.", "", inputs.source(*sources)]
    figure = Figure(name, lambda path: draw_compliance(data, family, path))
    return Section("\n".join(lines), section_metrics, [figure], {"compliance": data})


def screening_lines(inputs: Inputs, paths: FamilyPaths) -> list[str]:
    """How the screened item pools (known answers at alpha 1) were filled, from the stage's metrics."""
    if not inputs.exists(paths.intervene_metrics):
        return []
    screened = inputs.json(paths.intervene_metrics).get("screened") or {}
    if not screened:
        return []
    parts = [f"{name}: {s['kept']} kept of {s['screened']} asked ({s['correct']} correct"
             + ("" if s.get("reached") else f"; target {s['target']} not reached, pool {s['pool']}") + ")"
             for name, s in sorted(screened.items())]
    return ["Screened items (answered correctly by the unchanged model at α = 1, so sycophancy and the capability "
            "check start from known answers): " + "; ".join(parts) + ".", ""]


def paired_effect_lines(inputs: Inputs, paths: FamilyPaths, section_metrics: dict[str, Any]) -> list[str]:
    """H-Neurons minus random sets as paired per-item differences (item-cluster bootstrap CIs)."""
    if not paths.intervene_effects or not inputs.exists(paths.intervene_effects) \
            or not inputs.exists(paths.intervene_effect_slopes):
        return []
    from hneurons.stats import flag_small

    effects = inputs.csv(paths.intervene_effects, ["benchmark", "control", "outcome", "alpha", "n", "diff_pp",
                                                   "diff_ci_lo", "diff_ci_hi"])
    slopes_frame = inputs.csv(paths.intervene_effect_slopes, ["benchmark", "control", "outcome", "quantity", "kind",
                                                              "slope_pp_per_alpha", "ci_lo", "ci_hi", "n"])
    effects = effects[(effects["control"] == "random") & (effects["outcome"] == "compliance")]
    slopes_frame = slopes_frame[(slopes_frame["control"] == "random") & (slopes_frame["outcome"] == "compliance")
                                & (slopes_frame["kind"] == "ols")]
    rows = []
    for bench, part in effects.groupby("benchmark", sort=True):
        part = part.sort_values("alpha")
        top = part.iloc[-1]
        slope = {r.quantity: r for r in slopes_frame[slopes_frame["benchmark"] == bench].itertuples()}
        cell = lambda r: f"{r.slope_pp_per_alpha:+.2f} [{r.ci_lo:+.2f}, {r.ci_hi:+.2f}]" if r is not None else "n/a"  # noqa: E731
        small = flag_small(int(part["n"].min()))
        diff = slope.get("h_minus_random")
        rows.append([bench, int(part["n"].min()), f"α={top.alpha:g}",
                     "too few items" if small else f"{top.diff_pp:+.1f} [{top.diff_ci_lo:+.1f}, {top.diff_ci_hi:+.1f}]",
                     cell(slope.get("h_neurons")), cell(slope.get("random")),
                     "too few items" if small else cell(diff)])
        entry = section_metrics.setdefault(bench, {})
        entry["paired"] = {"n_items": int(part["n"].min()), "below_floor": bool(small),
                           "h_minus_random_pp_at_max_alpha": None if small else float(top.diff_pp),
                           "ci95": None if small else [float(top.diff_ci_lo), float(top.diff_ci_hi)],
                           "h_minus_random_ols_slope":
                               None if small or diff is None else float(diff.slope_pp_per_alpha)}
    if not rows:
        return []
    return ["H-Neurons minus the layer-matched random sets, paired by item (same items and sampling seeds in every "
            "condition; 95% CIs from resampling items, so α = 1, the unchanged model, counts once); compliance in pp, "
            "OLS slopes in pp per unit α:", "",
            md_table(["benchmark", "items", "at", "H − random (pp)", "slope H", "slope random", "slope H − random"],
                     rows), ""]


def draw_compliance(data: list[dict[str, Any]], family: str, path: Path) -> None:
    """One panel per benchmark: H-Neurons and random lines with CI bands; the paper's six curves in grey."""
    plt = _pyplot()
    frame = pd.DataFrame(data, columns=PLOT_COLUMNS["compliance"])
    benches = sorted(frame["benchmark"].unique())
    fig, axes = plt.subplots(1, len(benches), figsize=(3.6 * len(benches), 3.4), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        panel = BENCHMARK_PANELS.get(bench)
        for i, (model, values) in enumerate((FIG3.get(panel) or {}).items()):
            ax.plot(FIG3_ALPHAS, values, color="grey", alpha=0.4, linewidth=1,
                    label="paper (6 models)" if i == 0 else None)
        part = frame[frame["benchmark"] == bench]
        for neurons, prefix, color in (("h_neurons", "h", "tab:red"), ("random", "random", "tab:blue")):
            if part[neurons].isna().all():
                continue
            ax.plot(part["alpha"], part[neurons].astype(float), marker="o", color=color, label=neurons)
            ax.fill_between(part["alpha"], part[f"{prefix}_ci_lo"].astype(float), part[f"{prefix}_ci_hi"].astype(float),
                            color=color, alpha=0.15)
        ax.set(xlabel="α", ylabel="compliance (%)", ylim=(0, 100),
               title=f"{bench}" + (f" (paper: {panel})" if panel and panel.lower() != bench else ""))
        ax.legend(fontsize=7)
    fig.suptitle(f"{family}: compliance vs α", fontsize=10)
    _savefig(fig, path)
