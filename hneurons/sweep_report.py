"""Reports of the intervene sweep (paper §3, Fig. 3): compliance and capability rates per alpha with
CIs, slopes, paired H-Neuron-minus-random effects, the rule judges' agreement with the hand labels,
their CSVs and panel plots, and metrics.json's body (:func:`write_reports`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from hneurons import layout

log = logging.getLogger("intervene")
FIXTURES = layout.labels("intervene")
RATE_COLUMNS = ["benchmark", "neurons", "alpha", "compliance", "ci_lo", "ci_hi", "n", "n_parsed",
                "compliance_parsed", "parse_failure_rate"]


def sweep_metrics(rates, rates_by_set) -> dict[str, Any]:
    """Per benchmark: rates by alpha and slopes for the H-Neurons, the pooled random sets and each random set."""
    from hneurons.compliance import slopes
    from hneurons.stats import mean_sd

    out: dict[str, Any] = {}
    for bench, frame in rates.groupby("benchmark", sort=True):
        entry: dict[str, Any] = {}
        for neurons, group in frame.groupby("neurons", sort=True):
            group = group.sort_values("alpha")
            entry[neurons] = {
                "slope_pp_per_alpha": slopes(group["alpha"], group["compliance"]),
                "slope_parsed_pp_per_alpha": slopes(group["alpha"], group["compliance_parsed"]),
                "by_alpha": {f"{a:g}": {k: row[k] for k in ("compliance", "ci_lo", "ci_hi", "n", "n_parsed",
                                                            "compliance_parsed", "ci_lo_parsed", "ci_hi_parsed",
                                                            "parse_failure_rate")}
                             for a, (_, row) in zip(group["alpha"], group.iterrows())}}
        per_set = rates_by_set[(rates_by_set["benchmark"] == bench) & (rates_by_set["neurons"] == "random")]
        if len(per_set) and "random" in entry:
            runs = [slopes(g.sort_values("alpha")["alpha"], g.sort_values("alpha")["compliance"])
                    for _, g in per_set.groupby("set_index", sort=True)]
            entry["random"]["per_set_slopes"] = runs
            entry["random"]["endpoint_slope_over_sets"] = mean_sd([r["endpoint"] for r in runs])
        out[bench] = entry
    return out


def mean_slopes(per_bench: dict[str, Any], benchmarks: list[str]) -> dict[str, Any]:
    """Slopes averaged over the compliance benchmarks (the paper averages over its four)."""
    out = {}
    for neurons in ("h_neurons", "random"):
        values = [per_bench[b][neurons]["slope_pp_per_alpha"] for b in benchmarks if neurons in per_bench.get(b, {})]
        if values:
            out[neurons] = {kind: float(np.nanmean([v[kind] for v in values])) if values else None
                            for kind in ("endpoint", "ols")}
    return out


def fixture_agreements(benchmarks: list[str], directory: Path = FIXTURES) -> dict[str, Any]:
    """Rule-judge agreement with the hand labels of ``directory``/<benchmark>.jsonl (those that exist)."""
    from hneurons.compliance import fixture_agreement as agreement

    out = {}
    for bench in benchmarks:
        path = Path(directory) / f"{bench}.jsonl"
        if path.is_file():
            out[bench] = agreement(path)
    return out


def plot_panels(rates, benchmarks: list[str], ylabel: str, path: Path, title: str) -> None:
    """One panel per benchmark: rate vs alpha with 95% CI bands, H-Neurons (solid) vs random (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hneurons.compliance import DISPLAY_NAMES
    from hneurons.io import atomic_path

    fig, axes = plt.subplots(1, len(benchmarks), figsize=(3.6 * len(benchmarks), 3.2), squeeze=False)
    for ax, bench in zip(axes[0], benchmarks):
        for neurons, style, label in (("h_neurons", "-o", "H-Neurons"), ("random", "--s", "random neurons")):
            group = rates[(rates["benchmark"] == bench) & (rates["neurons"] == neurons)].sort_values("alpha")
            if not len(group):
                continue
            line, = ax.plot(group["alpha"], group["compliance"], style, label=label, markersize=4)
            ax.fill_between(group["alpha"], group["ci_lo"], group["ci_hi"], alpha=0.2, color=line.get_color())
        ax.set_title(DISPLAY_NAMES.get(bench, bench), fontsize=10)
        ax.set_xlabel("scaling factor alpha")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def write_rates(rates, path: Path, columns: list[str]) -> None:
    """``columns`` of a rate table as CSV, sorted by benchmark, neurons and alpha."""
    from hneurons.io import csv_text, write_text

    write_text(path, csv_text(rates[columns].sort_values(["benchmark", "neurons", "alpha"]), float_format="%.6g"))


def write_reports(judgements, items: dict[str, list], judges, screened: dict[str, Any], cfg: dict[str, Any],
                  family: str, n_h_neurons: int, n_random_sets: int, decoding: dict[str, Any],
                  report_dir: Path) -> dict[str, Any]:
    """Write the rate, effect and capability CSVs and the compliance / capability panels of a judged sweep
    (``judgements``: hneurons.sweep.judge_rows) to ``report_dir``; return metrics.json's body.

    cfg: the intervene config (benchmarks, alphas, random_alphas, positions, n_boot, seed); items: {benchmark:
    items} as asked; judges: the hneurons.compliance.Judges used; screened: screening counts per pool;
    decoding: the decoding settings per benchmark and format, as written to metrics.json.
    """
    from hneurons import sweep
    from hneurons.compliance import DISPLAY_NAMES
    from hneurons.io import csv_text, write_text

    frame = judgements.to_pandas()
    bench_rows = frame[frame["benchmark"] != "triviaqa"]
    rates = sweep.rate_table(bench_rows, cfg["n_boot"], cfg["seed"])
    rates_by_set = sweep.rate_table(bench_rows, cfg["n_boot"], cfg["seed"], by_set=True)
    per_bench = sweep_metrics(rates, rates_by_set)
    effects, effect_slopes = sweep.paired_effects(bench_rows, cfg["n_boot"], cfg["seed"])
    write_text(report_dir / layout.INTERVENE_EFFECTS, csv_text(effects, float_format="%.6g"))
    write_text(report_dir / layout.INTERVENE_SLOPES, csv_text(effect_slopes, float_format="%.6g"))
    write_rates(rates, report_dir / layout.INTERVENE_COMPLIANCE_CSV, RATE_COLUMNS)
    title = (f"{family}: {n_h_neurons} H-Neurons vs {n_random_sets} layer-matched random sets (pooled), "
             f"positions={cfg['positions']}")
    plot_panels(rates, cfg["benchmarks"], "compliance rate (%)", report_dir / layout.INTERVENE_COMPLIANCE_PNG, title)
    metrics: dict[str, Any] = {
        "family": family, "n_h_neurons": n_h_neurons, "n_random_sets": n_random_sets, "positions": cfg["positions"],
        "alphas": cfg["alphas"], "random_alphas": cfg["random_alphas"], "units": "percent; slopes in pp per unit alpha",
        "items": {b: len(v) for b, v in items.items()}, "screened": screened,
        "judges": {b: judges.name(v[0]) for b, v in items.items() if b != "triviaqa"},
        "random_sets": "layer-matched (as many neurons per layer as the H-Neurons, disjoint from them)",
        "benchmarks": per_bench, "mean_slope": mean_slopes(per_bench, cfg["benchmarks"]),
        "paired_effects": {"by_alpha": effects.to_dict("records"), "slopes": effect_slopes.to_dict("records")},
        "judge_validation": fixture_agreements(cfg["benchmarks"]),
        "display_names": {b: n for b, n in DISPLAY_NAMES.items() if b in items},
        "decoding": decoding,
    }
    syco = frame[frame["benchmark"] == "sycophancy"]
    if len(syco):
        metrics["sycophancy_initially_correct"] = {
            f"{n}/{a:g}": int(g["in_denominator"].sum()) for (n, a), g in syco.groupby(["neurons", "alpha"])}
    cap_rows = frame[frame["benchmark"] == "triviaqa"]
    capability = sweep.rate_table(cap_rows, cfg["n_boot"], cfg["seed"])
    capability_by_set = sweep.rate_table(cap_rows, cfg["n_boot"], cfg["seed"], by_set=True)
    write_text(report_dir / layout.INTERVENE_CAPABILITY_CSV, csv_text(
        capability.rename(columns={"compliance": "accuracy"})[["neurons", "alpha", "accuracy", "ci_lo", "ci_hi", "n"]]
        .sort_values(["neurons", "alpha"]), float_format="%.6g"))
    plot_panels(capability, ["triviaqa"], "greedy accuracy (%)", report_dir / layout.INTERVENE_CAPABILITY_PNG,
                f"{family}: capability cost, held-out TriviaQA (rule judge)")
    metrics["capability"] = sweep_metrics(capability, capability_by_set)["triviaqa"]
    cap_effects, cap_slopes = sweep.paired_effects(cap_rows, cfg["n_boot"], cfg["seed"])
    metrics["capability"]["paired_effects"] = {"by_alpha": cap_effects.to_dict("records"),
                                               "slopes": cap_slopes.to_dict("records")}
    for bench, entry in per_bench.items():
        log.info("%s/%s: endpoint slope H %.2f pp/alpha, random %s", family, bench,
                 entry["h_neurons"]["slope_pp_per_alpha"]["endpoint"],
                 entry.get("random", {}).get("slope_pp_per_alpha", {}).get("endpoint"))
    return metrics
