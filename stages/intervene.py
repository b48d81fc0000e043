"""intervene@<family>: over-compliance under H-Neuron scaling (paper §3, Fig. 3) with controls.

Reads models/llm/<family>/instruct, the probe models/probe/<family>/ (H-Neurons =
positive weights), data/prepared/{falseqa,faitheval_style,sycophancy,jailbreak,
triviaqa}.parquet, data/samples/<family>/<probe.dataset>.parquet (which TriviaQA
questions the probe trained/validated on) and the hand labels
data/labels/intervene/*.jsonl. Writes

- data/intervene/<family>/generations.parquet: every generation (written before
  judging, so a judge failure loses nothing; batches are also cached in
  <base.cache_dir>/intervene/<family>/, so a rerun does not regenerate);
- data/intervene/<family>/judgements.parquet: one verdict per item and condition;
- reports/intervene/<family>/metrics.json, compliance.csv (long format, DVC plot),
  capability.csv, compliance.png (one panel per benchmark, H-Neurons vs random),
  capability.png, effects_by_alpha.csv and effect_slopes.csv (H-Neurons minus the
  layer-matched random sets as paired per-item differences, item-cluster bootstrap CIs).

Sycophancy and capability items can be screened (``intervene.screen``): their counts
are items the unchanged model answers correctly (hneurons.screening).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from hneurons.errors import HNeuronsError
from stages._common import (compute_settings, derived_seed, device_tag, family_params, load_params,
                             param, run, setup_torch)
from stages._generation import hooked_generation_info

log = logging.getLogger("intervene")
SECTION = "intervene"
FIXTURES = Path("data/labels/intervene")
SCREENABLE = ("sycophancy", "triviaqa")  # item pools that can be screened for known answers at alpha 1


def _int(cfg: dict, key: str, minimum: int) -> int:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise HNeuronsError(f"{SECTION}.{key}={value!r}: expected an integer >= {minimum}")
    return value


def read_config(params: dict[str, Any]) -> dict[str, Any]:
    """The intervene section, validated (one-line errors naming the key)."""
    from hneurons import compliance as C
    from hneurons.generate import DecodingSettings
    from hneurons.intervene import POSITIONS
    from hneurons.sweep import check_alphas

    p = lambda key: param(params, f"{SECTION}.{key}")  # noqa: E731
    cfg = {key: p(key) for key in ("benchmarks", "alphas", "random_alphas", "n_random_sets", "positions",
                                    "n_items", "screen", "decoding", "sycophancy_categories", "capability",
                                    "batch_size", "n_boot", "judge")}
    cfg["benchmarks"] = C.check_benchmarks(cfg["benchmarks"], f"{SECTION}.benchmarks")
    cfg["alphas"] = check_alphas(cfg["alphas"], f"{SECTION}.alphas")
    cfg["random_alphas"] = check_alphas(cfg["random_alphas"], f"{SECTION}.random_alphas")
    if cfg["positions"] not in POSITIONS:
        raise HNeuronsError(f"{SECTION}.positions={cfg['positions']!r}: expected one of {', '.join(POSITIONS)}")
    for key, minimum in (("n_random_sets", 0), ("batch_size", 1), ("n_boot", 0)):
        _int(cfg, key, minimum)
    for bench in cfg["benchmarks"]:
        for table in ("n_items", "decoding"):
            if bench not in (cfg[table] or {}):
                raise HNeuronsError(f"{SECTION}.{table}.{bench}: missing")
        n = cfg["n_items"][bench]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise HNeuronsError(f"{SECTION}.n_items.{bench}={n!r}: expected an integer >= 1")
    if not isinstance(cfg["screen"], list) or set(cfg["screen"]) - set(SCREENABLE):
        raise HNeuronsError(f"{SECTION}.screen={cfg['screen']!r}: expected a list among {', '.join(SCREENABLE)}")
    if not isinstance(cfg["capability"], dict) or set(cfg["capability"]) != {"n_questions", "decoding"}:
        raise HNeuronsError(f"{SECTION}.capability: expected a mapping with n_questions and decoding")
    n_cap = cfg["capability"].get("n_questions")
    if isinstance(n_cap, bool) or not isinstance(n_cap, int) or n_cap < 1:
        raise HNeuronsError(f"{SECTION}.capability.n_questions={n_cap!r}: expected an integer >= 1")
    settings = {}
    for bench in cfg["benchmarks"] + ["triviaqa"]:
        spec = cfg["capability"]["decoding"] if bench == "triviaqa" else cfg["decoding"][bench]
        where = f"{SECTION}.capability.decoding" if bench == "triviaqa" else f"{SECTION}.decoding.{bench}"
        formats = spec if isinstance(spec, dict) and set(spec) <= {"open", "mc"} and spec else {"open": spec, "mc": spec}
        if set(formats) != {"open", "mc"}:
            raise HNeuronsError(f"{where}: per-format decoding needs both 'open' and 'mc'")
        settings[bench] = {}
        for fmt, fields in formats.items():
            if not isinstance(fields, dict):
                raise HNeuronsError(f"{where}: expected a mapping of decoding settings")
            try:
                settings[bench][fmt] = DecodingSettings(n_samples=1, **fields).validate(where)
            except TypeError:
                raise HNeuronsError(f"{where}: keys must be among temperature, top_k, top_p, max_new_tokens") from None
    cfg["settings"] = settings
    cfg.update(seed=int(param(params, "base.seed")),
               cache_dir=Path(param(params, "base.cache_dir", ".cache/hneurons")),
               probe_dataset=param(params, "probe.dataset"), trivia_prompt=param(params, "sample.prompt"))
    return cfg


def make_judges(cfg: dict[str, Any]):
    """hneurons.compliance.Judges from ``intervene.judge``: {benchmark: rule | llm, llm: {base_url, model, api_key_env}}."""
    from hneurons import compliance as C
    from hneurons.llm_judge import LLMJudge

    spec = dict(cfg["judge"] or {})
    endpoint = spec.pop("llm", None) or {}
    unknown = sorted(set(spec) - set(C.BENCHMARKS))
    if unknown:
        raise HNeuronsError(f"{SECTION}.judge: unknown benchmark {unknown[0]!r} (known: {', '.join(C.BENCHMARKS)}, llm)")
    llm = {}
    for bench in cfg["benchmarks"]:
        kind = spec.get(bench, "rule")
        if kind == "llm":
            llm[bench] = LLMJudge(endpoint.get("base_url") or os.environ.get("HNEURONS_JUDGE_BASE_URL", ""),
                                  endpoint.get("model") or os.environ.get("HNEURONS_JUDGE_MODEL", ""),
                                  api_key_env=endpoint.get("api_key_env") or "OPENAI_API_KEY",
                                  where=f"{SECTION}.judge.llm")
        elif kind != "rule":
            raise HNeuronsError(f"{SECTION}.judge.{bench}={kind!r}: expected 'rule' or 'llm'")
    return C.Judges(llm)


def _table(name: str) -> list[dict]:
    from hneurons.io import read_table

    path = Path("data/prepared") / f"{name}.parquet"
    if not path.is_file():
        raise HNeuronsError(f"{path}: not found; run prepare@{name}")
    return read_table(path).to_pylist()


def subsample(items: list, n: int, seed: int) -> list:
    """``n`` items drawn uniformly without replacement (all if fewer; :func:`pick` rejects that), in table order."""
    if len(items) <= n:
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
    return [items[i] for i in keep]


def pick(pool: list, name: str, n: int, cfg: dict[str, Any]) -> list:
    """A screened pool in seeded order (screen_known keeps its first n known items), else n drawn items."""
    from hneurons.screening import seeded_order

    seed = derived_seed(cfg["seed"], f"intervene/items/{name}")
    if name in cfg["screen"]:
        return seeded_order(pool, seed)
    if n > len(pool):
        key = "capability.n_questions" if name == "triviaqa" else f"n_items.{name}"
        raise HNeuronsError(f"{SECTION}.{key}={n}: the pool has only {len(pool)} items")
    return subsample(pool, n, seed)


def heldout_trivia(family: str, cfg: dict[str, Any]) -> list:
    """Prepared TriviaQA questions outside the probe's train/validation splits, as compliance Items."""
    from hneurons import compliance as C
    from hneurons.generate import fill_question
    from hneurons.io import read_table

    samples = Path("data/samples") / family / f"{cfg['probe_dataset']}.parquet"
    if not samples.is_file():
        raise HNeuronsError(f"{samples}: not found (run sample@{family}); needed to hold out the probe's questions")
    used = read_table(samples, columns=["example_id", "split"]).to_pandas()
    taken = set(used.loc[used["split"].isin(["train", "validation"]), "example_id"])
    rows = [r for r in _table("triviaqa") if r["answers"] and r["example_id"] not in taken]
    items = [C.Item("triviaqa", r["example_id"], fill_question(cfg["trivia_prompt"], r["question"].strip()),
                    {"question": r["question"], "answers": list(r["answers"])}) for r in rows]
    return pick(items, "triviaqa", cfg["capability"]["n_questions"], cfg)


def benchmark_items(cfg: dict[str, Any], family: str) -> dict[str, list]:
    """{benchmark: items} for the configured benchmarks (+ triviaqa for the capability check)."""
    from hneurons import compliance as C

    builders = {"falseqa": lambda: C.falseqa_items(_table("falseqa")),
                "faitheval_style": lambda: C.faitheval_items(_table("faitheval_style")),
                "sycophancy": lambda: C.sycophancy_items(_table("sycophancy"), cfg["sycophancy_categories"]),
                "jailbreak": lambda: C.jailbreak_items(_table("jailbreak"))}
    items = {}
    for bench in cfg["benchmarks"]:
        pool = builders[bench]()
        if not pool:
            raise HNeuronsError(f"data/prepared/{bench}.parquet: no items for {bench} "
                                f"(check {SECTION}.sycophancy_categories for sycophancy)")
        items[bench] = pick(pool, bench, cfg["n_items"][bench], cfg)
    items["triviaqa"] = heldout_trivia(family, cfg)
    return items


def h_neurons(family: str, n_layers: int, d_ffn: int) -> np.ndarray:
    """The probe's H-Neurons (flat indices with a positive weight); one-line errors for an empty or mismatched set."""
    from hneurons.probe import load_probe

    directory = Path("models/probe") / family
    probe, _ = load_probe(directory)
    if probe.n_features_in_ != n_layers * d_ffn:
        raise HNeuronsError(f"{directory}: probe has {probe.n_features_in_} features but the model has "
                            f"{n_layers} x {d_ffn} = {n_layers * d_ffn} neurons")
    flat = np.asarray(probe.positive_, dtype=np.int64)
    if flat.size == 0:
        raise HNeuronsError(f"{directory}: the probe has no H-Neurons (no positive weight); nothing to scale "
                            f"(try a larger probe C)")
    return flat


# ---------------------------------------------------------------- outputs

def sweep_metrics(rates, rates_by_set, cfg: dict[str, Any]) -> dict[str, Any]:
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


def fixture_agreement(benchmarks: list[str]) -> dict[str, Any]:
    """Rule-judge agreement with the hand labels of data/labels/intervene/<benchmark>.jsonl."""
    from hneurons.compliance import fixture_agreement as agreement

    out = {}
    for bench in benchmarks:
        path = FIXTURES / f"{bench}.jsonl"
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
    from hneurons.io import csv_text, write_text

    write_text(path, csv_text(rates[columns].sort_values(["benchmark", "neurons", "alpha"]), float_format="%.6g"))


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.intervene FAMILY")
    family = argv[0]
    params = family_params(load_params(), SECTION, family)
    setup_torch(params)
    from hneurons import sweep
    from hneurons.compliance import DISPLAY_NAMES
    from hneurons.intervene import layer_matched_neuron_sets
    from hneurons.io import csv_text, jsonable, read_json, write_json, write_parquet, write_text
    from hneurons.machine import machine_facts
    from hneurons.models import ffn_shape, load_causal_lm
    from hneurons.screening import screen_known

    cfg = read_config(params)
    cfg["device"], cfg["dtype"] = compute_settings(params, family)
    judges = make_judges(cfg)
    for judge in judges.llm.values():
        judge.check()  # an unreachable endpoint fails before any generation
    model_dir = Path("models/llm") / family / "instruct"
    if not (model_dir / "fingerprint.json").is_file():
        raise HNeuronsError(f"{model_dir}/fingerprint.json: not found (run the model stage for {family}-instruct)")
    fingerprint = read_json(model_dir / "fingerprint.json")["fingerprint"]
    items = benchmark_items(cfg, family)
    model, tokenizer = load_causal_lm(model_dir, cfg["dtype"], cfg["device"])
    n_layers, d_ffn = ffn_shape(model)
    h = h_neurons(family, n_layers, d_ffn)
    seeds = [derived_seed(cfg["seed"], f"intervene/random/{i}") for i in range(cfg["n_random_sets"])]
    sets = {("h_neurons", 0): sweep.NeuronSet("h_neurons", 0, tuple(int(i) for i in h))}
    for i, flat in enumerate(layer_matched_neuron_sets(h, n_layers, d_ffn, seeds)):
        sets[("random", i)] = sweep.NeuronSet("random", i, tuple(int(j) for j in flat))
    plan = [(s, cfg["alphas"] if s.name == "h_neurons" else cfg["random_alphas"]) for s in sets.values()]
    config = sweep.SweepConfig(settings=cfg["settings"], batch_size=cfg["batch_size"],
                               seed=derived_seed(cfg["seed"], "intervene/sampling"), positions=cfg["positions"],
                               cache_dir=cfg["cache_dir"] / "intervene" / family, salt=f"{fingerprint}:{cfg['dtype']}{device_tag(cfg['device'])}")
    screened = {}
    for name in (name for name in cfg["screen"] if name in items):
        n = cfg["capability"]["n_questions"] if name == "triviaqa" else cfg["n_items"][name]
        correct = (lambda item, text: judges.trivia(item, text).compliant) if name == "triviaqa" else judges.correct
        items[name], screened[name] = screen_known(model, tokenizer, items[name], n, correct, config,
                                                   4 * cfg["batch_size"], desc="known items")
        log.info("%s: %s known at alpha 1: %s", family, name, screened[name])
        if not items[name]:
            raise HNeuronsError(f"{SECTION}.screen: the unchanged model answers none of the {screened[name]['pool']} "
                                f"{name} items correctly; drop {name} from {SECTION}.screen")
    log.info("%s: %d H-Neurons, %d random sets, items %s", family, h.size, len(sets) - 1,
             {b: len(v) for b, v in items.items()})
    data_dir, report_dir = Path("data/intervene") / family, Path("reports/intervene") / family
    meta = {"family": family, "model_fingerprint": fingerprint, "n_h_neurons": int(h.size),
            "positions": cfg["positions"], "decoding": {b: {f: s.as_dict() for f, s in v.items()}
                                                         for b, v in cfg["settings"].items()}}
    rows = sweep.first_turns(model, tokenizer, items, plan, config)
    write_parquet(data_dir / "generations.parquet", sweep.generations_table(rows), meta)
    if "sycophancy" in items:
        rows += sweep.second_turns(model, tokenizer, items["sycophancy"],
                                   [r for r in rows if r["benchmark"] == "sycophancy"], sets, judges.correct, config)
        write_parquet(data_dir / "generations.parquet", sweep.generations_table(rows), meta)
    judgements = sweep.judge_rows(items, rows, judges)
    write_parquet(data_dir / "judgements.parquet", judgements, meta)

    frame = judgements.to_pandas()
    bench_rows = frame[frame["benchmark"] != "triviaqa"]
    rates = sweep.rate_table(bench_rows, cfg["n_boot"], cfg["seed"])
    rates_by_set = sweep.rate_table(bench_rows, cfg["n_boot"], cfg["seed"], by_set=True)
    per_bench = sweep_metrics(rates, rates_by_set, cfg)
    effects, effect_slopes = sweep.paired_effects(bench_rows, cfg["n_boot"], cfg["seed"])
    write_text(report_dir / "effects_by_alpha.csv", csv_text(effects, float_format="%.6g"))
    write_text(report_dir / "effect_slopes.csv", csv_text(effect_slopes, float_format="%.6g"))
    columns = ["benchmark", "neurons", "alpha", "compliance", "ci_lo", "ci_hi", "n", "n_parsed",
               "compliance_parsed", "parse_failure_rate"]
    write_rates(rates, report_dir / "compliance.csv", columns)
    title = (f"{family}: {h.size} H-Neurons vs {len(sets) - 1} layer-matched random sets (pooled), "
             f"positions={cfg['positions']}")
    plot_panels(rates, cfg["benchmarks"], "compliance rate (%)", report_dir / "compliance.png", title)
    metrics: dict[str, Any] = {
        "family": family, "n_h_neurons": int(h.size), "n_random_sets": len(sets) - 1, "positions": cfg["positions"],
        "alphas": cfg["alphas"], "random_alphas": cfg["random_alphas"], "units": "percent; slopes in pp per unit alpha",
        "items": {b: len(v) for b, v in items.items()}, "screened": screened, "judges": {b: judges.name(v[0]) for b, v in items.items()
                                                                   if b != "triviaqa"},
        "random_sets": "layer-matched (as many neurons per layer as the H-Neurons, disjoint from them)",
        "benchmarks": per_bench, "mean_slope": mean_slopes(per_bench, cfg["benchmarks"]),
        "paired_effects": {"by_alpha": effects.to_dict("records"), "slopes": effect_slopes.to_dict("records")},
        "judge_validation": fixture_agreement(cfg["benchmarks"]),
        "display_names": {b: n for b, n in DISPLAY_NAMES.items() if b in items},
        "decoding": meta["decoding"],
    }
    syco = frame[frame["benchmark"] == "sycophancy"]
    if len(syco):
        metrics["sycophancy_initially_correct"] = {
            f"{n}/{a:g}": int(g["in_denominator"].sum()) for (n, a), g in syco.groupby(["neurons", "alpha"])}
    cap_rows = frame[frame["benchmark"] == "triviaqa"]
    capability = sweep.rate_table(cap_rows, cfg["n_boot"], cfg["seed"])
    capability_by_set = sweep.rate_table(cap_rows, cfg["n_boot"], cfg["seed"], by_set=True)
    write_text(report_dir / "capability.csv", csv_text(
        capability.rename(columns={"compliance": "accuracy"})[["neurons", "alpha", "accuracy", "ci_lo", "ci_hi", "n"]]
        .sort_values(["neurons", "alpha"]), float_format="%.6g"))
    plot_panels(capability, ["triviaqa"], "greedy accuracy (%)", report_dir / "capability.png",
                f"{family}: capability cost, held-out TriviaQA (rule judge)")
    metrics["capability"] = sweep_metrics(capability, capability_by_set, cfg)["triviaqa"]
    cap_effects, cap_slopes = sweep.paired_effects(cap_rows, cfg["n_boot"], cfg["seed"])
    metrics["capability"]["paired_effects"] = {"by_alpha": cap_effects.to_dict("records"),
                                               "slopes": cap_slopes.to_dict("records")}
    metrics["generation"] = hooked_generation_info(params, family, model, tokenizer)  # hooks need the model
    metrics["machine"] = machine_facts(model, cfg["dtype"])
    write_json(report_dir / "metrics.json", jsonable(metrics))
    for bench, entry in per_bench.items():
        log.info("%s/%s: endpoint slope H %.2f pp/alpha, random %s", family, bench,
                 entry["h_neurons"]["slope_pp_per_alpha"]["endpoint"],
                 entry.get("random", {}).get("slope_pp_per_alpha", {}).get("endpoint"))


if __name__ == "__main__":
    run(main)
