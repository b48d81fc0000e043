"""Helpers to run the real DVC pipeline on a tiny profile inside a temporary git repo."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]

# Overrides that turn params.yaml into the tiny profile (a tiny random model as a `path`
# spec, ~20 questions per dataset). Later stages add their tiny sizes here.
TINY_OVERRIDES: dict[str, Any] = {
    "base": {"threads": 1},
    "models": {"tiny-instruct": {"family": "tiny", "role": "instruct",
                                 "source": {"kind": "path", "path": "tiny-model"}}},
    "datasets": {
        "triviaqa": {"rows": [0, 24]},
        "nq_open": {"rows": [0, 20]},
        "bioasq": {"rows": [0, 20]},
        "nonexist": {"rows": [0, 20]},
        "falseqa": {"splits": ["test"]},
        "sycophancy": {"rows": [0, 20]},
        "jailbreak": {"rows": [0, 20]},
        "faitheval_style": {"rows": [2000, 2060]},
    },
}


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``models`` is replaced wholesale (the tiny family only)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "models":
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny_params(overrides: dict[str, Any] = TINY_OVERRIDES) -> dict[str, Any]:
    with open(ROOT / "params.yaml", encoding="utf-8") as handle:
        return merge(yaml.safe_load(handle), overrides)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def pipeline_env(tmp: Path) -> dict[str, str]:
    """Environment for DVC in tests: no analytics, private site cache, git identity, venv on PATH."""
    env = {
        "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp / "dvc-site"),
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return env


def make_repo(dest: Path, params: dict[str, Any], model_dir: Path) -> Path:
    """Copy the project's tracked files into ``dest`` as a fresh git repo with ``params``."""
    files = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if not source.is_file() or name == "dvc.lock" or name.startswith(("data/prepared/", "models/", "data/samples/",
                                                                          "data/activations/", "reports/")):
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    shutil.copytree(model_dir, dest / "tiny-model")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-qm", "tiny profile")
    return dest


def set_param(repo: Path, dotted: str, value: Any) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    node = params
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
