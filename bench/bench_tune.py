"""Benchmark of the tune step and the drift computation on the real Gemma-3-270M pair.

Measures, on models/llm/<family>/base (and .../instruct when it exists):
- seconds per optimizer step (wall and process CPU, median of --steps after one
  warm-up step) of the frozen-embedding full fine-tune with the LM head applied
  only at response positions (``tune_train.response_loss``, what the stage does)
  against full-sequence logits (the naive loss), on batches of real instruction
  examples (``--batch`` rows);
- the same forward pass with OMP_WAIT_POLICY unset vs PASSIVE is not measured
  here (it must be set before torch loads); run the script twice with and
  without ``OMP_WAIT_POLICY=PASSIVE`` to compare;
- the same with length-grouped batches (``--length-group``, ``tune.length_group``):
  less right padding per step;
- wall time of ``origin.DriftTable.from_models`` (all neurons) when the twin exists.

The machine's load average is recorded next to each figure: on a shared machine
wall times scale with it, CPU times much less.

Usage: nice .venv/bin/python bench/bench_tune.py [--family gemma270m] [--steps 3] [--length-group 8]
       [--skip-full-logits] [--out bench/out/tune.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def full_logit_loss(model, batch):
    """Cross-entropy over response tokens from full-sequence logits (the naive way)."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                             targets.reshape(-1), ignore_index=-100)


def step_times(model, encoded, loss_fn, steps: int, batch_size: int, length_group: int = 1) -> dict:
    import torch

    from hneurons import tune_train

    trainable = tune_train.freeze_embeddings(model)
    optimizer = torch.optim.AdamW(trainable, lr=1e-6)
    model.train()
    lengths = [len(ids) for ids in encoded.ids]
    order = list(tune_train.batch_order(len(encoded), batch_size, steps + 1, seed=0, lengths=lengths,
                                        length_group=length_group))
    walls, cpus = [], []
    for index, rows in enumerate(order):
        batch = tune_train.collate(encoded, rows, pad_id=0)

        def one_step():
            loss = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        wall, cpu = timed(one_step)
        if index:  # the first step warms up allocations
            walls.append(wall)
            cpus.append(cpu)
    model.eval()
    padded = [len(rows) * max(lengths[r] for r in rows) for rows in order[1:]]
    return {"wall_s_per_step": statistics.median(walls), "cpu_s_per_step": statistics.median(cpus),
            "mean_padded_tokens_per_step": statistics.mean(padded), "length_group": length_group,
            "load_average_1min": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="gemma270m")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--length-group", type=int, default=8, help="tune.length_group of the grouped run")
    parser.add_argument("--skip-full-logits", action="store_true")
    parser.add_argument("--out", default="bench/out/tune.json")
    args = parser.parse_args()

    import torch

    from hneurons import origin, tune, tune_train
    from hneurons.models import load_causal_lm

    torch.set_num_threads(args.threads)
    base_dir = ROOT / "models/llm" / args.family / "base"
    instructions = ROOT / "data/tune" / args.family / "instructions.parquet"
    model, tokenizer = load_causal_lm(base_dir)
    if instructions.is_file():
        import pandas as pd

        frame = pd.read_parquet(instructions)
        examples = [tune.Example(r.kind, r.source_id, r.prompt, r.response, tuple(r.answers), r.split)
                    for r in frame[frame["split"] == "train"].itertuples()]
    else:
        examples = [tune.Example("trivia", str(i), f"Which city is number {i} on the list?", "Paris", ("Paris",),
                                 "train") for i in range(64)]
    encoded = tune_train.encode_examples(tokenizer, examples, 256)
    lengths = sorted(len(ids) for ids in encoded.ids)
    result = {"family": args.family, "threads": args.threads, "batch": args.batch,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
              "median_example_tokens": lengths[len(lengths) // 2]}
    head_loss = lambda m, b: tune_train.response_loss(m, b)[0]  # noqa: E731
    result["response_only_head"] = step_times(model, encoded, head_loss, args.steps, args.batch)
    result["response_only_head_grouped"] = step_times(model, encoded, head_loss, args.steps, args.batch,
                                                      args.length_group)
    if not args.skip_full_logits:
        result["full_logits"] = step_times(model, encoded, full_logit_loss, args.steps, args.batch)
    instruct_dir = ROOT / "models/llm" / args.family / "instruct"
    if (instruct_dir / "config.json").is_file():
        base, _ = load_causal_lm(base_dir)
        instruct, _ = load_causal_lm(instruct_dir)
        holder = {}
        wall, cpu = timed(lambda: holder.setdefault("table", origin.DriftTable.from_models(base, instruct)))
        table = holder["table"]
        result["drift"] = {"wall_s": wall, "cpu_s": cpu, "n_neurons": table.n_neurons,
                           "median_drift_up": float(sorted(table.drift_up)[table.n_neurons // 2]),
                           "median_drift_down": float(sorted(table.drift_down)[table.n_neurons // 2])}
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
