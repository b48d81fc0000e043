"""model@<family>-<role>: a model spec -> models/llm/<family>/<role>/ (HF format + fingerprint.json)."""

from __future__ import annotations

import logging
import time

from hneurons import layout
from hneurons.errors import HNeuronsError
from hneurons.materialize import materialize
from stages._common import entry, load_params, param, run, setup_torch

log = logging.getLogger("model")
ROLES = ("instruct", "base")


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise HNeuronsError("usage: python -m stages.model NAME")
    name = argv[0]
    params = load_params()
    setup_torch(params)
    config = entry(params, "models", name)
    where = f"models.{name}"
    for key in ("family", "role", "source"):
        if key not in config:
            raise HNeuronsError(f"{where}.{key}: required")
    if config["role"] not in ROLES:
        raise HNeuronsError(f"{where}.role={config['role']!r}: expected one of {', '.join(ROLES)}")
    out = str(layout.model_dir(config["family"], config["role"]))
    started = time.perf_counter()
    fingerprint = materialize(config["source"], out, param(params, "base.cache_dir", ".cache/hneurons"),
                              where=f"{where}.source")
    log.info("%s: %s, %d layers x %d FFN neurons, reload max |logit diff| %.3g, %.1f s -> %s",
             name, fingerprint["architecture"], fingerprint["n_layers"], fingerprint["d_ffn"],
             fingerprint["reload_max_abs_logit_diff"], time.perf_counter() - started, out)


if __name__ == "__main__":
    run(main)
