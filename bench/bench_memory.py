"""Peak host memory of the model stage (materialize + reload check) and origin's weight drift.

Each measurement runs in a fresh Python process that imports torch and
transformers, records its resident set (``VmRSS``) as the baseline, runs one
step and reports the high-water mark (``VmHWM``) minus the baseline, in bytes
and in units of the model's weight bytes, and the same for anonymous memory
(``RssAnon``, sampled every 5 ms: tensors and arrays without the file pages that
safetensors maps while loading, which depend on the page cache and the machine's load):

- ``materialize``: ``hneurons.materialize.materialize`` of a ``{kind: path}`` spec
  (load, save, release, reload, compare logits, fingerprint);
- ``save_beside``: load the model, then ``save_model_dir`` with the model kept
  (the reload runs beside it, as in the tune stage; the model stage's former way);
- ``drift_checkpoint``: load the base model, then ``origin.neuron_drift`` against
  the instruct directory read one layer at a time (what the origin stage does);
- ``drift_two_models``: load both models, then ``origin.neuron_drift`` (the
  in-memory comparison, for reference).

The pair is a random Llama-architecture model of about ``--params`` parameters
and a perturbed copy, written once under ``--work``. Loading from safetensors
maps the file while its tensors are copied, so one load alone peaks near 2x the
model; the extra beyond the loaded models is what the figures show.

Usage: .venv/bin/python bench/bench_memory.py [--params 100e6] [--work .cache/bench_memory]
       [--out bench/out/memory.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = ("materialize", "save_beside", "drift_checkpoint", "drift_two_models")


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


class AnonPeak:
    """Highest ``RssAnon`` (anonymous resident memory: tensors, arrays; no file pages) seen while in the
    ``with`` block, sampled every ``interval`` seconds by a thread."""

    def __init__(self, interval: float = 0.005):
        import threading

        self.interval, self.peak = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_bytes("RssAnon"))
            self._stop.wait(self.interval)

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status_bytes("RssAnon"))


def write_pair(work: Path, n_params: float) -> dict:
    """A random Llama model of ~n_params parameters (float32) at work/base and a perturbed twin at work/instruct."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.tiny import make_tokenizer

    d_model = 512
    d_ffn = 4 * d_model
    per_layer = 4 * d_model * d_model + 3 * d_model * d_ffn
    tokenizer = make_tokenizer()
    n_layers = max(1, round((n_params - len(tokenizer) * d_model) / per_layer))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=d_model, intermediate_size=d_ffn,
                         num_hidden_layers=n_layers, num_attention_heads=8, num_key_value_heads=8,
                         max_position_embeddings=256, eos_token_id=2, pad_token_id=0, bos_token_id=None,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(work / "base")
    tokenizer.save_pretrained(work / "base")
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model.save_pretrained(work / "instruct")
    tokenizer.save_pretrained(work / "instruct")
    n = sum(p.numel() for p in model.parameters())
    return {"n_params": n, "weight_bytes": 4 * n, "n_layers": n_layers, "d_model": d_model, "d_ffn": d_ffn}


def run_step(step: str, work: Path) -> dict:
    """One step in this process: baseline RSS after imports, then the step's peak (bytes)."""
    import torch
    import transformers  # noqa: F401

    from hneurons import origin
    from hneurons.checkpoint import Checkpoint
    from hneurons.materialize import materialize, save_model_dir
    from hneurons.models import load_causal_lm

    torch.set_num_threads(1)
    baseline, baseline_anon = _status_bytes("VmRSS"), _status_bytes("RssAnon")
    with AnonPeak() as anon:
        if step == "materialize":
            materialize({"kind": "path", "path": str(work / "base")}, work / "materialized", work / "cache")
        elif step == "save_beside":
            model, tokenizer = load_causal_lm(work / "base")
            save_model_dir(model, tokenizer, work / "materialized", {"kind": "path"})
        elif step == "drift_checkpoint":
            base, _ = load_causal_lm(work / "base")
            origin.neuron_drift(base, Checkpoint(work / "instruct"))
        elif step == "drift_two_models":
            base, _ = load_causal_lm(work / "base")
            instruct, _ = load_causal_lm(work / "instruct")
            origin.neuron_drift(base, instruct)
        else:
            raise SystemExit(f"unknown step {step!r}")
    return {"baseline_rss": baseline, "peak_rss": _status_bytes("VmHWM"), "baseline_anon": baseline_anon,
            "peak_anon": anon.peak}


def measure(work: Path, n_params: float) -> dict:
    """Write the pair (once per size) and measure every step in its own process."""
    import shutil

    facts_path = work / "pair.json"
    facts = json.loads(facts_path.read_text()) if facts_path.is_file() else None
    if facts is None or abs(facts["n_params"] - n_params) / n_params > 0.5:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        facts = write_pair(work, n_params)
        facts_path.write_text(json.dumps(facts))
    result = {"model": facts, "steps": {}}
    for step in STEPS:
        shutil.rmtree(work / "materialized", ignore_errors=True)
        out = subprocess.run([sys.executable, __file__, "--step", step, "--work", str(work)], check=True,
                             capture_output=True, text=True, cwd=ROOT).stdout
        numbers = json.loads(out.strip().splitlines()[-1])
        extra = numbers["peak_rss"] - numbers["baseline_rss"]
        anon = numbers["peak_anon"] - numbers["baseline_anon"]
        result["steps"][step] = {**numbers, "extra_bytes": extra,
                                 "extra_in_models": round(extra / facts["weight_bytes"], 3),
                                 "extra_anon_in_models": round(anon / facts["weight_bytes"], 3)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=float, default=100e6, help="approximate parameters of the model")
    parser.add_argument("--work", type=Path, default=ROOT / ".cache/bench_memory")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--step", choices=STEPS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step:
        print(json.dumps(run_step(args.step, args.work)))
        return 0
    result = measure(args.work, args.params)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
