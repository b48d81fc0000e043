"""Benchmark of CETT extraction on a materialized model (default: the embedded SmolLM2-135M-Instruct).

Inputs: until the sample stage's output exists, synthetic prompt + response pairs
built from data/prepared/triviaqa.parquet questions (the paper's prompt under the
model's chat template; the response is the first alias, or another question's
alias for "incorrect" examples, plus "."). With --samples a sample-stage file is
used instead (its representative rows).

Measures
- speed: tokens/s of the hooked teacher-forced pass vs a plain forward pass over
  the same batches (same call, logits for the last position only); wall and
  process-CPU time, the two interleaved over --reps repetitions (median);
- disk: bytes per example of the written file, float32 and float16;
- memory: peak RSS of a full extraction + write of N examples (default 500 and
  2000), each in a fresh subprocess, next to the RSS after loading the model.

Usage: nice .venv/bin/python bench/bench_extract.py [--model DIR] [--threads 2] [--out bench/out/extract.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "{question} Respond with the answer only, without any explanation."


def rss_mb() -> float:
    """Peak RSS of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def simple_locate(text: str, aliases):
    """Case-insensitive first alias occurrence (stand-in when hneurons.answers is absent)."""
    low = text.lower()
    hits = [(low.find(a.lower()), a) for a in aliases if a and low.find(a.lower()) >= 0]
    if not hits:
        return None
    start, alias = min(hits)
    return start, start + len(alias)


def locator():
    try:
        from hneurons.answers import find_alias
        return find_alias, "hneurons.answers.find_alias"
    except ImportError:
        return simple_locate, "bench simple_locate (hneurons.answers absent)"


def synthetic_records(tokenizer, n: int) -> list[dict]:
    """n records in the sample-stage schema from prepared TriviaQA questions (alternating labels)."""
    import pyarrow.parquet as pq

    table = pq.read_table(ROOT / "data/prepared/triviaqa.parquet").to_pylist()
    records = []
    for i in range(n):
        row = table[i % len(table)]
        correct = i % 2 == 0
        answer = row["answers"][0] if correct else table[(i + 7) % len(table)]["answers"][0]
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT.format(question=row["question"])}],
                                               add_generation_prompt=True, tokenize=True, return_dict=False)
        records.append({"example_id": f"{row['example_id']}#{i}", "label": 0 if correct else 1,
                        "correct": correct, "answers": row["answers"], "prompt_ids": list(prompt),
                        "response_ids": tokenizer.encode(f"{answer}.", add_special_tokens=False),
                        "split": "train"})
    return records


def sample_records(path: Path, n: int) -> list[dict]:
    import pyarrow.parquet as pq

    rows = [r for r in pq.read_table(path).to_pylist() if r["representative"] and r["label"] >= 0]
    return rows[:n]


def load(args):
    import torch

    from hneurons.models import load_causal_lm

    torch.set_num_threads(args.threads)
    model, tokenizer = load_causal_lm(args.model, "float32")
    return model, tokenizer


def plan_for(args, model, tokenizer, n: int):
    from hneurons import cett, spans

    records = sample_records(Path(args.samples), n) if args.samples else synthetic_records(tokenizer, n)
    locate, _ = locator()
    examples, dropped = spans.align_answer_spans(records, tokenizer, "default", locate=locate)
    return cett.plan_rows(examples), dropped


def speed(args) -> dict:
    """Hooked vs plain forward passes over identical batches."""
    import numpy as np
    import torch

    from hneurons.cett import CETTRecorder, pad_batch

    model, tokenizer = load(args)
    plan, _ = plan_for(args, model, tokenizer, args.speed_examples)
    sequences = [np.concatenate([e.prompt_ids, e.response_ids]) for e in plan.examples]
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    batches = [pad_batch([sequences[i] for i in order[k:k + args.batch_size]],
                         [plan.masks[i] for i in order[k:k + args.batch_size]])
               for k in range(0, len(order), args.batch_size)]
    n_tokens = sum(len(s) for s in sequences)
    padded_tokens = sum(ids.numel() for ids, _ in batches)

    @torch.inference_mode()
    def plain():
        for ids, _ in batches:
            model(input_ids=ids, use_cache=False, logits_to_keep=1)

    def hooked(recorder):
        for ids, masks in batches:
            recorder.run(ids, masks)

    @torch.inference_mode()
    def full_logits():
        for ids, _ in batches:
            model(input_ids=ids, use_cache=False)

    results = {"plain": [], "hooked": [], "plain_full_logits": []}
    with CETTRecorder(model, args.readout) as recorder:
        hooked(recorder)  # warm-up
    plain()
    for _ in range(args.reps):
        for name, fn in (("plain", plain), ("hooked", None), ("plain_full_logits", full_logits)):
            wall, cpu = time.perf_counter(), time.process_time()
            if fn is None:
                with CETTRecorder(model, args.readout) as recorder:
                    hooked(recorder)
            else:
                fn()
            results[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    out = {"examples": len(sequences), "tokens": n_tokens, "padded_tokens": padded_tokens,
           "batch_size": args.batch_size, "reps": args.reps, "threads": args.threads, "readout": args.readout}
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        out[name] = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "tokens_per_s_wall": round(n_tokens / wall, 1),
                     "tokens_per_s_cpu": round(n_tokens / cpu, 1)}
    out["overhead_wall"] = round(out["hooked"]["wall_s"] / out["plain"]["wall_s"] - 1, 4)
    out["overhead_cpu"] = round(out["hooked"]["cpu_s"] / out["plain"]["cpu_s"] - 1, 4)
    out["overhead_wall_per_rep"] = [round(h[0] / p[0] - 1, 4) for h, p in zip(results["hooked"], results["plain"])]
    return out


def memory(args) -> dict:
    """One full extraction + write of args.n examples; peak RSS and bytes on disk."""
    from hneurons.activations import read_activations, write_activations
    from hneurons.cett import extract_activations, plan_counts

    model, tokenizer = load(args)
    after_load = rss_mb()
    plan, dropped = plan_for(args, model, tokenizer, args.n)
    counts = plan_counts(plan)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = Path(tmp) / "a"
        started = time.perf_counter()
        blocks = extract_activations(model, plan, dataset="bench", readout=args.readout, batch_size=args.batch_size,
                                     group_examples=args.group, progress=False)
        write_activations(path, blocks, *_shape(model), args.dtype, {"bench": True}, counts["n_rows"])
        elapsed = time.perf_counter() - started
        peak_extract = rss_mb()
        size = sum(p.stat().st_size for p in path.iterdir())
        read_start = time.perf_counter()
        _, X = read_activations(path, {"region": "answer"})
        read_s = time.perf_counter() - read_start
        peak_read = rss_mb()
    n_tokens = sum(len(e.prompt_ids) + len(e.response_ids) for e in plan.examples)
    return {"n_examples": len(plan.examples), "dropped": dict(dropped), "rows": counts["n_rows"], "dtype": args.dtype,
            "rss_after_model_load_mb": round(after_load, 1), "peak_rss_extract_mb": round(peak_extract, 1),
            "peak_rss_after_read_answer_rows_mb": round(peak_read, 1), "answer_matrix_mb": round(X.nbytes / 2**20, 1),
            "file_bytes": size, "bytes_per_example": round(size / len(plan.examples)),
            "bytes_per_row": round(size / counts["n_rows"]), "extract_s": round(elapsed, 1),
            "tokens_per_s": round(n_tokens / elapsed, 1), "read_answer_rows_s": round(read_s, 2)}


def _shape(model):
    from hneurons.models import ffn_shape

    return ffn_shape(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models/llm/smollm2/instruct"))
    parser.add_argument("--samples", default="", help="a sample-stage parquet (default: synthetic from prepared)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--group", type=int, default=32, help="examples per row group")
    parser.add_argument("--readout", default="mean")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--speed-examples", type=int, default=64)
    parser.add_argument("--sizes", default="500,2000", help="example counts for the memory runs")
    parser.add_argument("--float16-examples", type=int, default=100, help="examples for the float16 size run")
    parser.add_argument("--tmp", default=None, help="directory for the temporary output files")
    parser.add_argument("--mode", choices=["all", "speed", "memory"], default="all")
    parser.add_argument("--n", type=int, default=500, help="(memory mode) examples")
    parser.add_argument("--out", default=str(ROOT / "bench/out/extract.json"))
    args = parser.parse_args()
    if args.mode == "speed":
        print(json.dumps(speed(args)))
        return
    if args.mode == "memory":
        print(json.dumps(memory(args)))
        return
    report = {"model": os.path.relpath(args.model, ROOT), "inputs": "samples" if args.samples else
              "synthetic (prepared TriviaQA questions + alias responses)", "locate": locator()[1],
              "speed": speed(args), "memory": []}
    print(json.dumps(report["speed"], indent=1), file=sys.stderr)
    base = [sys.executable, __file__, "--mode", "memory", "--model", args.model, "--threads", str(args.threads),
            "--batch-size", str(args.batch_size), "--group", str(args.group), "--readout", args.readout]
    if args.samples:
        base += ["--samples", args.samples]
    if args.tmp:
        base += ["--tmp", args.tmp]
    runs = [(n, "float32") for n in (int(s) for s in args.sizes.split(","))]
    runs.append((args.float16_examples, "float16"))  # bytes per example on disk in float16
    for n, dtype in runs:
        result = subprocess.run(base + ["--n", str(n), "--dtype", dtype], capture_output=True, text=True, check=True)
        report["memory"].append(json.loads(result.stdout.strip().splitlines()[-1]))
        print(json.dumps(report["memory"][-1]), file=sys.stderr)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
