"""GPU readiness check: one command, a few minutes on one GPU, the smallest setting on a CPU.

    .venv/bin/python bench/gpu_check.py [--model models/llm/smollm2/instruct]
        [--samples data/samples/smollm2/triviaqa.parquet | --synthetic N] [--n 64] [--device cuda]
        [--max-new-tokens 32] [--C 10] [--out bench/out/gpu_check.json]
        [--vllm-memory 0.5] [--openai-url http://127.0.0.1:8000/v1 --openai-model NAME]

Checks, on ``--n`` examples (the samples file's representative rows, or ``--synthetic N`` random ones):
1. CETT in bfloat16 on ``--device`` against the float32 CPU reference (the project's exact path,
   ``hneurons.cett.extract_activations``): Pearson r over all entries, median and max relative difference
   over entries above 1e-3 x the largest, and the H-Neuron overlap: L1 probes (``--C``) fitted on the answer
   rows of each, Jaccard of their positive neurons.
2. ``device_map="auto"`` extraction (float32; ``compute.device: auto``, the setting for models larger than
   one GPU) against the single-device float32 result: max absolute difference.
3. Generation throughput (generated tokens/s, greedy, ``--max-new-tokens``) of each generation backend present
   (``hneurons.backends``, the stages' code path): ``transformers`` (bfloat16 on ``--device``) always, ``vllm``
   (offline, bfloat16) when it imports, ``openai`` when ``--openai-url`` and ``--openai-model`` name a running
   server (e.g. ``vllm serve``); for the last two also the share of responses identical to transformers'.
Prints one line per check, writes JSON to ``--out``, exits 1 when r < 0.99 or the device_map result differs
by more than 1e-4. The device, dtype and machine facts (``hneurons.machine``) go with the numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIN_R, MAX_DEVICE_MAP_DIFF = 0.99, 1e-4


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models/llm/smollm2/instruct"))
    parser.add_argument("--samples", default=str(ROOT / "data/samples/smollm2/triviaqa.parquet"))
    parser.add_argument("--synthetic", type=int, default=0, help="N random examples instead of --samples")
    parser.add_argument("--n", type=int, default=64, help="examples taken from --samples")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--C", type=float, default=10.0, help="L1 probe inverse penalty for the overlap check")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--out", default=str(ROOT / "bench/out/gpu_check.json"))
    parser.add_argument("--vllm-memory", type=float, default=0.5, help="vLLM gpu_memory_utilization")
    parser.add_argument("--openai-url", default=None, help="an OpenAI-compatible server's base URL (…/v1)")
    parser.add_argument("--openai-model", default=None, help="the served model name at --openai-url")
    return parser.parse_args(argv)


def examples_from_samples(path: Path, tokenizer, n: int) -> list:
    """The first ``n`` representative sample rows (balanced by class), aligned with the content span rule."""
    from hneurons import spans
    from hneurons.extract_inputs import read_samples

    records = read_samples(path)
    by_class = {label: [r for r in records if r["label"] == label] for label in (0, 1)}
    half = max(1, n // 2)
    chosen = by_class[0][:half] + by_class[1][:half]
    examples, _ = spans.align_answer_spans(chosen, tokenizer, "content")
    return examples


def synthetic_examples(n: int, vocab_size: int, seed: int = 0) -> list:
    """``n`` random prompt + response id sequences, alternating labels; the answer span is the whole response."""
    from hneurons.spans import SpanExample

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        prompt = rng.integers(5, vocab_size, size=int(rng.integers(6, 14)))
        response = rng.integers(5, vocab_size, size=int(rng.integers(3, 8)))
        out.append(SpanExample(f"s{i}", i % 2, "train", prompt, response, (0, len(response))))
    return out


def cett_matrix(model, examples: list, batch_size: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(cett float32[n_rows, n_neurons], is-answer-row bool[n_rows]) through the extract stage's path."""
    from hneurons import cett

    plan = cett.plan_rows(examples, "with_prompt")
    frames, blocks = [], []
    for frame, block in cett.extract_activations(model, plan, dataset="check", batch_size=batch_size,
                                                 group_examples=64, pad_id=pad_id, progress=False):
        frames.append(frame)
        blocks.append(block)
    regions = np.concatenate([f["region"].to_numpy() for f in frames])
    return np.concatenate(blocks).astype(np.float32), regions == "answer"


def compare_cett(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Pearson r over all entries; median / max relative difference over entries above 1e-3 x max |reference|."""
    a, b = reference.ravel().astype(np.float64), other.ravel().astype(np.float64)
    big = np.abs(a) > 1e-3 * np.abs(a).max()
    rel = np.abs(b[big] - a[big]) / np.abs(a[big])
    return {"pearson_r": float(np.corrcoef(a, b)[0, 1]), "median_rel_diff": float(np.median(rel)),
            "max_rel_diff": float(rel.max()), "n_entries_compared": int(big.sum())}


def h_neuron_overlap(reference: np.ndarray, other: np.ndarray, labels: np.ndarray, C: float) -> dict[str, Any]:
    """Positive neurons of L1 probes fitted on each matrix: sizes and Jaccard overlap (None when both empty)."""
    from hneurons.probe import L1Probe

    found = [set(L1Probe(C=C).fit(X, labels).positive_.tolist()) for X in (reference, other)]
    union = found[0] | found[1]
    return {"n_reference": len(found[0]), "n_other": len(found[1]),
            "jaccard": len(found[0] & found[1]) / len(union) if union else None}


def backend_throughput(backend, examples: list, max_new_tokens: int, batch_size: int,
                       reference: list | None = None) -> tuple[dict, list]:
    """(numbers, outputs): greedy generation of every example's prompt through ``backend.generate``;
    with ``reference`` outputs, also the share of responses identical to them."""
    from hneurons.generate import DecodingSettings

    settings = DecodingSettings(n_samples=1, temperature=0.0, max_new_tokens=max_new_tokens).validate("check")
    prompts = [e.prompt_ids.tolist() for e in examples]
    started = time.perf_counter()
    outputs = backend.generate(prompts, settings, None, batch_size)
    seconds = time.perf_counter() - started
    tokens = sum(len(o) for o in outputs)
    numbers = {"available": True, "info": backend.info(), "responses": len(outputs), "tokens": tokens,
               "seconds": round(seconds, 3), "tokens_per_s": round(tokens / max(seconds, 1e-9), 1)}
    if reference is not None:
        numbers["identical_to_transformers"] = round(sum(a == b for a, b in zip(outputs, reference)) / len(outputs), 4)
    return numbers, outputs


def vllm_backend(model_dir: str, tokenizer, memory: float):
    """The offline vLLM backend in bfloat16, or None where vllm does not import."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return None
    from hneurons.backends import VLLMBackend

    return VLLMBackend.from_model_dir(model_dir, tokenizer, "bfloat16", gpu_memory_utilization=memory,
                                      where="gpu_check")


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from hneurons.io import write_json
    from hneurons.machine import machine_facts
    from hneurons.models import load_causal_lm

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    reference_model, tokenizer = load_causal_lm(args.model, "float32")
    pad_id = tokenizer.pad_token_id or 0
    if args.synthetic:
        examples = synthetic_examples(args.synthetic, reference_model.get_input_embeddings().weight.shape[0])
    else:
        examples = examples_from_samples(Path(args.samples), tokenizer, args.n)
    result: dict[str, Any] = {"model": args.model, "device": device, "n_examples": len(examples)}

    started = time.perf_counter()
    reference, answer_rows = cett_matrix(reference_model, examples, args.batch_size, pad_id)
    result["cett_float32_cpu_seconds"] = round(time.perf_counter() - started, 3)
    del reference_model

    model, _ = load_causal_lm(args.model, "bfloat16", device)
    started = time.perf_counter()
    bf16, _ = cett_matrix(model, examples, args.batch_size, pad_id)
    result["cett_bfloat16_seconds"] = round(time.perf_counter() - started, 3)
    result["bfloat16_vs_float32"] = compare_cett(reference, bf16)
    answer_labels = np.array([e.label for e in examples])    # one answer row per example, in plan order
    result["h_neuron_overlap"] = h_neuron_overlap(reference[answer_rows], bf16[answer_rows], answer_labels, args.C)
    result["machine"] = machine_facts(model, "bfloat16")
    from hneurons.backends import OpenAIBackend, TransformersBackend, model_stop_ids

    numbers, greedy = backend_throughput(TransformersBackend(model, tokenizer, device, "bfloat16"), examples,
                                         args.max_new_tokens, args.batch_size)
    result["generation"] = {"transformers": numbers}
    del model

    auto_model, _ = load_causal_lm(args.model, "float32", "auto")
    auto, _ = cett_matrix(auto_model, examples, args.batch_size, pad_id)
    del auto_model
    result["device_map_auto_max_abs_diff"] = float(np.abs(auto - reference).max())
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    engine = vllm_backend(args.model, tokenizer, args.vllm_memory)
    result["generation"]["vllm"] = {"available": False} if engine is None else backend_throughput(
        engine, examples, args.max_new_tokens, args.batch_size, greedy)[0]
    if args.openai_url and args.openai_model:
        server = OpenAIBackend(args.openai_url, args.openai_model, model_stop_ids(args.model, tokenizer),
                               where="gpu_check.openai")
        server.check()
        result["generation"]["openai"] = backend_throughput(server, examples, args.max_new_tokens,
                                                            args.batch_size, greedy)[0]

    failures = []
    if result["bfloat16_vs_float32"]["pearson_r"] < MIN_R:
        failures.append(f"bfloat16 CETT r {result['bfloat16_vs_float32']['pearson_r']:.4f} < {MIN_R}")
    if result["device_map_auto_max_abs_diff"] > MAX_DEVICE_MAP_DIFF:
        failures.append(f"device_map=auto CETT differs by {result['device_map_auto_max_abs_diff']:.3g}")
    result["failures"] = failures
    write_json(args.out, result)
    cmp, overlap = result["bfloat16_vs_float32"], result["h_neuron_overlap"]
    print(f"device {device}, {len(examples)} examples, {reference.shape[1]} neurons")
    print(f"bf16 vs fp32 CETT: r {cmp['pearson_r']:.5f}, median rel {cmp['median_rel_diff']:.3g}, "
          f"max rel {cmp['max_rel_diff']:.3g}; H-Neurons {overlap['n_reference']} vs {overlap['n_other']}, "
          f"Jaccard {overlap['jaccard']}")
    print(f"device_map=auto vs single device: max |diff| {result['device_map_auto_max_abs_diff']:.3g}")
    for backend, numbers in result["generation"].items():
        print(f"generation {backend}: {numbers}")
    print("FAILED: " + "; ".join(failures) if failures else "ok")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
