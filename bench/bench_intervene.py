"""Intervene-stage cost on a materialized model: seconds per item per benchmark, and the whole stage extrapolated.

    .venv/bin/python bench/bench_intervene.py [--model models/llm/smollm2/instruct] [--items 16]
        [--alpha 3] [--n-neurons 40] [--threads 2] [--batch-size N]

Reads the ``intervene`` section of params.yaml (benchmarks, decoding, n_items, alphas, random_alphas,
n_random_sets, batch_size, capability) and the prepared tables. Generates ``--items`` items of every
benchmark (TriviaQA capability questions from prepared row 1500 on) for one condition: ``--n-neurons``
random neurons scaled by ``--alpha`` (positions as in params), sycophancy's second turn for every
item (an upper bound: the stage continues only the initially correct ones). No cache. Prints and
writes (bench/out/intervene.json) seconds per item per benchmark and the stage estimate:

    conditions = len(alphas) + n_random_sets * len(random_alphas without 1)   (alpha 1 is shared)
    estimate   = conditions * sum_b n_items[b] * s_per_item[b]  (+ sycophancy turn 2 at the measured
                 turn-1 correct share) + model load

Wall-clock numbers depend on machine load: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models/llm/smollm2/instruct"))
    parser.add_argument("--items", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=3.0)
    parser.add_argument("--n-neurons", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--benchmarks", nargs="+", default=None, help="subset of intervene.benchmarks (+ triviaqa)")
    parser.add_argument("--seed", type=int, default=20251201)
    parser.add_argument("--out", default=str(ROOT / "bench/out/intervene.json"))
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    os.chdir(ROOT)
    from hneurons import compliance as C
    from hneurons import sweep
    from hneurons.models import ffn_shape, load_causal_lm
    from hneurons.questions import prepared_questions as _table
    from stages.config import load_config
    from stages.intervene import read_config

    family = next(iter(load_config().intervene.families))
    params = load_config().family("intervene", family)
    cfg = read_config(params)
    cfg["device"], cfg["dtype"] = params.compute.device, params.compute.dtype
    started = time.perf_counter()
    model, tok = load_causal_lm(args.model, cfg["dtype"], cfg["device"])
    load_s = time.perf_counter() - started
    n_layers, d_ffn = ffn_shape(model)
    flat = np.sort(np.random.default_rng(args.seed).choice(n_layers * d_ffn, args.n_neurons, replace=False))
    neuron_set = sweep.NeuronSet("random", 0, tuple(int(i) for i in flat))
    builders = {"falseqa": lambda: C.falseqa_items(_table("falseqa")),
                "faitheval_style": lambda: C.faitheval_items(_table("faitheval_style")),
                "sycophancy": lambda: C.sycophancy_items(_table("sycophancy"), cfg["sycophancy_categories"]),
                "jailbreak": lambda: C.jailbreak_items(_table("jailbreak"))}
    items = {b: builders[b]()[:: max(1, len(builders[b]()) // args.items)][:args.items] for b in cfg["benchmarks"]}
    trivia = [r for r in _table("triviaqa")[1500:] if r["answers"]][:args.items]
    items["triviaqa"] = [C.Item("triviaqa", r["example_id"], cfg["trivia_prompt"].format(question=r["question"]),
                                {"question": r["question"], "answers": r["answers"]}) for r in trivia]
    if args.benchmarks:
        items = {b: v for b, v in items.items() if b in args.benchmarks}
    config = sweep.SweepConfig(cfg["settings"], args.batch_size or cfg["batch_size"], args.seed, cfg["positions"])
    per_item, rows_by_bench, correct_share = {}, {}, 0.0
    for bench, group in items.items():
        t0 = time.perf_counter()
        rows_by_bench[bench] = sweep.first_turns(model, tok, {bench: group}, [(neuron_set, [args.alpha])], config)
        per_item[bench] = (time.perf_counter() - t0) / len(group)
    if "sycophancy" in items:
        turn1 = rows_by_bench["sycophancy"]
        correct_share = float(np.mean([C.answer_correct(i, r["response"]) is True
                                       for i, r in zip(items["sycophancy"], turn1)]))
        t0 = time.perf_counter()
        sweep.second_turns(model, tok, items["sycophancy"], turn1, {("random", 0): neuron_set},
                           lambda item, text: True, config)
        per_item["sycophancy_turn2"] = (time.perf_counter() - t0) / len(items["sycophancy"])
    n_alpha_random = len([a for a in cfg["random_alphas"] if a != 1.0])
    conditions = len(cfg["alphas"]) + cfg["n_random_sets"] * n_alpha_random
    counts = dict(cfg["n_items"], triviaqa=cfg["capability"]["n_questions"])
    per_condition = sum(counts[b] * per_item[b] for b in items)  # only the benchmarks measured
    if "sycophancy" in items:
        per_condition += counts["sycophancy"] * correct_share * per_item["sycophancy_turn2"]
    result = {"load_average": os.getloadavg(), "threads": args.threads, "items_per_benchmark": args.items,
              "alpha": args.alpha, "n_neurons": args.n_neurons, "model_load_s": round(load_s, 1),
              "s_per_item": {k: round(v, 3) for k, v in per_item.items()},
              "sycophancy_turn1_correct_share": round(correct_share, 3), "conditions": conditions,
              "stage_items": counts, "estimated_stage_s": round(conditions * per_condition + load_s, 0)}
    print(json.dumps(result))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
