"""Run the tiny profile (tests/pipeline_utils.py) from clean and hash every file every stage wrote.

A code change that only restructures is proven so by equal hashes before and
after on the same machine. Files are keyed by their path inside the repo; a
renamed output is matched by content in the comparison.

Usage:
  .venv/bin/python bench/tiny_profile_hashes.py --out bench/out/tiny_hashes.json [--keep DIR]
  .venv/bin/python bench/tiny_profile_hashes.py --compare BEFORE.json AFTER.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def output_files(repo: Path) -> dict[str, str]:
    """{path: md5} of every file inside every output that dvc.lock records, sorted."""
    from hneurons.dvc_lock import lock_output_hashes
    from hneurons.workspace_state import md5_of

    hashes: dict[str, str] = {}
    for out in lock_output_hashes(repo / "dvc.lock"):
        path = repo / out
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            hashes[file.relative_to(repo).as_posix()] = md5_of(file)
    return dict(sorted(hashes.items()))


def run_profile(work: Path) -> dict:
    """Build the tiny repo under ``work``, ``dvc repro`` it, return hashes and the wall time."""
    from pipeline_utils import make_repo, pipeline_env, sharpen, tiny_params
    from tiny import make_model, make_tokenizer

    model_dir = work / "tiny-llama"
    tokenizer = make_tokenizer()
    sharpen(make_model("llama", vocab_size=len(tokenizer))).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    repo = make_repo(work / "repo", tiny_params(), model_dir)
    env = {**os.environ, **pipeline_env(work)}
    started = time.perf_counter()
    subprocess.run(["dvc", "repro"], cwd=repo, env=env, check=True, capture_output=True, text=True)
    return {"repro_seconds": round(time.perf_counter() - started, 1), "files": output_files(repo)}


def compare(before: dict, after: dict) -> list[str]:
    """Lines describing every file whose content differs (renames with equal content are reported as such)."""
    a, b = before["files"], after["files"]
    lines = []
    by_hash_b = {}
    for path, md5 in b.items():
        by_hash_b.setdefault(md5, []).append(path)
    for path, md5 in a.items():
        if b.get(path) == md5:
            continue
        if path in b:
            lines.append(f"changed  {path}")
        elif md5 in by_hash_b:
            lines.append(f"renamed  {path} -> {', '.join(by_hash_b[md5])} (same bytes)")
        else:
            lines.append(f"missing  {path}")
    for path, md5 in b.items():
        if path not in a and md5 not in set(a.values()):
            lines.append(f"new      {path}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path, help="build the repo here and keep it (default: a temporary dir)")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(p.read_text(encoding="utf-8")) for p in args.compare)
        lines = compare(before, after)
        print("\n".join(lines) if lines else f"identical: {len(before['files'])} files")
        print(f"repro seconds: {before.get('repro_seconds')} -> {after.get('repro_seconds')}")
        return 1 if lines else 0
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=False)
        result = run_profile(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="tiny-profile-") as tmp:
            result = run_profile(Path(tmp))
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(f"{len(result['files'])} files, repro {result['repro_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
