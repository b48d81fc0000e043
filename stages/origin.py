"""origin@<family>: where H-Neurons come from (paper §4): weight drift and backward transfer.

A family without a base model (no ``models/llm/<family>/base``) is skipped: its
metrics file says so in one line and the stage succeeds.

Reads ``models/llm/<family>/{base,instruct}``, the probe ``models/probe/<family>/``,
the instruct activations it was trained on (``data/activations/<family>/instruct/
<probe.dataset>/``: training rows for the random-neuron probes, and the
span rule / readout to reuse) and the prepared tables of ``origin.datasets``.
Writes

- ``reports/origin/<family>.json`` (metrics): drift of the H-Neurons vs the rest
  (global and per layer; significance = empirical p against ``origin.n_random_sets``
  uniform and as many layer-matched random sets, Welch t-test kept as secondary) and, per dataset, the instruct
  probe's AUROC on base-model rows with a bootstrap CI and the random-neuron
  probes' AUROC;
- ``reports/origin/<family>/``: ``h_neuron_ranks.csv`` (the Fig. 4b points),
  ``drift_strip.png``, ``transfer.csv``, ``drift_random_sets.csv`` (every random set of
  the drift controls: scope, kind random | random_layer_matched, seed, n, mean_rank,
  its leave-one-out empirical p, Welch t and p);
- ``data/origin/<family>/``: ``drift.parquet`` (every neuron: drifts, z-scores,
  ranks) and ``base_responses.parquet`` (base responses, judgements, selection).

Backward transfer (paper §6.3.1): prompt ``question + "\\nAnswer:"`` without a chat
template, sampling with ``origin.decoding`` (the paper leaves it unstated; its §5
sampling is the default), response cut at the first newline after the answer has
begun (leading blank lines kept: hneurons.origin.cut_at_newline); the rule judge
labels it (refusals and empty responses are dropped); classes are balanced by
seeded downsampling; CETT of the answer span on the base model with the probe's
span rule and readout; the probe is applied unchanged. TriviaQA questions are
those of the prepared table not in the probe's train/validation questions;
NQ-Open and BioASQ take their first rows; ``origin.n_questions`` is one count for every dataset or a
mapping dataset -> count.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from hneurons import origin
from hneurons.errors import HNeuronsError
from hneurons.io import atomic_path, jsonable, read_table, write_json, write_parquet, write_text
from hneurons.machine import machine_facts
from stages._common import (compute_settings, derived_seed, device_tag, family_params, load_params,
                             param, run, setup_torch)
from stages._generation import generation_backend

log = logging.getLogger("origin")
SECTION = "origin"



def read_config(params: dict[str, Any]) -> dict[str, Any]:
    """The origin section plus the probe keys it reuses (one-line errors naming the key)."""
    from hneurons.generate import DecodingSettings

    p = lambda key: param(params, f"{SECTION}.{key}")  # noqa: E731
    decoding = p("decoding")
    fields = {"temperature", "top_k", "top_p", "max_new_tokens"}
    if not isinstance(decoding, dict) or set(decoding) - fields:
        raise HNeuronsError(f"{SECTION}.decoding: expected a mapping with keys among {', '.join(sorted(fields))}")
    settings = DecodingSettings(n_samples=1, **decoding).validate(f"{SECTION}.decoding")
    cfg = {"datasets": list(p("datasets")), "n_questions": p("n_questions"), "decoding": settings,
           "batch_size": p("batch_size"), "extract_batch_size": p("extract_batch_size"),
           "max_per_class": p("max_per_class"), "n_boot": p("n_boot"), "n_random_sets": p("n_random_sets"),
           "probe_dataset": param(params, "probe.dataset"), "labelling": param(params, "probe.labelling"),
           "baseline_C": param(params, "probe.baseline_C"), "n_random_seeds": param(params, "probe.n_random_seeds"),
           "seed": int(param(params, "base.seed")),
           "cache_dir": Path(param(params, "base.cache_dir", ".cache/hneurons"))}
    unknown = sorted(set(cfg["datasets"]) - {"triviaqa", "nq_open", "bioasq"})
    if unknown:
        raise HNeuronsError(f"{SECTION}.datasets: {unknown} not supported (the paper's: triviaqa, nq_open, bioasq)")
    counts = cfg["n_questions"]
    if isinstance(counts, dict):
        missing = [name for name in cfg["datasets"] if name not in counts]
        if missing:
            raise HNeuronsError(f"{SECTION}.n_questions: no count for {', '.join(missing)}")
    counts = counts if isinstance(counts, dict) else {name: counts for name in cfg["datasets"]}
    for name in cfg["datasets"]:
        value = counts[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HNeuronsError(f"{SECTION}.n_questions.{name}={value!r}: expected an integer >= 1")
    cfg["n_questions"] = {name: counts[name] for name in cfg["datasets"]}
    for key, minimum in (("batch_size", 1), ("extract_batch_size", 1), ("n_boot", 0), ("n_random_sets", 0)):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < minimum:
            raise HNeuronsError(f"{SECTION}.{key}={cfg[key]!r}: expected an integer >= {minimum}")
    if cfg["max_per_class"] is not None and (not isinstance(cfg["max_per_class"], int) or cfg["max_per_class"] < 1):
        raise HNeuronsError(f"{SECTION}.max_per_class={cfg['max_per_class']!r}: expected null or an integer >= 1")
    return cfg



# ---------------------------------------------------------------- drift

def drift_outputs(table: origin.DriftTable, h: np.ndarray, cfg: dict[str, Any], family: str,
                  data_dir: Path, report_dir: Path) -> dict[str, Any]:
    """Write drift.parquet, h_neuron_ranks.csv and the strip plot; return the drift metrics."""
    seeds = [derived_seed(cfg["seed"], f"origin/drift/{i}") for i in range(cfg["n_random_sets"])]
    matched = [derived_seed(cfg["seed"], f"origin/drift/layer/{i}") for i in range(cfg["n_random_sets"])]
    report = origin.drift_report(table, h, seeds, layer_matched_seeds=matched)
    frame = table.frame(h).rename(columns={"is_selected": "is_h_neuron"})
    write_parquet(data_dir / "drift.parquet", pa.Table.from_pandas(frame, preserve_index=False),
                  {"family": family, "n_h_neurons": int(h.size)})
    ranks = frame[frame["is_h_neuron"]][["flat_index", "layer", "neuron", "drift_up", "drift_down", "rank",
                                         "rank_layer"]]
    write_text(report_dir / "h_neuron_ranks.csv", ranks.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    summary = report["global"]["h_neurons"]
    title = (f"{family}: {summary['n']} H-Neurons, mean rank {summary['mean_rank']:.3f} "
             f"(random {report['global']['random']['mean_rank']['mean']:.3f}), "
             f"empirical {origin.significance_label(summary['p_empirical'])}")
    origin.plot_drift_strip(ranks["rank"].to_numpy(), title, report_dir / "drift_strip.png", seed=cfg["seed"])
    random_rows = []
    for scope in ("global", "per_layer"):
        for kind in ("random", "random_layer_matched"):
            random_rows += [{"scope": scope, "kind": kind, **run} for run in report[scope][kind].pop("runs")]
    columns = ["scope", "kind", "seed", "n", "mean_rank", "p_empirical", "t", "p_value"]
    write_text(report_dir / "drift_random_sets.csv", pd.DataFrame(random_rows, columns=columns).to_csv(
        index=False, float_format="%.6g", lineterminator="\n"))
    return report


# ---------------------------------------------------------------- backward transfer

def transfer_questions(name: str, family: str, cfg: dict[str, Any]) -> list[dict]:
    """The first ``n_questions[name]`` eligible rows of data/prepared/<name>.parquet (with reference answers)."""
    path = Path("data/prepared") / f"{name}.parquet"
    if not path.is_file():
        raise HNeuronsError(f"{path}: not found; run prepare@{name}")
    rows = [r for r in read_table(path, columns=["example_id", "question", "answers"]).to_pylist() if r["answers"]]
    if name == cfg["probe_dataset"]:
        samples = Path(f"data/samples/{family}/{name}.parquet")
        used = read_table(samples, columns=["example_id", "split"]).to_pandas()
        taken = set(used.loc[used["split"].isin(["train", "validation"]), "example_id"])
        rows = [r for r in rows if r["example_id"] not in taken]
    n = cfg["n_questions"][name]
    if n > len(rows):
        raise HNeuronsError(f"origin.n_questions.{name}={n}: only {len(rows)} eligible {name} questions "
                            f"(with answers{', outside the probe train/validation split' if name == cfg['probe_dataset'] else ''})")
    return rows[:n]


def base_responses(backend, tokenizer, name: str, questions: list[dict], cfg: dict[str, Any], salt: str,
                   lines: origin.LineTokens) -> pd.DataFrame:
    """Generate with the base model's backend (``compute.backend``), cut at the first newline, judge, label
    and balance: one row per question.

    label: 0 = correct (faithful), 1 = wrong (hallucinated), -1 = refusal/empty
    (not used); ``selected`` marks the balanced set.
    """
    from hneurons.consistency import select_balanced
    from hneurons.generate import generate_cached
    from hneurons.judge import RuleJudge

    prompts = [origin.base_prompt_ids(tokenizer, q["question"]) for q in questions]
    seeds = [derived_seed(cfg["seed"], f"origin/{name}/{q['example_id']}") for q in questions]
    generated = generate_cached(backend, prompts, cfg["decoding"], seeds, cfg["batch_size"],
                                cfg["cache_dir"] / "origin", salt=salt, progress=True, desc=f"base {name}")
    judge = RuleJudge()
    rows = []
    for question, prompt, ids in zip(questions, prompts, generated):
        kept = origin.cut_at_newline(ids, lines)
        text = tokenizer.decode(kept, skip_special_tokens=True)
        verdict = judge.judge(question["question"], text, question["answers"])
        label = -1 if verdict.refusal else (0 if verdict.correct else 1)
        rows.append({"dataset": name, "example_id": question["example_id"], "question": question["question"],
                     "answers": list(question["answers"]), "prompt_ids": prompt, "response_ids": kept,
                     "response": text, "cut": len(kept) < len(ids), "correct": bool(verdict.correct),
                     "refusal": bool(verdict.refusal), "label": label})
    frame = pd.DataFrame(rows)
    frame["selected"] = select_balanced(frame["label"].tolist(), cfg["max_per_class"],
                                        derived_seed(cfg["seed"], f"origin/{name}/balance"))
    return frame


def base_features(model, tokenizer, frame: pd.DataFrame, name: str, meta: dict[str, Any],
                  cfg: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict]:
    """Answer-span CETT of the selected base responses: (X float32[n, D], y int64[n], span drop counts)."""
    from hneurons.detect import answer_features

    records = frame[frame["selected"]].to_dict("records")
    X, rows, dropped = answer_features(model, tokenizer, records, name, meta, cfg["extract_batch_size"])
    return X, rows["label"].to_numpy().astype(np.int64), dropped


def instruct_training_rows(acts: Path, labelling: str) -> tuple[Any, np.ndarray, np.ndarray]:
    """The probe's training rows: (X float32[n, D] as a lazy column reader, y int8[n], sample weight float64[n])."""
    from hneurons.detect import probe_training_rows

    rows = probe_training_rows(acts, labelling)
    return rows.X, rows.y, rows.weight


def transfer_metrics(probe, X: np.ndarray, y: np.ndarray, train: tuple, h: np.ndarray, d_ffn: int,
                     cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """The probe's AUROC on base rows (CI) and the random-neuron probes' AUROC (mean, sd, per seed)."""
    from hneurons.probe import random_baselines
    from hneurons.stats import auroc, mean_sd

    out = origin.probe_transfer(probe, X, y, cfg["n_boot"], derived_seed(cfg["seed"], f"origin/{name}/ci"))
    X_train, y_train, weight = train
    seeds = [derived_seed(cfg["seed"], f"random/{i}") for i in range(cfg["n_random_seeds"])]
    runs = random_baselines(X_train, y_train, X, h, seeds, d_ffn, C=cfg["baseline_C"], sample_weight=weight)
    values = [auroc(y, r.scores) for r in runs]
    out["random_neurons"] = {"n_neurons": int(h.size), "auroc": mean_sd(values),
                             "per_seed": [{"seed": r.seed, "auroc": v} for r, v in zip(runs, values)]}
    return out


# ---------------------------------------------------------------- main

def skip(family: str, reason: str, data_dir: Path, report_dir: Path, metrics_path: Path) -> None:
    """Record a skipped family: one line in the metrics and in each output directory."""
    line = f"origin skipped for family {family!r}: {reason}"
    log.info("%s", line)
    write_text(data_dir / "skipped.txt", line + "\n")
    write_text(report_dir / "skipped.txt", line + "\n")
    write_json(metrics_path, {"family": family, "skipped": line})


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.origin FAMILY")
    family = argv[0]
    params = family_params(load_params(), SECTION, family)
    cfg = read_config(params)
    cfg["device"], cfg["dtype"] = compute_settings(params, family)
    base_dir, instruct_dir = Path(f"models/llm/{family}/base"), Path(f"models/llm/{family}/instruct")
    data_dir, report_dir = Path(f"data/origin/{family}"), Path(f"reports/origin/{family}")
    metrics_path = Path(f"reports/origin/{family}.json")
    if not (base_dir / "config.json").is_file():
        skip(family, f"no base model ({base_dir} does not exist); the paper's origin analysis needs a "
                     f"base + instruct pair", data_dir, report_dir, metrics_path)
        return
    setup_torch(params)
    from hneurons.activations import activation_metadata
    from hneurons.checkpoint import Checkpoint
    from hneurons.materialize import read_fingerprint
    from hneurons.models import load_causal_lm
    from hneurons.probe import load_probe

    probe, _ = load_probe(Path(f"models/probe/{family}"))
    acts = Path(f"data/activations/{family}/instruct/{cfg['probe_dataset']}")
    if not acts.is_dir():
        raise HNeuronsError(f"{acts}: not found (run the extract stage for family {family!r})")
    meta = activation_metadata(acts)
    base, tokenizer = load_causal_lm(base_dir, cfg["dtype"], cfg["device"])
    instruct = Checkpoint(instruct_dir)  # read one layer at a time: only the base model is held
    shape = origin.check_pair(base, instruct, str(base_dir), str(instruct_dir))
    n_features, d_ffn = shape["n_layers"] * shape["d_ffn"], shape["d_ffn"]
    if probe.n_features_in_ != n_features:
        raise HNeuronsError(f"models/probe/{family}: the probe has {probe.n_features_in_} features; "
                            f"{base_dir} has {n_features} FFN neurons")
    h = probe.positive_
    if h.size == 0:
        raise HNeuronsError(f"models/probe/{family}: the probe has no positive weights (no H-Neurons to analyse); "
                            f"widen probe.C_grid")
    metrics: dict[str, Any] = {"family": family, "n_h_neurons": int(h.size), "n_neurons": n_features,
                               "base_fingerprint": read_fingerprint(base_dir)["fingerprint"],
                               "instruct_fingerprint": read_fingerprint(instruct_dir)["fingerprint"]}
    table = origin.DriftTable.from_models(base, instruct)
    cfg["backend"], _, _ = generation_backend(params, family, base_dir, base, tokenizer, role="base")
    metrics["generation"] = cfg["backend"].info()
    with atomic_path(data_dir) as data_tmp, atomic_path(report_dir) as report_tmp:
        analyse(metrics, table, family, cfg, probe, h, d_ffn, base, tokenizer, acts, meta, data_tmp, report_tmp)
    metrics["machine"] = machine_facts(base, cfg["dtype"])
    write_json(metrics_path, jsonable(metrics))


def analyse(metrics: dict[str, Any], table: origin.DriftTable, family: str, cfg: dict[str, Any], probe,
            h: np.ndarray, d_ffn: int, base, tokenizer, acts: Path, meta: dict[str, Any], data_dir: Path,
            report_dir: Path) -> None:
    """Drift and backward transfer into ``metrics``; writes the files of data/origin/<family>/ and
    reports/origin/<family>/ under ``data_dir`` and ``report_dir`` (temporary siblings renamed at the end)."""
    metrics["drift"] = drift_outputs(table, h, cfg, family, data_dir, report_dir)
    log.info("%s: H-Neuron mean drift rank %.3f (empirical p=%.3g, Welch p=%.3g), per layer %.3f", family,
             metrics["drift"]["global"]["h_neurons"]["mean_rank"], metrics["drift"]["global"]["h_neurons"]["p_empirical"],
             metrics["drift"]["global"]["h_neurons"]["p_value"], metrics["drift"]["per_layer"]["h_neurons"]["mean_rank"])

    train = instruct_training_rows(acts, cfg["labelling"])
    lines = origin.line_tokens(tokenizer)
    salt = f"{metrics['base_fingerprint']}/{cfg['dtype']}{device_tag(cfg['device'])}/origin"
    frames, transfer, rows = [], {}, []
    for name in cfg["datasets"]:
        frame = base_responses(cfg["backend"], tokenizer, name, transfer_questions(name, family, cfg), cfg, salt,
                               lines)
        frames.append(frame)
        X, y, dropped = base_features(base, tokenizer, frame, name, meta, cfg)
        counts = {"n_questions": len(frame), "n_correct": int((frame["label"] == 0).sum()),
                  "n_wrong": int((frame["label"] == 1).sum()), "n_refusal": int((frame["label"] == -1).sum()),
                  "n_selected": int(frame["selected"].sum()), "span_dropped": dropped}
        if len(set(y.tolist())) < 2:
            transfer[name] = {**counts, "auroc": None, "note": "fewer than two classes after balancing"}
            log.warning("%s/%s: no AUROC, one class only (%s)", family, name, counts)
            continue
        transfer[name] = {**counts, **transfer_metrics(probe, X, y, train, h, d_ffn, cfg, name)}
        result = transfer[name]
        rows.append({"dataset": name, "n": result["n"], "auroc": result["auroc"],
                     "auroc_lo": result["auroc_ci95"][0], "auroc_hi": result["auroc_ci95"][1],
                     "random_auroc": result["random_neurons"]["auroc"]["mean"]})
        log.info("%s/%s: AUROC %.3f [%.3f, %.3f] on %d base rows; random neurons %.3f", family, name,
                 result["auroc"], *result["auroc_ci95"], result["n"], rows[-1]["random_auroc"])
    metrics["transfer"] = transfer
    metrics["decoding"] = cfg["decoding"].as_dict()
    responses = pd.concat(frames, ignore_index=True)
    write_parquet(data_dir / "base_responses.parquet", pa.Table.from_pandas(responses, preserve_index=False),
                  {"family": family, "decoding": metrics["decoding"], "prompt_suffix": origin.BASE_SUFFIX})
    columns = ["dataset", "n", "auroc", "auroc_lo", "auroc_hi", "random_auroc"]
    write_text(report_dir / "transfer.csv", pd.DataFrame(rows, columns=columns).to_csv(
        index=False, float_format="%.6g", lineterminator="\n"))


if __name__ == "__main__":
    run(main)
