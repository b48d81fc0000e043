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
are items the unchanged model answers correctly (hneurons.screening). Items: hneurons.intervene_items;
the sweep: hneurons.sweep; rates, plots and metrics: hneurons.sweep_report.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hneurons import layout
from hneurons.errors import HNeuronsError
from stages._common import derived_seed, device_tag, run, setup_torch
from stages._generation import decoding_settings, hooked_generation_info
from stages.config import Config, SycophancyDecoding, load_config

log = logging.getLogger("intervene")
SECTION = "intervene"
SCREENABLE = ("sycophancy", "triviaqa")  # item pools that can be screened for known answers at alpha 1


def read_config(config: Config) -> dict[str, Any]:
    """The intervene section as the library takes it: its mappings as written in params.yaml, decoding per
    benchmark and format (``settings``) from the typed section (one-line errors naming the key)."""
    from hneurons import compliance as C
    from hneurons.intervene import POSITIONS
    from hneurons.sweep import check_alphas

    section = config.intervene.require(SECTION, "decoding", "judge")   # per benchmark: checked below
    raw = config.raw[SECTION]
    cfg = {key: raw[key] for key in ("benchmarks", "alphas", "random_alphas", "n_random_sets", "positions",
                                     "n_items", "screen", "decoding", "sycophancy_categories", "capability",
                                     "batch_size", "n_boot", "judge")}
    cfg["benchmarks"] = C.check_benchmarks(cfg["benchmarks"], f"{SECTION}.benchmarks")
    cfg["alphas"] = check_alphas(cfg["alphas"], f"{SECTION}.alphas")
    cfg["random_alphas"] = check_alphas(cfg["random_alphas"], f"{SECTION}.random_alphas")
    if section.positions not in POSITIONS:
        raise HNeuronsError(f"{SECTION}.positions={section.positions!r}: expected one of {', '.join(POSITIONS)}")
    decodings = section.decoding
    for bench in cfg["benchmarks"]:
        if bench not in (section.n_items or {}):
            raise HNeuronsError(f"{SECTION}.n_items.{bench}: missing")
        if decodings is None or getattr(decodings, bench) is None:
            raise HNeuronsError(f"{SECTION}.decoding.{bench}: missing")
        n = section.n_items[bench]
        if n is None or n < 1:
            raise HNeuronsError(f"{SECTION}.n_items.{bench}={n!r}: expected an integer >= 1")
    if set(section.screen) - set(SCREENABLE):
        raise HNeuronsError(f"{SECTION}.screen={section.screen!r}: expected a list among {', '.join(SCREENABLE)}")
    if section.capability.n_questions < 1:
        raise HNeuronsError(f"{SECTION}.capability.n_questions={section.capability.n_questions!r}: "
                            f"expected an integer >= 1")
    settings = {}
    for bench in cfg["benchmarks"] + ["triviaqa"]:
        spec = section.capability.decoding if bench == "triviaqa" else getattr(decodings, bench)
        where = f"{SECTION}.capability.decoding" if bench == "triviaqa" else f"{SECTION}.decoding.{bench}"
        formats = {"open": spec.open, "mc": spec.mc} if isinstance(spec, SycophancyDecoding) else {
            "open": spec, "mc": spec}
        if any(value is None for value in formats.values()):
            raise HNeuronsError(f"{where}: per-format decoding needs both 'open' and 'mc'")
        settings[bench] = {fmt: decoding_settings(value, where=where) for fmt, value in formats.items()}
    cfg["settings"] = settings
    cfg.update(seed=int(config.base.seed), cache_dir=Path(config.base.cache_dir or ".cache/hneurons"),
               probe_dataset=config.probe.dataset, trivia_prompt=config.sample.prompt)
    return cfg


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.intervene FAMILY")
    family = argv[0]
    params = load_config().family(SECTION, family)
    setup_torch(params)
    from hneurons import sweep
    from hneurons.intervene import h_neurons
    from hneurons.intervene_items import benchmark_items
    from hneurons.io import jsonable, read_json, write_json, write_parquet
    from hneurons.judge_config import compliance_judges
    from hneurons.machine import machine_facts
    from hneurons.models import ffn_shape, load_causal_lm
    from hneurons.screening import screen_pools
    from hneurons.sweep_report import write_reports

    cfg = read_config(params)
    cfg["device"], cfg["dtype"] = params.compute.device, params.compute.dtype
    judges = compliance_judges(cfg["judge"], cfg["benchmarks"], SECTION)
    for judge in judges.llm.values():
        judge.check()  # an unreachable endpoint fails before any generation
    model_dir = layout.model_dir(family, "instruct")
    if not (model_dir / "fingerprint.json").is_file():
        raise HNeuronsError(f"{model_dir}/fingerprint.json: not found (run the model stage for {family}-instruct)")
    fingerprint = read_json(model_dir / "fingerprint.json")["fingerprint"]
    items = benchmark_items(cfg, family, lambda tag: derived_seed(cfg["seed"], tag))
    model, tokenizer = load_causal_lm(model_dir, cfg["dtype"], cfg["device"])
    n_layers, d_ffn = ffn_shape(model)
    h = h_neurons(family, n_layers, d_ffn)
    seeds = [derived_seed(cfg["seed"], f"intervene/random/{i}") for i in range(cfg["n_random_sets"])]
    sets = sweep.neuron_sets(h, n_layers, d_ffn, seeds)
    plan = [(s, cfg["alphas"] if s.name == "h_neurons" else cfg["random_alphas"]) for s in sets.values()]
    config = sweep.SweepConfig(settings=cfg["settings"], batch_size=cfg["batch_size"],
                               seed=derived_seed(cfg["seed"], "intervene/sampling"), positions=cfg["positions"],
                               cache_dir=cfg["cache_dir"] / "intervene" / family,
                               salt=f"{fingerprint}:{cfg['dtype']}{device_tag(cfg['device'])}")
    screened = screen_pools(model, tokenizer, items, cfg, judges, config)
    log.info("%s: %d H-Neurons, %d random sets, items %s, screened %s", family, h.size, len(sets) - 1,
             {b: len(v) for b, v in items.items()}, screened)
    data_dir, report_dir = layout.data_dir("intervene", family), layout.report_dir("intervene", family)
    meta = {"family": family, "model_fingerprint": fingerprint, "n_h_neurons": int(h.size),
            "positions": cfg["positions"], "decoding": {b: {f: s.as_dict() for f, s in v.items()}
                                                         for b, v in cfg["settings"].items()}}
    judgements = sweep.run_sweep(model, tokenizer, items, plan, sets, judges, config,
                                 data_dir / layout.INTERVENE_GENERATIONS, meta)
    write_parquet(data_dir / layout.INTERVENE_JUDGEMENTS, judgements, meta)
    metrics = write_reports(judgements, items, judges, screened, cfg, family, int(h.size), len(sets) - 1,
                            meta["decoding"], report_dir)
    metrics["generation"] = hooked_generation_info(params, family, model, tokenizer)  # hooks need the model
    metrics["machine"] = machine_facts(model, cfg["dtype"])
    write_json(report_dir / layout.METRICS, jsonable(metrics))


if __name__ == "__main__":
    run(main)
