"""model@<family>-<role>: a model spec -> models/llm/<family>/<role>/ (HF format + fingerprint.json)."""

from __future__ import annotations

import logging
import time

from hneurons import layout
from hneurons.errors import HNeuronsError
from hneurons.materialize import materialize
from stages._common import run, setup_torch
from stages.config import load_config

log = logging.getLogger("model")
ROLES = ("instruct", "base")


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.model NAME")
    name = argv[0]
    params = load_config()
    setup_torch(params)
    models = params.models or {}
    if name not in models:
        raise HNeuronsError(f"models.{name}: unknown (known: {', '.join(sorted(models)) or 'none'})")
    spec, where = models[name], f"models.{name}"
    for key in ("family", "role", "source"):
        if getattr(spec, key) is None:
            raise HNeuronsError(f"{where}.{key}: required")
    if spec.role not in ROLES:
        raise HNeuronsError(f"{where}.role={spec.role!r}: expected one of {', '.join(ROLES)}")
    out = str(layout.model_dir(spec.family, spec.role))
    started = time.perf_counter()
    source = params.raw["models"][name]["source"]   # the mapping as written: materialize reads and records it
    fingerprint = materialize(source, out, (params.base and params.base.cache_dir) or ".cache/hneurons",
                              where=f"{where}.source")
    log.info("%s: %s, %d layers x %d FFN neurons, reload max |logit diff| %.3g, %.1f s -> %s",
             name, fingerprint["architecture"], fingerprint["n_layers"], fingerprint["d_ffn"],
             fingerprint["reload_max_abs_logit_diff"], time.perf_counter() - started, out)


if __name__ == "__main__":
    run(main)
