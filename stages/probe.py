"""probe@<family>: activations -> L1 probe, C choice, H-Neurons, baselines.

Reads ``data/activations/<family>/instruct/<probe.dataset>/`` (all shards: training
rows of both regions, validation and test answer rows; each split is copied, in its
stored dtype, into a raw row file in a temporary directory ($TMPDIR) and read back
in row blocks, so the fit holds a few rows at a time), the validation questions
of ``data/samples/<family>/<probe.dataset>.parquet`` and the instruct model (for
the C criterion's task term: greedy accuracy with the candidate H-Neurons scaled
by ``probe.task.alpha``). Writes

- ``models/probe/<family>/``: ``h_neurons.parquet``, ``probe.safetensors`` +
  ``probe.json`` (load with hneurons.probe.load_probe), ``neurons_by_C.parquet``
  (every non-zero weight at every C), ``stability.parquet`` (bootstrap selection
  frequency of every neuron selected at least once);
- ``reports/probe/<family>/``: ``metrics.json``, ``c_grid.csv``, ``count_vs_C.csv``,
  ``per_layer.csv``, ``baselines.csv`` and PNGs of metric vs C, count vs C and
  H-Neurons per layer.

Baselines (documented choices; the paper leaves them open): random neurons as
many as the H-Neurons, uniform over all other neurons, one draw per seed, and a
layer-matched variant; each is a z-scored L2 logistic regression (C =
``probe.baseline_C``) trained on the probe's own training rows and labels, as is
an L2 refit on the H-Neurons alone (the like-for-like comparison). The length-only
probe uses log(1 + response token count) (and, second variant, also the answer
span's token count), trained 1-vs-1 on training answer rows. All detection
metrics are on test answer rows (label 1 = hallucinated), as in the paper.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hneurons.errors import HNeuronsError
from hneurons.io import atomic_path, csv_text, dumps_json, jsonable, write_parquet
from hneurons.machine import machine_facts
from hneurons.probe import (LABELLINGS, SOLVERS, L1Probe, check_C_grid, dense_probe_scores, h_neuron_frame,
                            random_baselines, save_probe, select_C, stability_selection, training_labels)
from hneurons.stats import detection_summary, mean_sd
from stages._common import compute_settings, derived_seed, family_params, load_params, param, run, setup_torch
from stages._generation import hooked_generation_info

log = logging.getLogger("probe")
SECTION = "probe"


# ---------------------------------------------------------------- params


def read_config(params: dict[str, Any]) -> dict[str, Any]:
    """The probe section, validated (one-line errors naming probe.<key>)."""
    p = lambda key, *default: param(params, f"{SECTION}.{key}", *default)  # noqa: E731
    cfg = {
        "dataset": p("dataset"), "labelling": p("labelling"),
        "C_grid": check_C_grid(p("C_grid"), f"{SECTION}.C_grid"),
        "tol": p("tol"), "standardize": p("standardize"), "solver": p("solver"),
        "screen_size": p("screen_size"), "max_add": p("max_add"), "kkt_tol": p("kkt_tol"),
        "max_iter": p("max_iter"),
        "n_bootstrap": p("n_bootstrap"), "n_random_seeds": p("n_random_seeds"),
        "baseline_C": p("baseline_C"), "n_ci_boot": p("n_ci_boot"),
        "task": {key: p(f"task.{key}") for key in
                 ("alpha", "n_questions", "max_new_tokens", "batch_size")},
        "seed": int(param(params, "base.seed")),
    }
    if cfg["labelling"] not in LABELLINGS:
        raise HNeuronsError(f"{SECTION}.labelling={cfg['labelling']!r}: expected one of {', '.join(LABELLINGS)}")
    if cfg["solver"] not in SOLVERS:
        raise HNeuronsError(f"{SECTION}.solver={cfg['solver']!r}: expected one of {', '.join(SOLVERS)}")
    positive = {"tol": cfg["tol"], "baseline_C": cfg["baseline_C"]}
    for key, value in positive.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise HNeuronsError(f"{SECTION}.{key}={value!r}: expected a number > 0")
    counts = {"screen_size": 1, "max_add": 1, "max_iter": 1, "n_bootstrap": 0, "n_random_seeds": 5,
              "n_ci_boot": 0,
              "task.n_questions": 0, "task.max_new_tokens": 1, "task.batch_size": 1}
    for key, minimum in counts.items():
        value = cfg["task"][key[5:]] if key.startswith("task.") else cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise HNeuronsError(f"{SECTION}.{key}={value!r}: expected an integer >= {minimum}")
    if not isinstance(cfg["standardize"], bool):
        raise HNeuronsError(f"{SECTION}.standardize={cfg['standardize']!r}: expected true or false")
    if not isinstance(cfg["kkt_tol"], (int, float)) or cfg["kkt_tol"] < 0:
        raise HNeuronsError(f"{SECTION}.kkt_tol={cfg['kkt_tol']!r}: expected a number >= 0")
    alpha = cfg["task"]["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not np.isfinite(alpha):
        raise HNeuronsError(f"{SECTION}.task.alpha={alpha!r}: expected a finite number")
    return cfg


# ---------------------------------------------------------------- inputs

def read_split(path: Path, split: str, answer_only: bool, scratch: Path):
    """One split's rows: (frame, X float32[n, D] as a hneurons.activations.RowMatrix in ``scratch``).

    The class counts are checked from the frame before any cett is decoded; a split
    without two rows of each label is a one-line error.
    """
    from hneurons.activations import read_activation_frame, spill_activations

    where = {"split": split, "region": "answer"} if answer_only else {"split": split}
    frame = read_activation_frame(path, where)
    answer = frame["region"].to_numpy() == "answer"
    labels = frame["label"].to_numpy()[answer]
    for cls, name in ((1, "hallucinated"), (0, "faithful")):
        n = int(np.sum(labels == cls))
        if n < 2:
            raise HNeuronsError(f"{path}: split {split!r} has {n} {name} answer rows; the probe needs >= 2 "
                                f"of each class per split (more questions in the sample/extract stages)")
    return spill_activations(path, scratch, where)


def validation_questions(samples_path: Path, n_questions: int) -> pd.DataFrame:
    """Validation-split questions in file order, first n (0 = all).

    Columns example_id, question, answers, prompt_ids: the prompt ids are the ones
    the sample stage generated from, so the task term asks exactly as sampling did.
    """
    from hneurons.io import read_schema, read_table

    if not samples_path.is_file():
        raise HNeuronsError(f"{samples_path}: not found (run the sample stage)")
    names = set(read_schema(samples_path).names)
    missing = {"example_id", "answers", "prompt_ids", "split"} - names
    if missing:
        raise HNeuronsError(f"{samples_path}: missing columns {sorted(missing)}")
    columns = ["example_id", "answers", "prompt_ids", "split"] + (["question"] if "question" in names else [])
    frame = read_table(samples_path, columns=columns).to_pandas()
    frame = frame[frame["split"] == "validation"].drop_duplicates("example_id").reset_index(drop=True)
    if "question" not in frame.columns:
        frame["question"] = ""
    if frame.empty:
        raise HNeuronsError(f"{samples_path}: no validation questions for the C criterion's task term")
    return frame.head(n_questions) if n_questions else frame


def make_task_accuracy(model, tokenizer, questions: pd.DataFrame, task: dict[str, Any]):
    """Callable flat_indices -> greedy accuracy on ``questions`` with those neurons scaled by task.alpha.

    Judged by the rule judge (alias match, refusals wrong). Results are memoised per neuron set.
    """
    from hneurons.generate import DecodingSettings, generate
    from hneurons.intervene import NeuronScaler
    from hneurons.judge import RuleJudge

    settings = DecodingSettings(n_samples=1, temperature=0.0, top_k=0, top_p=1.0,
                                max_new_tokens=task["max_new_tokens"]).validate(f"{SECTION}.task")
    prompts = [[int(t) for t in ids] for ids in questions["prompt_ids"]]
    judge = RuleJudge()
    cache: dict[tuple[int, ...], float] = {}

    def task_accuracy(flat_indices: np.ndarray) -> float:
        key = tuple(int(i) for i in flat_indices)
        if key in cache:
            return cache[key]
        with NeuronScaler(model, flat_indices, alpha=task["alpha"]):
            outputs = generate(model, tokenizer, prompts, settings, None, task["batch_size"], progress=True)
        correct = [judge.judge(q, tokenizer.decode(ids, skip_special_tokens=True), list(a)).correct
                   for q, a, ids in zip(questions["question"], questions["answers"], outputs)]
        accuracy = float(np.mean(correct))
        log.info("task accuracy with %d neurons at alpha=%g: %.4f", len(flat_indices), task["alpha"], accuracy)
        cache[key] = accuracy
        return accuracy

    return task_accuracy


# ---------------------------------------------------------------- outputs



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
    fig.savefig(out / "metric_vs_C.png", dpi=100, metadata=meta)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(grid["C"], grid["n_positive"], marker="o", label="positive (H-Neurons)")
    ax.plot(grid["C"], grid["n_negative"], marker="s", label="negative")
    ax.axvline(chosen_C, color="grey", linestyle="--")
    ax.set(xscale="log", xlabel="C", ylabel="neurons with non-zero weight", title="Sparsity vs C")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "count_vs_C.png", dpi=100, metadata=meta)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(per_layer["layer"], per_layer["n_h_neurons"])
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(xlabel="layer", ylabel="H-Neurons", title=f"H-Neurons per layer (C={chosen_C:g})")
    fig.tight_layout()
    fig.savefig(out / "per_layer.png", dpi=100, metadata=meta)
    plt.close(fig)


def neurons_by_C(probes, grid: list[float], d_ffn: int) -> pd.DataFrame:
    rows = []
    for C, fitted in zip(grid, probes):
        flat = fitted.support_
        rows.append(pd.DataFrame({"C": C, "flat_index": flat.astype(np.int64),
                                  "layer": (flat // d_ffn).astype(np.int32),
                                  "neuron": (flat % d_ffn).astype(np.int32),
                                  "weight": fitted.coef_[0, flat]}))
    return pd.concat(rows, ignore_index=True)


def stability_frame(frequency: np.ndarray, h_neurons: np.ndarray, d_ffn: int) -> pd.DataFrame:
    flat = np.flatnonzero(frequency > 0)
    return pd.DataFrame({"flat_index": flat.astype(np.int64), "layer": (flat // d_ffn).astype(np.int32),
                         "neuron": (flat % d_ffn).astype(np.int32), "selection_frequency": frequency[flat],
                         "h_neuron": np.isin(flat, h_neurons)})


def write_table(path: Path, frame: pd.DataFrame, metadata: dict[str, Any]) -> None:
    import pyarrow as pa

    write_parquet(path, pa.Table.from_pandas(frame, preserve_index=False), jsonable(metadata))


def evaluate_on_test(best: L1Probe, summary, X: np.ndarray, y: np.ndarray, weight: np.ndarray,
                     train: pd.DataFrame, X_test: np.ndarray, test: pd.DataFrame, d_ffn: int,
                     cfg: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Test-set summaries of the probe and every baseline; plus per-seed baseline rows for baselines.csv."""
    h = best.positive_
    out = {"probe": summary(best.predict_proba(X_test)[:, 1]),
           "h_neurons_l2": summary(dense_probe_scores(X[:, h], y, X_test[:, h], cfg["baseline_C"], weight))}
    seeds = [derived_seed(cfg["seed"], f"random/{i}") for i in range(cfg["n_random_seeds"])]
    rows = []
    for variant, matched in (("random", False), ("random_layer_matched", True)):
        runs = random_baselines(X, y, X_test, h, seeds, d_ffn, layer_matched=matched, C=cfg["baseline_C"],
                                sample_weight=weight)
        per_seed = [dict(seed=r.seed, **summary(r.scores)) for r in runs]
        rows += [{"variant": variant, "seed": s["seed"], "accuracy": s["accuracy"], "auroc": s["auroc"]}
                 for s in per_seed]
        out[variant] = {"n_seeds": len(runs), "n_neurons": int(h.size),
                        "accuracy": mean_sd([s["accuracy"] for s in per_seed]),
                        "auroc": mean_sd([s["auroc"] for s in per_seed]), "per_seed": per_seed}
    from hneurons.detect import length_probe_scores

    out["length"] = {name: summary(scores)
                     for name, scores in length_probe_scores(train, test, cfg["baseline_C"]).items()}
    return out, rows


def write_outputs(family: str, selection, frequency: np.ndarray | None, metrics: dict[str, Any],
                  lineage: dict[str, Any], per_layer: pd.DataFrame, baseline_rows: list[dict[str, Any]],
                  d_ffn: int) -> None:
    """Write models/probe/<family>/ and reports/probe/<family>/, each directory atomically."""
    best, grid = selection.best_probe, pd.DataFrame(selection.table)
    h = best.positive_
    with atomic_path(f"models/probe/{family}") as tmp:
        tmp.mkdir()
        write_table(tmp / "h_neurons.parquet", h_neuron_frame(best, d_ffn, frequency), lineage)
        write_table(tmp / "neurons_by_C.parquet", neurons_by_C(selection.probes, list(grid["C"]), d_ffn), lineage)
        stability = np.zeros(best.n_features_in_) if frequency is None else frequency
        write_table(tmp / "stability.parquet", stability_frame(stability, h, d_ffn), lineage)
        save_probe(best, tmp, jsonable({**lineage, "n_layers": len(per_layer), "d_ffn": d_ffn}))
    with atomic_path(f"reports/probe/{family}") as tmp:
        tmp.mkdir()
        texts = {"metrics.json": dumps_json(jsonable(metrics)), "c_grid.csv": csv_text(grid),
                 "count_vs_C.csv": csv_text(grid[["C", "n_positive", "n_negative", "per_mille"]]),
                 "per_layer.csv": csv_text(per_layer), "baselines.csv": csv_text(pd.DataFrame(baseline_rows))}
        for name, text in texts.items():
            (tmp / name).write_text(text, encoding="utf-8")
        plot_pngs(tmp, grid, per_layer, selection.best_C)


# ---------------------------------------------------------------- main

def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.probe FAMILY")
    family = argv[0]
    params = family_params(load_params(), SECTION, family)
    setup_torch(params)
    cfg = read_config(params)
    cfg["device"], cfg["dtype"] = compute_settings(params, family)
    from hneurons.activations import activation_metadata

    acts = Path(f"data/activations/{family}/instruct/{cfg['dataset']}")
    if not acts.is_dir():
        raise HNeuronsError(f"{acts}: not found (run the extract stage for family {family!r})")
    meta = activation_metadata(acts)
    with tempfile.TemporaryDirectory(prefix="hneurons-probe-") as scratch:
        fit_and_write(family, params, cfg, acts, meta, Path(scratch))


def fit_and_write(family: str, params: dict[str, Any], cfg: dict[str, Any], acts: Path, meta: dict[str, Any],
                  scratch: Path) -> None:
    """Read the splits into row files under ``scratch``, select C, refit, evaluate, write the outputs."""
    from hneurons.models import load_causal_lm

    n_layers, d_ffn = int(meta["n_layers"]), int(meta["d_ffn"])
    train, X = read_split(acts, "train", cfg["labelling"] == "1-vs-1", scratch)
    keep, y = training_labels(train["region"].to_numpy(), train["label"].to_numpy(), cfg["labelling"])
    weight = keep.astype(np.float64)
    val, X_val = read_split(acts, "validation", True, scratch)
    test, X_test = read_split(acts, "test", True, scratch)
    y_val, y_test = val["label"].to_numpy().astype(np.int64), test["label"].to_numpy().astype(np.int64)
    if X.shape[1] != n_layers * d_ffn:
        raise HNeuronsError(f"{acts}: {X.shape[1]} features but metadata says {n_layers} x {d_ffn}")
    log.info("%s: train %d rows (%d questions), validation %d, test %d answer rows; %d features",
             family, X.shape[0], train["example_id"].nunique(), len(val), len(test), X.shape[1])

    template = L1Probe(tol=cfg["tol"], standardize=cfg["standardize"], solver=cfg["solver"],
                       max_iter=cfg["max_iter"], screen_size=cfg["screen_size"], max_add=cfg["max_add"],
                       kkt_tol=cfg["kkt_tol"], progress=True)
    model, tokenizer = load_causal_lm(f"models/llm/{family}/instruct", cfg["dtype"], cfg["device"])
    questions = validation_questions(Path(f"data/samples/{family}/{cfg['dataset']}.parquet"),
                                     cfg["task"]["n_questions"])
    task_accuracy = make_task_accuracy(model, tokenizer, questions, cfg["task"])
    unsuppressed = task_accuracy(np.zeros(0, dtype=np.int64))
    selection = select_C(template, X, y, X_val, y_val, cfg["C_grid"], task_accuracy, sample_weight=weight,
                         progress=True, where=f"{SECTION}.C_grid")
    best = selection.best_probe
    h = best.positive_
    log.info("chosen C=%g: %d H-Neurons (%.4f per mille)", selection.best_C, h.size, 1000 * h.size / X.shape[1])
    for row in selection.table:
        if not row["kkt_converged"]:
            log.warning("C=%g: working set stopped after max rounds with KKT violation %.3g > kkt_tol; "
                        "its weights are approximate (raise probe.max_add)", row["C"], row["kkt_max_violation"])

    groups = train["example_id"].to_numpy()
    frequency = stability_selection(best, X, y, groups, cfg["n_bootstrap"], derived_seed(cfg["seed"], "stability"),
                                    sample_weight=weight, strata=train["label"].to_numpy(), progress=True)

    ci = {"n_boot": cfg["n_ci_boot"], "seed": derived_seed(cfg["seed"], "ci")}
    summary = lambda scores: detection_summary(y_test, scores, ci["n_boot"], ci["seed"])  # noqa: E731
    test_metrics, baseline_rows = evaluate_on_test(best, summary, X, y, weight, train, X_test, test, d_ffn, cfg)
    test_metrics["ci"] = ci

    per_layer = pd.DataFrame({"layer": np.arange(n_layers),
                              "n_h_neurons": np.bincount(h // d_ffn, minlength=n_layers)})
    lineage = {"family": family, "dataset": cfg["dataset"], "activations_fingerprint": meta.get("fingerprint"),
               "chosen_C": selection.best_C, "labelling": cfg["labelling"],
               "params": {k: v for k, v in params.get(SECTION, {}).items() if k != "families"}}
    metrics = {
        "family": family, "dataset": cfg["dataset"], "labelling": cfg["labelling"],
        "n_layers": n_layers, "d_ffn": d_ffn, "n_features": int(X.shape[1]),
        "rows": {"train": {"n_rows": int(X.shape[0]), "n_questions": int(train["example_id"].nunique()),
                           "n_positive": int(y[keep].sum()), "n_negative": int((1 - y[keep]).sum())},
                 "validation": {"n_rows": len(val), "n_hallucinated": int(y_val.sum())},
                 "test": {"n_rows": len(test), "n_hallucinated": int(y_test.sum())},
                 "task_questions": len(questions)},
        "chosen_C": selection.best_C, "n_h_neurons": int(h.size), "machine": machine_facts(model, cfg["dtype"]),
        "generation": hooked_generation_info(params, family, model, tokenizer),  # the task term scales neurons
        "per_mille": 1000.0 * h.size / X.shape[1], "n_negative_weights": int(np.sum(best.coef_[0] < 0)),
        "C_selection": {"criterion": "validation accuracy + greedy task accuracy with H-Neurons at alpha",
                        "alpha": cfg["task"]["alpha"], "task_accuracy_unsuppressed": unsuppressed,
                        "grid": selection.table},
        "fit": {"solver": cfg["solver"], "tol": cfg["tol"], "standardize": cfg["standardize"],
                "kkt_tol": cfg["kkt_tol"], "kkt_max_violation": best.kkt_max_violation_,
                "kkt_converged": bool(best.kkt_converged_), "rounds": best.n_rounds_,
                "working_set_size": best.working_set_size_},
        "test": test_metrics,
        "stability": {"n_bootstrap": cfg["n_bootstrap"],
                      "h_mean_frequency": float(frequency[h].mean()) if h.size and cfg["n_bootstrap"] else None,
                      "h_frequency_at_least_half":
                          int(np.sum(frequency[h] >= 0.5)) if cfg["n_bootstrap"] else None,
                      "n_ever_selected": int(np.sum(frequency > 0))},
    }

    write_outputs(family, selection, frequency if cfg["n_bootstrap"] else None, metrics, lineage,
                  per_layer, baseline_rows, d_ffn)
    t = metrics["test"]
    log.info("%s: test accuracy %.3f AUROC %.3f | H-Neuron L2 %.3f | random %.3f±%.3f | length %.3f",
             family, t["probe"]["accuracy"], t["probe"]["auroc"], t["h_neurons_l2"]["accuracy"],
             t["random"]["accuracy"]["mean"], t["random"]["accuracy"]["sd"],
             t["length"]["response_tokens"]["accuracy"])


if __name__ == "__main__":
    run(main)
