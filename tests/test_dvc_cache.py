"""The project's DVC cache settings: an in-place write to an output must not reach the cache."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_cache_type() -> str:
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc/config")
    return config.get("cache", "type", fallback="reflink,copy").strip('"')


def test_cache_links_are_copies_or_reflinks():
    kinds = [kind.strip() for kind in project_cache_type().split(",")]
    assert kinds and not {"hardlink", "symlink"} & set(kinds), kinds


def test_in_place_write_to_an_output_leaves_the_cache_intact_and_is_reported(tmp_path):
    dvc = str(Path(sys.executable).parent / "dvc")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "site")}
    repo = tmp_path / "repo"
    repo.mkdir()

    def run(*args: str) -> str:
        return subprocess.run(args, cwd=repo, env=env, check=True, capture_output=True, text=True).stdout

    run("git", "init", "-q")
    run(dvc, "init", "-q")
    run(dvc, "config", "cache.type", project_cache_type())
    (repo / "in.txt").write_text("hello\n")
    run(dvc, "stage", "add", "-q", "-n", "copy", "-d", "in.txt", "-o", "out.txt",
        f"{sys.executable} -c \"import shutil; shutil.copy('in.txt', 'out.txt')\"")
    run(dvc, "repro", "-q")
    cached = [p for p in (repo / ".dvc/cache").rglob("*") if p.is_file() and p.read_bytes() == b"hello\n"]
    assert len(cached) == 1
    out = repo / "out.txt"
    os.chmod(out, 0o644)
    with open(out, "a", encoding="utf-8") as handle:   # what a careless script (or root) does
        handle.write("tampered\n")
    assert cached[0].read_bytes() == b"hello\n"
    assert "modified" in run(dvc, "status")
