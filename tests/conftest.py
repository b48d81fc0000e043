"""Shared fixtures; the repository root and tests/ are on sys.path through pyproject.toml (pytest pythonpath)."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama model + tokenizer saved in HF format (session-scoped)."""
    from pipeline_utils import sharpen
    from tiny import make_model, make_tokenizer

    path = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    tokenizer = make_tokenizer()
    sharpen(make_model("llama", vocab_size=len(tokenizer))).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
