"""Benchmark streamed activations at Llama-70B width: write, streamed L1 fit, in-memory L1 fit, same solution?

Usage (from the repository root; niced, one thread; needs ~10 GB of disk under --out and, for the in-memory
phase, RAM for rows x features float32, 9.2 GB at the defaults)::

    nice .venv/bin/python bench/bench_stream.py [--rows 1000] [--layers 80] [--d-ffn 28672]
        [--rows-per-part 32] [--C 1] [--phases write,stream,memory] [--out bench/out/stream]

Synthetic CETT-like rows (log-normal around 0.02, half of them label 1; 40 columns
scaled up by exp(effect) on label-1 rows and 40 on label-0 rows) are written as a
float16 activation set (hneurons.activations, parts of --rows-per-part rows, all
``split=train``, ``region=answer``). Each phase runs in its own subprocess with one
thread and reports its wall time and peak RSS (VmHWM, /proc/self/status):

- ``write``: generate and write the parts;
- ``stream``: ``spill_activations`` (rows copied part by part to a raw float16 file)
  then ``L1Probe.fit`` on the resulting RowMatrix;
- ``memory``: ``read_activations`` (float32 matrix in RAM) then the same fit.

The streamed phase's budget is the fitted result (coef_ float64[D]) + 2 parts
(decoded float32) + 1 GiB. Results: a table on stdout and
``<out>/bench_stream_<rows>x<features>.json``; the fitted weights of both fits go
to ``<out>/coef_{stream,memory}.npy`` and are compared (support, signs, values).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
THREAD_ENV = {key: "1" for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                   "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
N_PLANTED, EFFECT = 40, 0.5


def peak_rss_mib() -> float:
    """Peak resident set of this process in MiB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def labels(rows: int, seed: int):
    import numpy as np

    return (np.random.default_rng([seed, 1]).random(rows) < 0.5).astype(np.int8)


def planted(features: int, seed: int):
    import numpy as np

    cols = np.random.default_rng([seed, 2]).choice(features, size=2 * N_PLANTED, replace=False)
    return np.sort(cols[:N_PLANTED]), np.sort(cols[N_PLANTED:])


def phase_write(args) -> dict:
    import numpy as np
    import pandas as pd

    from hneurons.activations import ActivationWriter

    features = args.layers * args.d_ffn
    y = labels(args.rows, args.seed)
    up, down = planted(features, args.seed)
    started = time.perf_counter()
    target = Path(args.out) / "set" / "bench"
    with ActivationWriter(target, args.layers, args.d_ffn, "float16", {"bench": "stream", "seed": args.seed},
                          expected_rows=args.rows) as writer:
        for index, start in enumerate(range(0, args.rows, args.rows_per_part)):
            stop = min(args.rows, start + args.rows_per_part)
            rng = np.random.default_rng([args.seed, 3, index])
            block = rng.standard_normal((stop - start, features), dtype=np.float32)
            block *= np.float32(0.6)
            block += np.float32(np.log(0.02))
            np.exp(block, out=block)
            yb = y[start:stop, None].astype(np.float32)
            block[:, up] *= np.exp(EFFECT * yb)
            block[:, down] *= np.exp(EFFECT * (1 - yb))
            frame = pd.DataFrame({"example_id": [f"q{i:05d}" for i in range(start, stop)], "dataset": "bench",
                                  "label": y[start:stop], "region": "answer", "split": "train",
                                  "n_tokens": np.int32(3), "response_tokens": np.int32(20)})
            writer.write(frame, block)
            del block
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in target.iterdir())
    return {"seconds": seconds, "bytes_on_disk": size, "n_parts": len(writer.parts)}


def fit(X, y, args):
    from hneurons.probe import L1Probe

    return L1Probe(C=args.C, screen_size=args.screen_size, max_add=args.screen_size).fit(X, y)


def phase_stream(args) -> dict:
    import shutil

    import numpy as np

    from hneurons.activation_rows import spill_activations

    scratch = Path(args.out) / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    started = time.perf_counter()
    frame, rows = spill_activations(Path(args.out) / "set", scratch, {"split": "train"})
    spilled = time.perf_counter()
    rss_after_spill = peak_rss_mib()
    probe = fit(rows, frame["label"].to_numpy(), args)
    done = time.perf_counter()
    np.save(Path(args.out) / "coef_stream.npy", probe.coef_[0])
    shutil.rmtree(scratch, ignore_errors=True)
    return {"spill_seconds": spilled - started, "fit_seconds": done - spilled, "peak_rss_after_spill_mib":
            rss_after_spill, "rounds": int(probe.n_rounds_), "working_set": int(probe.working_set_size_),
            "n_nonzero": int(probe.support_.size), "n_positive": int(probe.positive_.size),
            "kkt_converged": bool(probe.kkt_converged_)}


def phase_memory(args) -> dict:
    import numpy as np

    from hneurons.activations import read_activations

    started = time.perf_counter()
    frame, X = read_activations(Path(args.out) / "set", {"split": "train"})
    loaded = time.perf_counter()
    probe = fit(X, frame["label"].to_numpy(), args)
    done = time.perf_counter()
    np.save(Path(args.out) / "coef_memory.npy", probe.coef_[0])
    return {"read_seconds": loaded - started, "fit_seconds": done - loaded, "matrix_bytes": int(X.nbytes),
            "rounds": int(probe.n_rounds_), "n_nonzero": int(probe.support_.size),
            "n_positive": int(probe.positive_.size)}


PHASES = {"write": phase_write, "stream": phase_stream, "memory": phase_memory}


def run_phase(name: str, argv: list[str]) -> dict:
    """Run one phase in a fresh one-thread subprocess; its last stdout line is its JSON result."""
    env = {**os.environ, **THREAD_ENV}
    result = subprocess.run([sys.executable, __file__, *argv, "--child", name], env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--layers", type=int, default=80)
    parser.add_argument("--d-ffn", type=int, default=28672)
    parser.add_argument("--rows-per-part", type=int, default=32)
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--screen-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phases", default="write,stream,memory")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "stream"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import pyarrow as pa

        pa.set_cpu_count(1)
        pa.set_io_thread_count(1)
        out = PHASES[args.child](args)
        out["peak_rss_mib"] = peak_rss_mib()
        print(json.dumps(out))
        return

    import numpy as np

    Path(args.out).mkdir(parents=True, exist_ok=True)
    features = args.layers * args.d_ffn
    argv = [a for a in sys.argv[1:]]
    results: dict = {"rows": args.rows, "features": features, "rows_per_part": args.rows_per_part, "C": args.C,
                     "screen_size": args.screen_size, "threads": 1}
    for name in args.phases.split(","):
        print(f"phase {name} ...", flush=True)
        results[name] = run_phase(name, argv)
        print(f"  {json.dumps(results[name])}", flush=True)
    part_f32 = args.rows_per_part * features * 4
    coef_bytes = features * 8
    budget_mib = (coef_bytes + 2 * part_f32 + (1 << 30)) / 2**20
    results["stream_budget_mib"] = budget_mib
    if "stream" in results:
        results["stream_within_budget"] = results["stream"]["peak_rss_mib"] <= budget_mib
    paths = [Path(args.out) / f"coef_{kind}.npy" for kind in ("stream", "memory")]
    if all(p.is_file() for p in paths):
        a, b = (np.load(p) for p in paths)
        up, down = planted(features, args.seed)
        results["same_support"] = bool(np.array_equal(np.flatnonzero(a), np.flatnonzero(b)))
        results["same_signs"] = bool(np.array_equal(np.sign(a), np.sign(b)))
        results["max_abs_coef_diff"] = float(np.max(np.abs(a - b)))
        results["planted_up_positive"] = int(np.sum(a[up] > 0))
        results["planted_down_negative"] = int(np.sum(a[down] < 0))
    report = Path(args.out) / f"bench_stream_{args.rows}x{features}.json"
    report.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(json.dumps(results, indent=2, sort_keys=True))
    print(f"-> {report}")


if __name__ == "__main__":
    main()
