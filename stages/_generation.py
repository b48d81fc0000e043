"""Generation backends for stage scripts: ``compute.backend`` (per family) to a backend object.

Kept apart from ``stages._common`` so that only the stages that generate carry the backends' code in
their dvc.yaml deps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hneurons.errors import HNeuronsError
from stages._common import compute_settings, param
from stages.config import Decoding


def decoding_settings(decoding: Decoding, n_samples: int = 1, where: str = "decoding") -> Any:
    """The library's ``hneurons.generate.DecodingSettings`` for a typed ``Decoding`` (checked, naming ``where``)."""
    from hneurons.generate import DecodingSettings

    return DecodingSettings(n_samples=n_samples, temperature=decoding.temperature, top_k=decoding.top_k,
                            top_p=decoding.top_p, max_new_tokens=decoding.max_new_tokens).validate(where)


BACKEND_KEYS = {
    "transformers": (),
    "vllm": ("gpu_memory_utilization", "max_model_len", "tensor_parallel_size", "enforce_eager", "batch_invariant"),
    "openai": ("base_url", "model", "base_model", "base_model_url", "api_key_env", "concurrency", "timeout",
               "batch_invariant"),
}


def backend_settings(params: Any, family: str) -> tuple[dict[str, Any], str]:
    """(backend config, its params key) for a family's generation: ``compute.backend`` (default
    ``{kind: transformers}``) with ``compute.families.<family>.backend`` over it key by key, or replacing
    it whole when the override names a ``kind``. Unknown kinds and keys of another kind are one-line errors."""
    section = param(getattr(params, "raw", params), "compute")   # a typed Config or the params mapping
    config, where = dict(section.get("backend") or {"kind": "transformers"}), "compute.backend"
    override = ((section.get("families") or {}).get(family) or {}).get("backend")
    if isinstance(override, dict):
        where = f"compute.families.{family}.backend"
        config = dict(override) if "kind" in override else {**config, **override}
    kind = config.get("kind")
    if kind not in BACKEND_KEYS:
        raise HNeuronsError(f"{where}.kind={kind!r}: expected one of {', '.join(BACKEND_KEYS)}")
    stray = sorted(set(config) - {"kind", *BACKEND_KEYS[kind]})
    if stray:
        raise HNeuronsError(f"{where}.{stray[0]}: not a key of the {kind} backend "
                            f"(its keys: {', '.join(BACKEND_KEYS[kind]) or 'kind only'})")
    return config, where


def generation_backend(params: Any, family: str, model_dir: Path, model: Any = None,
                       tokenizer: Any = None, role: str = "instruct") -> tuple[Any, Any, Any]:
    """(backend, tokenizer, model or None) for a stage's unhooked generation from ``model_dir`` (the
    family's ``role`` model), as ``compute.backend`` says. Loads the tokenizer when not given, and the
    in-process model only when the backend is ``transformers`` and ``model`` is None; an openai server
    (``base_url`` + ``model``; for the base role ``base_model`` at ``base_model_url``, default ``base_url``)
    is checked before use."""
    from hneurons import backends as B
    from hneurons.models import load_causal_lm, load_tokenizer

    config, where = backend_settings(params, family)
    device, dtype = compute_settings(params, family)
    kind = config["kind"]
    if kind == "transformers":
        if model is None:
            model, tokenizer = load_causal_lm(model_dir, dtype, device)
        return B.TransformersBackend(model, tokenizer, device, dtype), tokenizer, model
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_dir)
    if kind == "vllm":
        share = config.get("gpu_memory_utilization", 0.85)
        if not 0 < share <= 1:
            raise HNeuronsError(f"{where}.gpu_memory_utilization={share!r}: expected a number in (0, 1]")
        options = {key: config[key] for key in BACKEND_KEYS["vllm"] if key in config}
        return B.VLLMBackend.from_model_dir(model_dir, tokenizer, dtype, **options, where=where), tokenizer, model
    name_key = "base_model" if role == "base" else "model"
    if not config.get(name_key):
        raise HNeuronsError(f"{where}.{name_key}: required for the openai backend (the served name of "
                            f"{family}'s {role} model)")
    url = (config.get("base_model_url") if role == "base" else None) or config.get("base_url") or ""
    backend = B.OpenAIBackend(url, config[name_key],
                              B.model_stop_ids(model_dir, tokenizer),
                              api_key_env=config.get("api_key_env") or "OPENAI_API_KEY",
                              concurrency=config.get("concurrency", 16), timeout=float(config.get("timeout", 600)),
                              batch_invariant=config.get("batch_invariant"), where=where, name_key=name_key)
    backend.check()
    return backend, tokenizer, model


def hooked_generation_info(params: Any, family: str, model: Any, tokenizer: Any) -> dict[str, Any]:
    """What generation with neuron hooks ran on: always the in-process transformers model (hooks need it),
    with the configured backend named when it is another one."""
    from hneurons.backends import TransformersBackend

    device, dtype = compute_settings(params, family)
    info = TransformersBackend(model, tokenizer, device, dtype).info()
    kind = backend_settings(params, family)[0]["kind"]
    if kind != "transformers":
        info["configured_backend"] = kind
        info["note"] = "neuron hooks need the in-process model; this stage generated with transformers"
    return info
