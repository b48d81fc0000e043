"""Sampling throughput on a materialized model: batched vs one question at a time vs one sample at a time.

    .venv/bin/python bench/bench_sample.py [--model models/llm/smollm2/instruct] [--questions 16]
        [--samples 5] [--batch-size 80] [--threads 2] [--temperature 0.5] [--max-new-tokens 50]

Every mode draws the same (question, sample_index) rows with the same seeds
(hneurons.generate.sample_seed), so they do the same work up to float rounding.
Modes:
  batched       generate(rows, batch_size)            one call, rows of many questions per batch
  per_question  generate(one question's n rows)       one call per question (shared prefill)
  per_sample    generate(one row)                     one call per sample
  hf_generate   transformers model.generate, one question per call (num_return_sequences = n),
                a reference for the library's own loop (its samples differ: HF's RNG)
Prints one JSON line per mode (seconds, generated tokens, tokens/s, speed-up over per_question)
and writes them to bench/out/sample.json. Wall-clock numbers depend on machine load: report
them with the load average (printed too).
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
    parser.add_argument("--data", default=str(ROOT / "data/prepared/triviaqa.parquet"))
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=80)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--max-new-tokens", type=int, default=50)
    parser.add_argument("--modes", default="batched,per_question,per_sample,hf_generate")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    import pyarrow.parquet as pq
    import torch

    from hneurons.consistency import PAPER_PROMPT
    from hneurons.generate import DecodingSettings, chat_prompt_ids, generate, sample_seed, stop_token_ids
    from hneurons.models import load_causal_lm

    torch.set_num_threads(args.threads)
    model, tokenizer = load_causal_lm(args.model, "float32")
    table = pq.read_table(args.data, columns=["example_id", "question"]).slice(0, args.questions).to_pydict()
    settings = DecodingSettings(n_samples=args.samples, temperature=args.temperature,
                                max_new_tokens=args.max_new_tokens)
    prompts = [chat_prompt_ids(tokenizer, PAPER_PROMPT.format(question=q.strip())) for q in table["question"]]
    rows = [p for p in prompts for _ in range(args.samples)]
    seeds = [sample_seed(0, e, i) for e in table["example_id"] for i in range(args.samples)]
    n = args.samples

    def batched():
        return generate(model, tokenizer, rows, settings, seeds, args.batch_size)

    def per_question():
        out = []
        for q in range(len(prompts)):
            out += generate(model, tokenizer, rows[q * n:(q + 1) * n], settings, seeds[q * n:(q + 1) * n], n)
        return out

    def per_sample():
        return [generate(model, tokenizer, [r], settings, [s], 1)[0] for r, s in zip(rows, seeds)]

    def hf_generate():
        stops = set(stop_token_ids(model, tokenizer))
        out = []
        torch.manual_seed(0)
        for prompt in prompts:
            ids = model.generate(torch.tensor([prompt]), do_sample=True, temperature=args.temperature,
                                 top_k=50, top_p=0.9, max_new_tokens=args.max_new_tokens, num_return_sequences=n,
                                 eos_token_id=sorted(stops), pad_token_id=tokenizer.pad_token_id)
            for row in ids[:, len(prompt):].tolist():
                out.append(row[:next((i for i, t in enumerate(row) if t in stops), len(row))])
        return out

    modes = {"batched": batched, "per_question": per_question, "per_sample": per_sample, "hf_generate": hf_generate}
    results = []
    for name in args.modes.split(","):
        started = time.perf_counter()
        outputs = modes[name]()
        seconds = time.perf_counter() - started
        tokens = sum(len(o) for o in outputs)
        results.append({"mode": name, "seconds": round(seconds, 2), "responses": len(outputs),
                        "generated_tokens": tokens, "tokens_per_s": round(tokens / seconds, 2),
                        "load_avg_1m": round(os.getloadavg()[0], 2)})
        print(json.dumps(results[-1]), flush=True)
    base = next((r["tokens_per_s"] for r in results if r["mode"] == "per_question"), None)
    for r in results:
        r["speedup_vs_per_question"] = round(r["tokens_per_s"] / base, 2) if base else None
    summary = {"model": Path(args.model).name, "questions": args.questions, "samples": n,
               "batch_size": args.batch_size, "threads": args.threads, "temperature": args.temperature,
               "max_new_tokens": args.max_new_tokens, "results": results}
    out = ROOT / "bench/out/sample.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({r["mode"]: r["speedup_vs_per_question"] for r in results}))


if __name__ == "__main__":
    main()
