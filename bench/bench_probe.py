"""Benchmark the L1 probe: peak RSS vs the float32 matrix size, CPU time, and agreement.

Usage (from the repository root; run it niced, it is CPU- and memory-heavy)::

    nice .venv/bin/python bench/bench_probe.py [--rows 4000] [--features 46080] [--C 0.3 1 3]
                                               [--full-C 1] [--std-C 0.1] [--effect 0.5] [--skip-full]

Synthetic CETT-like data (positive, log-normal around 0.02, 25% positives, 40
planted up- and 40 planted down-shifted columns) is written once to
``bench/out/X_<rows>x<features>.npy``. Each measurement runs in its own
subprocess that loads the matrix into RAM (float32, read once), then fits; the
subprocess reports ``ru_maxrss`` (peak RSS), CPU seconds and the fitted sets.
``load_only`` is the floor (the matrix plus the interpreter). Results go to
stdout as a table and to ``bench/out/bench_probe_<rows>x<features>[_e<effect>].json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def make_matrix(rows: int, features: int, effect: float = 0.5, seed: int = 0) -> tuple[Path, Path]:
    """Write X float32[rows, features] and y int8[rows] as .npy (once) and return their paths."""
    OUT.mkdir(parents=True, exist_ok=True)
    tag = f"{rows}x{features}" + ("" if effect == 0.5 else f"_e{effect:g}")
    x_path, y_path = OUT / f"X_{tag}.npy", OUT / f"y_{tag}.npy"
    if x_path.is_file() and y_path.is_file():
        return x_path, y_path
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.25).astype(np.int8)
    X = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float32, shape=(rows, features))
    planted = rng.choice(features, size=80, replace=False)
    up, down = planted[:40], planted[40:]
    for start in range(0, rows, 256):
        stop = min(rows, start + 256)
        block = rng.lognormal(np.log(0.02), 0.6, size=(stop - start, features)).astype(np.float32)
        yb = y[start:stop, None]
        block[:, up] *= np.exp(effect * yb).astype(np.float32)
        block[:, down] *= np.exp(effect * (1 - yb)).astype(np.float32)
        X[start:stop] = block
    X.flush()
    del X
    np.save(y_path, y)
    return x_path, y_path


def objective(probe, X: np.ndarray, y: np.ndarray) -> float:
    """liblinear's L1 objective ||w||_1 + |b| + C * sum log(1 + exp(-s_i (w.x_i + b))), s = +-1."""
    margin = probe.decision_function(X)
    sign = 2.0 * y.astype(np.float64) - 1.0
    return float(np.abs(probe.coef_).sum() + abs(probe.intercept_[0])
                 + probe.C * np.logaddexp(0.0, -sign * margin).sum())


def worker(args: argparse.Namespace) -> None:
    """Load the matrix, fit once, print one JSON line (peak RSS in bytes, CPU seconds, sets)."""
    sys.path.insert(0, str(ROOT))
    from hneurons.probe import L1Probe

    X = np.load(args.x)  # read once into RAM, float32
    y = np.load(args.y)
    after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = {"method": args.worker, "C": args.C, "matrix_bytes": int(X.nbytes), "rss_after_load": after_load}
    if args.worker != "load_only":
        solver = "liblinear" if args.worker == "liblinear_full" else "working_set"
        probe = L1Probe(C=args.C, solver=solver, standardize=args.worker == "working_set_std").fit(X, y)
        result.update(objective=objective(probe, X, y), effective_tol=float(probe.effective_tol_),
                      n_nonzero=int(probe.support_.size), n_positive=int(probe.positive_.size),
                      positive=probe.positive_.tolist(), nonzero=probe.support_.tolist(),
                      rounds=int(probe.n_rounds_), working_set=int(probe.working_set_size_))
    result.update(cpu_s=time.process_time() - cpu0, wall_s=time.perf_counter() - wall0,
                  peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps(result))


def measure(method: str, C: float, x: Path, y: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--C", str(C), "--x", str(x), "--y", str(y)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{method} C={C} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def jaccard(a: list[int], b: list[int]) -> float:
    a, b = set(a), set(b)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--features", type=int, default=46080)
    parser.add_argument("--C", type=float, nargs="*", default=[0.3, 1.0, 3.0])
    parser.add_argument("--full-C", type=float, nargs="*", default=[1.0])
    parser.add_argument("--std-C", type=float, nargs="*", default=[0.1])
    parser.add_argument("--effect", type=float, default=0.5, help="log-scale shift of the planted columns")
    parser.add_argument("--skip-full", action="store_true")
    parser.add_argument("--worker", default=None)
    parser.add_argument("--x", default=None)
    parser.add_argument("--y", default=None)
    args = parser.parse_args()
    if args.worker:
        args.C = float(args.C[0]) if isinstance(args.C, list) else args.C
        worker(args)
        return
    x, y = make_matrix(args.rows, args.features, args.effect)
    runs = [measure("load_only", 0.0, x, y)]
    runs += [measure("working_set", C, x, y) for C in args.C]
    runs += [measure("working_set_std", C, x, y) for C in args.std_C]
    if not args.skip_full:
        runs += [measure("liblinear_full", C, x, y) for C in args.full_C]
    by_key = {(r["method"], r["C"]): r for r in runs}
    print(f"matrix: {args.rows} x {args.features} float32 = {runs[0]['matrix_bytes'] / 2**20:.0f} MiB, "
          f"planted effect {args.effect:g}")
    print(f"{'method':18} {'C':>6} {'peak/matrix':>11} {'peak MiB':>9} {'CPU s':>7} {'nonzero':>7} "
          f"{'positive':>8} {'rounds':>6} {'J(full)':>7} {'objective':>12}")
    for r in runs:
        full = by_key.get(("liblinear_full", r["C"]))
        jac = f"{jaccard(r['positive'], full['positive']):.3f}" if full and "positive" in r else "-"
        print(f"{r['method']:18} {r['C']:>6g} {r['peak_rss'] / r['matrix_bytes']:>11.2f} "
              f"{r['peak_rss'] / 2**20:>9.0f} {r['cpu_s']:>7.1f} {r.get('n_nonzero', '-'):>7} "
              f"{r.get('n_positive', '-'):>8} {r.get('rounds', '-'):>6} {jac:>7} "
              f"{r.get('objective', float('nan')):>12.6g}")
        r["peak_over_matrix"] = r["peak_rss"] / r["matrix_bytes"]
        if full and "positive" in r:
            r["jaccard_positive_vs_full"] = jaccard(r["positive"], full["positive"])
            r["jaccard_nonzero_vs_full"] = jaccard(r["nonzero"], full["nonzero"])
    slim = [{k: v for k, v in r.items() if k not in ("positive", "nonzero")} for r in runs]
    (OUT / f"bench_probe_{x.stem[2:]}.json").write_text(json.dumps(slim, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
