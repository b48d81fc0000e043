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
N_TINY_QUESTIONS = 48
TINY_OVERRIDES: dict[str, Any] = {
    "base": {"threads": 1},
    # compute: an explicit per-family setting (the tiny family's models on "cpu" in float32), which every
    # model-loading stage must honour and record in its metrics (test_every_model_stage_records_its_device).
    "compute": {"families": {"tiny": {"device": "cpu", "dtype": "float32"}}},
    # tune: a few steps on the tiny model (family tinytune: base only, its twin is not used downstream);
    # trivia rows 10-15 of the tiny nq_open table stay clear of origin's first rows and of the rows
    # test_param_change_reruns_only_that_stage_and_dependents keeps.
    "tune": {"families": {"tinytune": {}}, "trivia": {"dataset": "nq_open", "rows": [10, 15]},
             "sizes": {"trivia": 3, "premise": 3, "refusal": 3, "abstain": 3}, "n_check": 1, "max_length": 384,
             "steps": 2, "batch_size": 2, "lr": 1.0e-3, "warmup_steps": 1,
             "check": {"max_new_tokens": 4, "include_base": True}},
    "report": {"families": ["tiny"]},
    # origin: the tiny family has a base (a perturbed copy of the instruct model, see make_repo); greedy base
    # decoding reproduces the base answers write_tiny_triviaqa adds as aliases, so both classes occur.
    "origin": {"families": {"tiny": {}}, "n_questions": 8, "n_boot": 50, "n_random_sets": 5,
               "decoding": {"temperature": 0.0, "top_k": 50, "top_p": 0.9, "max_new_tokens": 5}},
    # detect: triviaqa only (the random tiny model never answers NQ-Open/BioASQ right nor abstains on NonExist,
    # so those would stop the stage with the empty-class error); greedy + 5 tokens reproduce the tiny aliases.
    "detect": {"families": {"tiny": {}}, "datasets": ["triviaqa"], "n_questions": {"triviaqa": 12},
               "decoding": {"triviaqa": {"temperature": 0.0, "top_k": 50, "top_p": 0.9, "max_new_tokens": 5}},
               "batch_size": 16, "extract_batch_size": 8, "n_boot": 50},
    "sample": {"families": {"tiny": {}}, "n_samples": 2, "decoding": {"temperature": 0.0, "max_new_tokens": 5},
               "max_per_class": None, "batch_size": 16, "splits": {"train": 0.5, "validation": 0.25, "test": 0.25}},
    "extract": {"runs": {"tiny-instruct-triviaqa": {"family": "tiny", "role": "instruct", "dataset": "triviaqa"}},
                "batch_size": 8, "row_group_examples": 8},
    "probe": {"families": {"tiny": {}}, "C_grid": [1, 10, 100], "n_bootstrap": 2, "n_ci_boot": 50,
              "screen_size": 20, "max_add": 20,
              "task": {"alpha": 0.0, "n_questions": 4, "max_new_tokens": 5, "batch_size": 4}},
    "intervene": {"families": {"tiny": {}}, "benchmarks": ["falseqa"], "alphas": [0, 1], "random_alphas": [0, 1],
                  "n_random_sets": 1, "n_items": {"falseqa": 4}, "screen": [], "n_boot": 50, "batch_size": 8,
                  "decoding": {"falseqa": {"temperature": 0, "max_new_tokens": 4}},
                  "capability": {"n_questions": 4, "decoding": {"temperature": 0, "max_new_tokens": 4}}},
    "models": {"tiny-instruct": {"family": "tiny", "role": "instruct",
                                 "source": {"kind": "path", "path": "tiny-model"}},
               "tiny-base": {"family": "tiny", "role": "base", "source": {"kind": "path", "path": "tiny-base"}},
               "tinytune-base": {"family": "tinytune", "role": "base",
                                 "source": {"kind": "path", "path": "tiny-model"}}},
    "datasets": {
        "triviaqa": {"source": {"kind": "file", "path": "data/raw/tiny_triviaqa.jsonl"}, "rows": [0, N_TINY_QUESTIONS]},
        "nq_open": {"rows": [0, 20]},
        "bioasq": {"rows": [0, 20]},
        "nonexist": {"rows": [0, 20]},
        "falseqa": {"splits": ["train", "test"]},   # train: tune's premise corrections
        "sycophancy": {"rows": [0, 20]},
        "jailbreak": {"rows": [0, 20]},
        "faitheval_style": {"rows": [2000, 2060]},
    },
}


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``models``, ``runs`` and ``families`` are replaced wholesale (the tiny families only)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("models", "runs", "families"):
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
    save_perturbed(model_dir, dest / "tiny-base")
    write_tiny_triviaqa(dest / "tiny-model", dest / "data/raw/tiny_triviaqa.jsonl", params["sample"]["prompt"],
                        base_dir=dest / "tiny-base")
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-qm", "tiny profile")
    return dest


def sharpen(model, seed: int = 0, std: float = 0.3):
    """Random weights large enough that greedy decoding does not repeat one token."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0, std, generator=generator)
    return model


def save_perturbed(model_dir: Path, dest: Path, seed: int = 1, scale: float = 0.1) -> Path:
    """A tiny 'base' model: the model at ``model_dir`` with seeded noise on its FFN weights (tiny.perturbed_copy)."""
    from hneurons.models import load_causal_lm
    from tiny import perturbed_copy

    model, tok = load_causal_lm(model_dir)
    perturbed_copy(model, scale, seed).save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def write_tiny_triviaqa(model_dir: Path, path: Path, prompt: str, n: int = N_TINY_QUESTIONS,
                        base_dir: Path | None = None) -> None:
    """TriviaQA-format questions whose aliases are the tiny model's own greedy answer for even rows
    (consistently faithful at T=0) and an unmatched string for odd rows (consistently hallucinated).
    With ``base_dir``, even rows also get the base model's greedy answer to the base prompt
    (question + "\\nAnswer:", cut at the first newline), so origin's greedy base decoding sees both classes."""
    import json

    from hneurons.generate import DecodingSettings, chat_prompt_ids, generate
    from hneurons.models import load_causal_lm

    words = ["capital", "river", "author", "year", "painter", "city", "king", "planet"]
    questions = [f"Which {words[i % 8]} is number {i}?" for i in range(n)]
    greedy_settings = DecodingSettings(temperature=0, max_new_tokens=5)
    model, tok = load_causal_lm(model_dir)
    prompts = [chat_prompt_ids(tok, prompt.format(question=q)) for q in questions]
    answers = [[tok.decode(ids, skip_special_tokens=True).strip()]
               for ids in generate(model, tok, prompts, greedy_settings, None, batch_size=16)]
    if base_dir is not None:
        from hneurons import origin

        base, base_tok = load_causal_lm(base_dir)
        lines = origin.line_tokens(base_tok)
        prompts = [origin.base_prompt_ids(base_tok, q) for q in questions]
        for aliases, ids in zip(answers, generate(base, base_tok, prompts, greedy_settings, None, batch_size=16)):
            aliases.append(base_tok.decode(origin.cut_at_newline(ids, lines), skip_special_tokens=True).strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for i, (question, found) in enumerate(zip(questions, answers)):
            aliases = [a for a in dict.fromkeys(found) if a] if i % 2 == 0 else []
            handle.write(json.dumps({"question_id": f"tq_{i:03d}", "question": question,
                                     "answers": aliases or ["zzzz unmatched"]}) + "\n")


def set_param(repo: Path, dotted: str, value: Any) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text(encoding="utf-8"))
    node = params
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
