"""Shared plumbing for stage scripts: dotted params lookups, device and threads, seeds, one-line errors.
The typed params live in ``stages.config``."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from hneurons.errors import HNeuronsError


def param(params: dict[str, Any], dotted: str, default: Any = ...) -> Any:
    """``params['a']['b']`` for ``'a.b'``; a missing key without default is a one-line error."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is ...:
                raise HNeuronsError(f"params.yaml: missing {dotted}")
            return default
        node = node[part]
    return node


def compute_settings(params: Any, family: str) -> tuple[str, str]:
    """(device, dtype) for a family's models: ``compute.device`` / ``compute.dtype`` with the
    ``compute.families.<family>`` overrides (``params``: a typed ``Config`` or the params mapping)."""
    from stages.config import merge_overrides

    section = param(getattr(params, "raw", params), "compute")
    overrides = (section.get("families") or {}).get(family) or {}
    merged = merge_overrides(section, overrides, f"compute.families.{family}")
    return str(merged["device"]), str(merged["dtype"])


def device_tag(device: str) -> str:
    """Suffix for generation-cache salts: "" on the CPU (keys as before), ``:<device>`` elsewhere."""
    return "" if device == "cpu" else f":{device}"


def derived_seed(base_seed: int, tag: str) -> int:
    """A 32-bit seed for one use (``tag``) of the root seed ``base.seed``."""
    digest = hashlib.sha256(f"{int(base_seed)}\x1f{tag}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def setup_runtime(params: Any = None) -> None:
    """Environment and logging for a stage (no heavy imports; see setup_torch)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("transformers", "datasets", "huggingface_hub", "filelock", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def setup_torch(config: Any) -> None:
    """setup_runtime plus torch threads from ``base.threads`` of a typed ``stages.config.Config`` and quiet
    transformers logs."""
    setup_runtime(config)
    import torch
    from transformers.utils import logging as hf_logging

    threads = int((config.base.threads if config.base else 0) or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def run(main: Callable[[list[str]], None]) -> None:
    """Run a stage's main; a HNeuronsError, or an OS error on a file (read-only directory, disk full),
    becomes one line on stderr and exit status 2."""
    try:
        main(sys.argv[1:])
    except HNeuronsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if exc.filename is None:
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
