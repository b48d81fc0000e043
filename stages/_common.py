"""Shared plumbing for stage scripts: params, threads, one-line errors."""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from hneurons.errors import HNeuronsError

PARAMS_FILE = Path("params.yaml")


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml parsed and checked against ``stages.params_schema`` (one-line error on a bad key or value)."""
    if not path.is_file():
        raise HNeuronsError(f"{path}: not found (run stages from the repository root)")
    try:
        with open(path, encoding="utf-8") as handle:
            params = yaml.safe_load(handle) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HNeuronsError(f"{path}:{at}: malformed YAML ({problem})") from None
    from stages.params_schema import validate

    validate(params, str(path))
    return params


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


def entry(params: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    """``params[section][name]`` or a one-line error listing the known names."""
    table = params.get(section) or {}
    if name not in table:
        raise HNeuronsError(f"{section}.{name}: unknown (known: {', '.join(sorted(table)) or 'none'})")
    return table[name]


def family_params(params: dict[str, Any], section: str, family: str) -> dict[str, Any]:
    """``params`` as seen by one family's stage: ``<section>.families`` must list ``family``, and every
    section's ``families.<family>`` overrides (a mapping of that section's own top-level keys; nested
    mappings merge key by key) replace the section's defaults. An unknown top-level key is a one-line
    error naming it (a typo would otherwise silently leave the default in place)."""
    families = param(params, f"{section}.families")
    if not isinstance(families, dict):
        raise HNeuronsError(f"{section}.families: expected a mapping family -> overrides ({{}} for none)")
    if family not in families:
        raise HNeuronsError(f"{section}.families: {family!r} is not listed ({', '.join(families) or 'none'})")
    resolved = dict(params)
    for name, table in params.items():
        overrides = table.get("families") if isinstance(table, dict) else None
        if not isinstance(overrides, dict) or family not in overrides:
            continue
        resolved[name] = _merge_overrides(table, overrides[family] or {}, f"{name}.families.{family}")
    return resolved


def _merge_overrides(defaults: dict[str, Any], overrides: Any, where: str, top: bool = True) -> dict[str, Any]:
    if not isinstance(overrides, dict):
        raise HNeuronsError(f"{where}: expected a mapping of keys to override, got {overrides!r}")
    merged = dict(defaults)
    for key, value in overrides.items():
        if top and (key == "families" or key not in defaults):
            raise HNeuronsError(f"{where}.{key}: not an overridable key of this section")
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            merged[key] = _merge_overrides(defaults[key], value, f"{where}.{key}", top=False)
        else:
            merged[key] = value
    return merged


def compute_settings(params: dict[str, Any], family: str) -> tuple[str, str]:
    """(device, dtype) for a family's models: ``compute.device`` / ``compute.dtype`` with the
    ``compute.families.<family>`` overrides."""
    section = param(params, "compute")
    overrides = (section.get("families") or {}).get(family) or {}
    merged = _merge_overrides(section, overrides, f"compute.families.{family}")
    return str(merged["device"]), str(merged["dtype"])


def device_tag(device: str) -> str:
    """Suffix for generation-cache salts: "" on the CPU (keys as before), ``:<device>`` elsewhere."""
    return "" if device == "cpu" else f":{device}"


def derived_seed(base_seed: int, tag: str) -> int:
    """A 32-bit seed for one use (``tag``) of the root seed ``base.seed``."""
    digest = hashlib.sha256(f"{int(base_seed)}\x1f{tag}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


def setup_runtime(params: dict[str, Any]) -> None:
    """Environment and logging for a stage (no heavy imports; see setup_torch)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("transformers", "datasets", "huggingface_hub", "filelock", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def setup_torch(params: dict[str, Any]) -> None:
    """setup_runtime plus torch threads from base.threads and quiet transformers logs."""
    setup_runtime(params)
    import torch
    from transformers.utils import logging as hf_logging

    threads = int(param(params, "base.threads", 0) or 0)
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
