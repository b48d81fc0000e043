"""Detect-stage generation cost and class yields on a materialized model (one sample per question).

    .venv/bin/python bench/bench_detect.py [--model models/llm/smollm2/instruct] [--questions 48]
        [--datasets triviaqa nq_open bioasq nonexist] [--batch-size 32] [--threads 2]
        [--max-new-tokens 16 24] [--temperature 1.0]

For each dataset and each max_new_tokens: the first ``--questions`` rows of data/prepared/<dataset>.parquet
(TriviaQA from row 1500, away from the usual probe questions), the detect stage's prompt, decoding
(``--temperature``, top-k 50, top-p 0.9) and judges (hneurons.detect.judge_response), seeds as the stage derives
them. Prints one JSON line per (dataset, max_new_tokens): seconds, responses/s, generated tokens/s,
share of responses cut at the limit, judged counts (faithful / hallucinated / dropped by reason);
writes them to bench/out/detect.json. Use it to size ``detect.n_questions`` (expected faithful per
class = questions x faithful share) and the stage time (questions / responses per s). Wall-clock
numbers depend on machine load: the load average is printed with them.
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
    parser.add_argument("--questions", type=int, default=48)
    parser.add_argument("--datasets", nargs="+", default=["triviaqa", "nq_open", "bioasq", "nonexist"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, nargs="+", default=[16, 24])
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=20251201)
    parser.add_argument("--out", default=str(ROOT / "bench/out/detect.json"))
    return parser.parse_args(argv)


def questions(name: str, n: int) -> list[dict]:
    import pyarrow.parquet as pq

    table = pq.read_table(ROOT / f"data/prepared/{name}.parquet", columns=["example_id", "question", "answers"])
    start = 1500 if name == "triviaqa" else 0
    return table.slice(start, n).to_pylist()


def main(argv=None) -> None:
    args = parse_args(argv)
    import torch

    from hneurons.consistency import PAPER_PROMPT
    from hneurons.detect import class_counts, judge_response
    from hneurons.generate import DecodingSettings, chat_prompt_ids, generate
    from hneurons.models import load_causal_lm
    from stages._common import derived_seed

    torch.set_num_threads(args.threads)
    model, tokenizer = load_causal_lm(args.model, "float32")
    results = []
    for name in args.datasets:
        rows = questions(name, args.questions)
        prompts = [chat_prompt_ids(tokenizer, PAPER_PROMPT.format(question=r["question"])) for r in rows]
        seeds = [derived_seed(args.seed, f"detect/{name}/{r['example_id']}") for r in rows]
        for limit in args.max_new_tokens:
            settings = DecodingSettings(n_samples=1, temperature=args.temperature, top_k=50, top_p=0.9,
                                        max_new_tokens=limit)
            start = time.perf_counter()
            outputs = generate(model, tokenizer, prompts, settings, seeds, args.batch_size)
            seconds = time.perf_counter() - start
            verdicts = [judge_response(name, r["question"], tokenizer.decode(ids, skip_special_tokens=True),
                                       r["answers"] or []) for r, ids in zip(rows, outputs)]
            counts = class_counts([v.label for v in verdicts], [v.reason for v in verdicts])
            n_tokens = sum(len(ids) for ids in outputs)
            line = {"dataset": name, "max_new_tokens": limit, "n": len(rows), "seconds": round(seconds, 2),
                    "responses_per_s": round(len(rows) / seconds, 3), "tokens_per_s": round(n_tokens / seconds, 1),
                    "cut_share": round(sum(len(ids) == limit for ids in outputs) / len(rows), 3), **counts,
                    "threads": args.threads, "batch_size": args.batch_size, "load_avg_1m": round(os.getloadavg()[0], 2)}
            print(json.dumps(line), flush=True)
            results.append(line)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
