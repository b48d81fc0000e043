"""Compare a rerun's metrics with committed ones: which numbers moved, by how much, inside their CIs or not.

Reproduction is bitwise only on the same machine, torch build and thread count. Across machines the last bits
of float kernels differ (PyTorch promises no more), a sampled token can flip, and every downstream hash changes
although the science may have reproduced. This module reads ``dvc metrics diff --json`` (the keys DVC reports
as changed between two revisions, or a revision and the workspace) and classifies each changed number:

- ``float``: ``|new - old| <= ATOL + RTOL * |old|`` (last-bit float noise);
- ``inside_ci``: moved more than that, but the new value lies inside the committed 95% CI of that number;
- ``outside_ci``: moved outside its committed 95% CI: the rerun does not reproduce this number;
- ``no_ci``: moved, and the metrics file states no CI for it (counts, grid diagnostics, random-set means).

A number's CI is read from the committed metrics file, next to it: ``<name>_ci95: [lo, hi]``, or a
``<p>ci_lo<s>`` / ``<p>ci_hi<s>`` pair for the one sibling named ``<p>...<s>`` (``ci_lo``/``ci_hi`` for
``compliance``, ``ci_lo_parsed`` for ``compliance_parsed``, ``diff_ci_lo`` for ``diff_pp``).

    python -m hneurons.compare [A_REV [B_REV]]    # HEAD vs the workspace by default; --json for the table

Exit status 1 when any number is outside its CI, else 0. The ``machine`` facts each stage stores are compared
too and printed, so a reader sees why two locks differ.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ATOL = 1e-9
RTOL = 1e-6
FLOAT, INSIDE, OUTSIDE, NO_CI = "float", "inside_ci", "outside_ci", "no_ci"


@dataclass(frozen=True)
class Moved:
    """One changed number: file, dotted key, committed and new value, verdict and the CI used."""

    path: str
    key: str
    old: float
    new: float
    verdict: str
    ci: tuple[float, float] | None = None


def flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, dict[str, Any], str]]:
    """(dotted key, parent mapping, name) for every leaf under ``node``, keys joined with "." as DVC does."""
    if isinstance(node, dict):
        for name, value in node.items():
            key = f"{prefix}.{name}" if prefix else str(name)
            if isinstance(value, dict):
                yield from flatten(value, key)
            else:
                yield key, node, str(name)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def ci_of(parent: dict[str, Any], name: str) -> tuple[float, float] | None:
    """The committed 95% CI of ``parent[name]`` (see the module docstring), or None."""
    interval = parent.get(f"{name}_ci95")
    if isinstance(interval, list) and len(interval) == 2 and all(_number(v) for v in interval):
        return float(interval[0]), float(interval[1])
    for lo_key in parent:
        if "ci_lo" not in lo_key:
            continue
        prefix, suffix = lo_key.split("ci_lo", 1)
        hi = parent.get(f"{prefix}ci_hi{suffix}")
        lo = parent[lo_key]
        if not (_number(lo) and _number(hi)):
            continue
        others = {k.split("ci_lo", 1)[1] for k in parent if "ci_lo" in k} - {suffix}
        candidates = [k for k in parent if _number(parent[k]) and "ci_" not in k and not k.startswith("n")
                      and k.startswith(prefix) and k.endswith(suffix) and "failure" not in k
                      and not any(other and k.endswith(other) for other in others if other != suffix)]
        if candidates == [name]:
            return float(lo), float(hi)
    return None


def classify(path: str, key: str, old: Any, new: Any, committed: dict[str, Any] | None) -> Moved | None:
    """The verdict for one changed key (None when either side is not a number)."""
    if not (_number(old) and _number(new)):
        return None
    if abs(new - old) <= ATOL + RTOL * abs(old):
        return Moved(path, key, float(old), float(new), FLOAT)
    parents = {dotted: (parent, name) for dotted, parent, name in flatten(committed or {})}
    ci = ci_of(*parents[key]) if key in parents else None
    if ci is None:
        return Moved(path, key, float(old), float(new), NO_CI)
    verdict = INSIDE if ci[0] <= new <= ci[1] else OUTSIDE
    return Moved(path, key, float(old), float(new), verdict, ci)


def machine_changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    """Fact -> (committed, new) for the ``machine`` facts that differ."""
    old_facts, new_facts = (old or {}).get("machine") or {}, (new or {}).get("machine") or {}
    return {k: (old_facts.get(k), new_facts.get(k)) for k in sorted(set(old_facts) | set(new_facts))
            if old_facts.get(k) != new_facts.get(k)}


def _dvc_diff(a_rev: str, b_rev: str | None) -> dict[str, Any]:
    command = ["dvc", "metrics", "diff", "--json", a_rev] + ([b_rev] if b_rev else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout or "{}")


def _load(path: str, rev: str | None) -> dict[str, Any] | None:
    if rev is None:
        file = Path(path)
        return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
    done = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else None


def compare(a_rev: str = "HEAD", b_rev: str | None = None) -> tuple[list[Moved], dict[str, dict]]:
    """Changed numbers of every metrics file between ``a_rev`` and ``b_rev`` (None = workspace), and the
    differing machine facts per file."""
    moved, machines = [], {}
    for path, keys in sorted(_dvc_diff(a_rev, b_rev).items()):
        committed, current = _load(path, a_rev), _load(path, b_rev)
        for key, change in sorted(keys.items()):
            verdict = classify(path, key, change.get("old"), change.get("new"), committed)
            if verdict is not None:
                moved.append(verdict)
        facts = machine_changes(committed, current)
        if facts:
            machines[path] = facts
    return moved, machines


def summary_lines(moved: list[Moved], machines: dict[str, dict]) -> list[str]:
    counts = {v: sum(m.verdict == v for m in moved) for v in (FLOAT, INSIDE, NO_CI, OUTSIDE)}
    lines = [f"changed numbers: {len(moved)} (float noise {counts[FLOAT]}, inside committed CI {counts[INSIDE]}, "
             f"moved without a CI {counts[NO_CI]}, outside committed CI {counts[OUTSIDE]})"]
    for path, facts in sorted(machines.items()):
        lines.append(f"machine differs for {path}: " + "; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in facts.items()))
    for m in moved:
        if m.verdict in (INSIDE, OUTSIDE, NO_CI):
            ci = f" CI [{m.ci[0]:.6g}, {m.ci[1]:.6g}]" if m.ci else ""
            lines.append(f"{m.verdict:10s} {m.path}:{m.key}  {m.old:.6g} -> {m.new:.6g} ({m.new - m.old:+.3g}){ci}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a_rev", nargs="?", default="HEAD", help="committed revision (default HEAD)")
    parser.add_argument("b_rev", nargs="?", default=None, help="second revision (default: the workspace)")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    args = parser.parse_args(argv)
    moved, machines = compare(args.a_rev, args.b_rev)
    if args.json:
        print(json.dumps({"moved": [asdict(m) for m in moved], "machine": machines}, indent=2, sort_keys=True))
    else:
        print("\n".join(summary_lines(moved, machines)))
    return 1 if any(m.verdict == OUTSIDE for m in moved) else 0


if __name__ == "__main__":
    sys.exit(main())
