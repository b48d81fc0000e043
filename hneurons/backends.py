"""Generation backends behind one interface: in-process transformers, offline vLLM, an OpenAI-compatible server.

Every backend takes prompts as token ids, one row per response, and returns the generated ids without
padding and without the trailing stop token (the convention of :func:`hneurons.generate.generate`): a row
shorter than ``max_new_tokens`` stopped on a stop token, one of exactly ``max_new_tokens`` was cut off.
Each row is its own request with the project's per-row seed (:func:`hneurons.generate.sample_seed`), never
an ``n > 1`` request (vLLM derives the children of an ``n > 1`` request from one seed, so neighbouring
questions would share random streams). Every sampling field is sent explicitly (no server defaults from
a model's generation_config apply): temperature, top-p, top-k (off = 0 in vLLM's offline API, -1 over
HTTP, which vLLM and SGLang both read as off), min-p 0, neutral penalties, the project's stop ids.

Reproducibility differs per engine. ``transformers`` is this project's own sampler: per-row uniform
streams, byte-identical reruns on one machine. vLLM and servers draw with their own samplers: the same
distribution, other random streams (their ids differ from the transformers backend's), and equal reruns
only with vLLM's batch-invariant mode (``VLLM_BATCH_INVARIANT=1``), which :meth:`info` records.

API assumptions: vLLM 0.30.0 (``requirements-vllm.txt``): ``LLM.generate([{"prompt_token_ids": ids}],
[SamplingParams])`` returns RequestOutputs whose ``outputs[0].token_ids`` end with the stop token that
ended the row; ``POST /v1/completions`` takes ``prompt`` as a list of ids and, with ``return_token_ids``,
answers ``choices[0].token_ids`` (also ending with that stop token); ``GET /version`` gives its version.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

from hneurons import generate as G
from hneurons.errors import HNeuronsError
from hneurons.openai_http import OpenAIEndpoint

KINDS = ("transformers", "vllm", "openai")


class Backend(Protocol):
    """What generation needs from an engine (see the module docstring for the id convention)."""

    cache_tag: str  # "" keeps generation-cache keys as they were before backends; else names the engine

    def generate(self, prompts: Sequence[Sequence[int]], settings: G.DecodingSettings,
                 seeds: Sequence[int] | None, batch_size: int, progress: bool = False) -> list[list[int]]:
        ...

    def info(self) -> dict[str, Any]:
        """engine, engine_version, device, dtype, batch_invariant (+ engine-specific facts); JSON-able."""
        ...


def strip_stop(ids: Sequence[int], stops: Sequence[int]) -> list[int]:
    """``ids`` without a trailing stop token (an engine that reports it keeps it as the last id)."""
    out = [int(t) for t in ids]
    return out[:-1] if out and out[-1] in set(stops) else out


def model_stop_ids(model_dir: str | Path, tokenizer) -> list[int]:
    """:func:`hneurons.generate.stop_token_ids` of a materialized model without loading its weights
    (its generation_config.json, else the config's EOS, as ``from_pretrained`` does)."""
    from transformers import AutoConfig, GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(model_dir)
    except OSError:
        config = GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_dir))
    return G.stop_token_ids(SimpleNamespace(generation_config=config), tokenizer)


class TransformersBackend:
    """In-process :func:`hneurons.generate.generate` (the project's own seeded sampler).

    ``cache_tag`` is empty, so its batches keep the cache keys they had before backends existed.
    """

    cache_tag = ""

    def __init__(self, model, tokenizer, device: str = "cpu", dtype: str = "float32"):
        self.model, self.tokenizer, self.device, self.dtype = model, tokenizer, device, dtype

    def generate(self, prompts: Sequence[Sequence[int]], settings: G.DecodingSettings,
                 seeds: Sequence[int] | None, batch_size: int, progress: bool = False) -> list[list[int]]:
        return G.generate(self.model, self.tokenizer, [list(p) for p in prompts], settings, seeds, batch_size,
                          progress)

    def info(self) -> dict[str, Any]:
        import torch
        import transformers

        # Per-row random streams are batch-independent; logits are not bitwise batch-invariant on every
        # device (see hneurons.generate), hence False.
        return {"engine": "transformers", "engine_version": transformers.__version__, "torch": torch.__version__,
                "device": self.device, "dtype": self.dtype, "batch_invariant": False}


class VLLMBackend:
    """Offline vLLM (``vllm.LLM``) on the GPU host; build it with :meth:`from_model_dir`.

    llm: an object with vLLM's ``generate(prompts, sampling_params, use_tqdm=...)``; sampling_params:
    a factory taking SamplingParams' keyword fields; facts: what :meth:`info` reports.
    """

    def __init__(self, llm, sampling_params: Callable[..., Any], stops: Sequence[int], facts: dict[str, Any]):
        self.llm, self.sampling_params, self.stops, self.facts = llm, sampling_params, [int(s) for s in stops], facts
        self.cache_tag = (f"engine=vllm-{facts.get('engine_version')}:tp={facts.get('tensor_parallel_size')}"
                          f":batch_invariant={facts.get('batch_invariant')}")

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, tokenizer, dtype: str, gpu_memory_utilization: float = 0.85,
                       max_model_len: int | None = None, tensor_parallel_size: int = 1, enforce_eager: bool = False,
                       batch_invariant: bool = False, where: str = "compute.backend") -> VLLMBackend:
        """Load ``model_dir`` (a materialized HF directory) into vLLM; vLLM picks its own GPU(s).

        ``generation_config="vllm"``: the model's generation_config.json sets no defaults or limits.
        batch_invariant sets ``VLLM_BATCH_INVARIANT=1`` before vLLM is imported.
        """
        if batch_invariant:
            os.environ["VLLM_BATCH_INVARIANT"] = "1"
        try:
            import vllm
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise HNeuronsError(f"{where}.kind=vllm: vllm is not importable ({exc}); on a GPU host install "
                                f"requirements-vllm.txt (README, GPU section)") from None
        kwargs: dict[str, Any] = {"model": str(model_dir), "tokenizer": str(model_dir), "dtype": dtype, "seed": 0,
                                  "gpu_memory_utilization": float(gpu_memory_utilization),
                                  "tensor_parallel_size": int(tensor_parallel_size),
                                  "enforce_eager": bool(enforce_eager), "generation_config": "vllm"}
        if max_model_len is not None:
            kwargs["max_model_len"] = int(max_model_len)
        llm = LLM(**kwargs)
        try:
            from vllm import envs

            invariant = bool(envs.VLLM_BATCH_INVARIANT)
        except (ImportError, AttributeError):
            invariant = os.environ.get("VLLM_BATCH_INVARIANT", "0") == "1"
        try:
            from vllm.platforms import current_platform

            device = str(current_platform.device_type)
        except (ImportError, AttributeError):
            device = "cuda"
        facts = {"engine": "vllm", "engine_version": str(vllm.__version__), "device": device, "dtype": dtype,
                 "batch_invariant": invariant, "tensor_parallel_size": int(tensor_parallel_size)}
        return cls(llm, SamplingParams, model_stop_ids(model_dir, tokenizer), facts)

    def request_fields(self, settings: G.DecodingSettings, seed: int | None) -> dict[str, Any]:
        """SamplingParams' keyword fields for one row (every sampling field explicit; n = 1)."""
        return {"n": 1, "seed": None if seed is None else int(seed), "temperature": float(settings.temperature),
                "top_p": float(settings.top_p), "top_k": int(settings.top_k), "min_p": 0.0,
                "presence_penalty": 0.0, "frequency_penalty": 0.0, "repetition_penalty": 1.0,
                "max_tokens": int(settings.max_new_tokens), "min_tokens": 0, "stop": [],
                "stop_token_ids": list(self.stops), "ignore_eos": False, "detokenize": False,
                "skip_special_tokens": True, "logprobs": None, "prompt_logprobs": None}

    def generate(self, prompts: Sequence[Sequence[int]], settings: G.DecodingSettings,
                 seeds: Sequence[int] | None, batch_size: int, progress: bool = False) -> list[list[int]]:
        """All rows in one ``LLM.generate`` call (vLLM schedules them; ``batch_size`` is not used)."""
        G._check_inputs(prompts, settings, seeds, batch_size)
        requests = [{"prompt_token_ids": [int(t) for t in p]} for p in prompts]
        params = [self.sampling_params(**self.request_fields(settings, None if seeds is None else seeds[i]))
                  for i in range(len(prompts))]
        outputs = self.llm.generate(requests, params, use_tqdm=progress)
        if len(outputs) != len(prompts):
            raise HNeuronsError(f"vllm: {len(outputs)} outputs for {len(prompts)} prompts")
        return [strip_stop(output.outputs[0].token_ids, self.stops) for output in outputs]

    def info(self) -> dict[str, Any]:
        return dict(self.facts)


class OpenAIBackend:
    """Any OpenAI-compatible ``/v1/completions`` server that returns token ids (vLLM's ``return_token_ids``).

    base_url: e.g. ``http://127.0.0.1:8000/v1``; model: the served model name; the key is read from the
    environment variable ``api_key_env``; name_key: the params key naming ``model`` (for messages). Rows go
    as concurrent single requests (``concurrency`` at a time).
    batch_invariant: what the server was started with, as the user declares it (None = not stated).
    """

    def __init__(self, base_url: str, model: str, stops: Sequence[int], api_key_env: str = "OPENAI_API_KEY",
                 api_key: str | None = None, concurrency: int = 16, timeout: float = 600.0, retries: int = 3,
                 backoff: float = 1.0, batch_invariant: bool | None = None, where: str = "compute.backend",
                 name_key: str = "model"):
        if not model:
            raise HNeuronsError(f"{where}.{name_key}: required for the openai backend (the served model name)")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise HNeuronsError(f"{where}.concurrency={concurrency!r}: expected an integer >= 1")
        self.endpoint = OpenAIEndpoint(base_url, api_key, api_key_env, timeout, retries, backoff, where)
        self.model, self.stops, self.concurrency = model, [int(s) for s in stops], concurrency
        self.where, self.name_key, self.batch_invariant = where, name_key, batch_invariant
        root = self.endpoint.base_url[:-3] if self.endpoint.base_url.endswith("/v1") else self.endpoint.base_url
        version = self.endpoint.get_json(f"{root}/version")
        self.server_version = str(version["version"]) if isinstance(version, dict) and "version" in version \
            else "unknown"
        self.cache_tag = f"engine=openai:{model}:{self.server_version}:batch_invariant={batch_invariant}"

    def check(self) -> None:
        """One GET of ``/models``: the server answers and serves ``model`` (one-line error otherwise)."""
        listing = self.endpoint.get_json(f"{self.endpoint.base_url}/models")
        if listing is None:
            raise HNeuronsError(f"{self.where}.base_url={self.endpoint.base_url}: no answer to GET /models "
                                f"(is the server running?)")
        served = [str(m.get("id")) for m in listing.get("data", []) if isinstance(m, dict)]
        if self.model not in served:
            raise HNeuronsError(f"{self.where}.{self.name_key}={self.model}: not served at "
                                f"{self.endpoint.base_url} (served: {', '.join(served) or 'none'})")

    def request_body(self, prompt: Sequence[int], settings: G.DecodingSettings, seed: int | None) -> dict[str, Any]:
        """The JSON body of one row's ``/completions`` request (every sampling field explicit; n = 1)."""
        return {"model": self.model, "prompt": [int(t) for t in prompt], "n": 1,
                "seed": None if seed is None else int(seed), "temperature": float(settings.temperature),
                "top_p": float(settings.top_p), "top_k": int(settings.top_k) if settings.top_k > 0 else -1,
                "min_p": 0.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "repetition_penalty": 1.0,
                "max_tokens": int(settings.max_new_tokens), "min_tokens": 0, "stop": [],
                "stop_token_ids": list(self.stops), "ignore_eos": False, "skip_special_tokens": True,
                "include_stop_str_in_output": False, "echo": False, "stream": False, "return_token_ids": True}

    def _read(self, reply: Any) -> list[int]:
        choice = reply["choices"][0]
        ids = choice.get("token_ids")
        if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
            raise HNeuronsError(f"{self.where}.base_url={self.endpoint.base_url}: the reply has no "
                                f"choices[0].token_ids (the server must honour return_token_ids, as vLLM does)")
        return strip_stop(ids, self.stops)

    def _one(self, body: dict[str, Any]) -> list[int]:
        return self.endpoint.post("/completions", body, self._read, "reply is not a completion")

    def generate(self, prompts: Sequence[Sequence[int]], settings: G.DecodingSettings,
                 seeds: Sequence[int] | None, batch_size: int, progress: bool = False) -> list[list[int]]:
        """One request per row, ``concurrency`` in flight; ``batch_size`` is not used (the server batches)."""
        G._check_inputs(prompts, settings, seeds, batch_size)
        bodies = [self.request_body(p, settings, None if seeds is None else seeds[i]) for i, p in enumerate(prompts)]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(bodies)) or 1) as pool:
            return list(pool.map(self._one, bodies))

    def info(self) -> dict[str, Any]:
        return {"engine": "openai", "engine_version": self.server_version, "device": "server", "dtype": "server",
                "batch_invariant": self.batch_invariant, "model": self.model}
