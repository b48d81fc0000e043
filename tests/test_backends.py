"""Generation backends on a tiny random model: an OpenAI-compatible stub server and a stand-in of vLLM's
offline API, both backed by the in-process transformers backend, give the in-process ids; the fields each
request sends; the cache keys; params handling; the sample stage through a server."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import yaml

from fake_openai import FakeCompletions
from hneurons.backends import OpenAIBackend, TransformersBackend, VLLMBackend, model_stop_ids, strip_stop
from hneurons.errors import HNeuronsError
from hneurons.generate import DecodingSettings, chat_prompt_ids, generate_cached, sample_seed, stop_token_ids
from pipeline_utils import sharpen

QUESTIONS = ["What is the capital of France?", "Where in England was Dame Judi Dench born?",
             "Who won the Nobel Prize for Literature in 1930?", "Which year?"]
SAMPLING = DecodingSettings(n_samples=3, temperature=1.0, top_k=100, top_p=0.95, max_new_tokens=40)
GREEDY = DecodingSettings(n_samples=1, temperature=0.0, top_k=0, top_p=1.0, max_new_tokens=12)


@pytest.fixture(scope="module")
def tok():
    from tiny import make_tokenizer

    return make_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    from tiny import make_model

    return sharpen(make_model("llama", vocab_size=len(tok)))


@pytest.fixture(scope="module")
def local(model, tok):
    return TransformersBackend(model, tok)


@pytest.fixture(scope="module")
def rows(tok):
    """(prompts, seeds): every question 3 times, the project's per-(example, sample) seeds."""
    prompts = [chat_prompt_ids(tok, q) for q in QUESTIONS for _ in range(3)]
    seeds = [sample_seed(7, f"q{i // 3}", i % 3) for i in range(len(prompts))]
    return prompts, seeds


def test_openai_backend_through_a_stub_server_gives_the_in_process_ids(model, tok, local, rows):
    prompts, seeds = rows
    stops = stop_token_ids(model, tok)
    for settings, row_seeds in ((SAMPLING, seeds), (GREEDY, None)):
        expected = local.generate(prompts, settings, row_seeds, batch_size=4)
        if settings is SAMPLING:  # some rows end on a stop token (the server reports it; the backend drops it)
            assert sum(len(ids) < settings.max_new_tokens for ids in expected) >= 2
        with FakeCompletions(local, stop_id=stops[0]) as server:
            remote = OpenAIBackend(server.url, "tiny", stops, api_key_env="HNEURONS_TEST_UNSET_KEY", concurrency=4)
            remote.check()
            got = remote.generate(prompts, settings, row_seeds, batch_size=4)
        assert got == expected
        body = server.bodies[0]
        assert len(server.bodies) == len(prompts)  # one request per sample
        assert body["prompt"] == prompts[0] and body["n"] == 1 and body["return_token_ids"] is True
        assert body["temperature"] == settings.temperature and body["top_p"] == settings.top_p
        assert body["top_k"] == (settings.top_k if settings.top_k > 0 else -1)
        assert (body["min_p"], body["presence_penalty"], body["frequency_penalty"], body["repetition_penalty"]) \
            == (0.0, 0.0, 0.0, 1.0)
        assert body["max_tokens"] == settings.max_new_tokens and body["min_tokens"] == 0
        assert body["stop_token_ids"] == stops and body["ignore_eos"] is False and body["stop"] == []
        assert sorted((b["prompt"], b["seed"]) for b in server.bodies) == sorted(
            zip(prompts, row_seeds or [None] * len(prompts)))
    assert remote.info() == {"engine": "openai", "engine_version": "stub-0.30.0", "device": "server",
                             "dtype": "server", "batch_invariant": None, "model": "tiny"}


def test_openai_backend_rejects_a_reply_without_token_ids_and_a_model_not_served(model, tok, local, rows):
    prompts, seeds = rows
    stops = stop_token_ids(model, tok)
    with FakeCompletions(local, stop_id=stops[0], token_ids=False) as server:
        remote = OpenAIBackend(server.url, "tiny", stops, where="compute.backend")
        with pytest.raises(HNeuronsError, match=r"^compute\.backend\.base_url=.*no choices\[0\]\.token_ids") as info:
            remote.generate(prompts[:2], SAMPLING, seeds[:2], batch_size=2)
        assert "\n" not in str(info.value)
        other = OpenAIBackend(server.url, "llama8b-base", stops, where="compute.families.x.backend",
                              name_key="base_model")
        with pytest.raises(HNeuronsError, match=r"^compute\.families\.x\.backend\.base_model=llama8b-base: not "
                                                r"served at .* \(served: tiny\)$"):
            other.check()


class StandInLLM:
    """vLLM's offline ``LLM.generate(prompts, sampling_params, use_tqdm=...)`` shape, backed by a backend:
    returns RequestOutput-like objects whose ``outputs[0].token_ids`` end with the stop token, as vLLM's do."""

    def __init__(self, backend, stop_id: int):
        self.backend, self.stop_id, self.calls = backend, stop_id, []

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append((prompts, sampling_params))
        outputs = []
        for prompt, sp in zip(prompts, sampling_params, strict=True):
            settings = DecodingSettings(n_samples=1, temperature=sp.temperature, top_k=sp.top_k, top_p=sp.top_p,
                                        max_new_tokens=sp.max_tokens)
            ids = self.backend.generate([prompt["prompt_token_ids"]], settings,
                                        None if sp.seed is None else [sp.seed], 1)[0]
            ids = ids + [self.stop_id] if len(ids) < sp.max_tokens else ids
            outputs.append(SimpleNamespace(outputs=[SimpleNamespace(token_ids=tuple(ids))]))
        return outputs


def test_vllm_backend_sends_one_seeded_n1_request_per_sample_with_every_field(model, tok, local, rows):
    prompts, seeds = rows
    stops = stop_token_ids(model, tok)
    llm = StandInLLM(local, stops[0])
    facts = {"engine": "vllm", "engine_version": "0.30.0", "device": "cuda", "dtype": "bfloat16",
             "batch_invariant": True, "tensor_parallel_size": 1}
    backend = VLLMBackend(llm, SimpleNamespace, stops, facts)
    assert backend.generate(prompts, SAMPLING, seeds, batch_size=4) == local.generate(prompts, SAMPLING, seeds, 4)
    sent_prompts, params = llm.calls[0]
    assert sent_prompts == [{"prompt_token_ids": p} for p in prompts]
    assert [p.seed for p in params] == seeds
    assert vars(params[0]) == {
        "n": 1, "seed": seeds[0], "temperature": 1.0, "top_p": 0.95, "top_k": 100, "min_p": 0.0,
        "presence_penalty": 0.0, "frequency_penalty": 0.0, "repetition_penalty": 1.0, "max_tokens": 40,
        "min_tokens": 0, "stop": [], "stop_token_ids": stops, "ignore_eos": False, "detokenize": False,
        "skip_special_tokens": True, "logprobs": None, "prompt_logprobs": None}
    assert backend.generate(prompts, GREEDY, None, 4) == local.generate(prompts, GREEDY, None, 4)
    assert {p.seed for p in llm.calls[1][1]} == {None} and {p.top_k for p in llm.calls[1][1]} == {0}
    assert backend.info() == facts
    with pytest.raises(HNeuronsError, match="needs one seed per prompt"):
        backend.generate(prompts, SAMPLING, None, 4)


def test_vllm_missing_is_a_one_line_error_naming_the_param(tiny_model_dir, tok, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "vllm", None)  # vllm absent (as on the project machines)
    with pytest.raises(HNeuronsError, match=r"^compute\.families\.big\.backend\.kind=vllm: vllm is not importable"):
        VLLMBackend.from_model_dir(tiny_model_dir, tok, "bfloat16", where="compute.families.big.backend")


def test_cache_keys_name_the_engine_except_for_transformers(model, tok, local, rows, tmp_path):
    prompts, seeds = rows
    stops = stop_token_ids(model, tok)
    in_process = generate_cached(local, prompts, SAMPLING, seeds, 6, tmp_path / "t", salt="fp:float32")
    facts = {"engine": "vllm", "engine_version": "0.30.0", "tensor_parallel_size": 1, "batch_invariant": False}
    vllm_like = VLLMBackend(StandInLLM(local, stops[0]), SimpleNamespace, stops, facts)
    via_vllm = generate_cached(vllm_like, prompts, SAMPLING, seeds, 6, tmp_path / "v", salt="fp:float32")
    assert via_vllm == in_process
    t_keys, v_keys = ({p.name for p in (tmp_path / d).iterdir()} for d in ("t", "v"))
    assert len(t_keys) == len(v_keys) == 2 and not t_keys & v_keys
    assert vllm_like.cache_tag == "engine=vllm-0.30.0:tp=1:batch_invariant=False" and local.cache_tag == ""


def test_strip_stop_and_stop_ids_without_loading_weights(tiny_model_dir):
    from hneurons.models import load_causal_lm

    assert strip_stop([5, 6, 2], [2]) == [5, 6] and strip_stop([5, 2, 6], [2]) == [5, 2, 6]
    assert strip_stop([], [2]) == []
    model, tokenizer = load_causal_lm(tiny_model_dir)
    assert model_stop_ids(tiny_model_dir, tokenizer) == stop_token_ids(model, tokenizer)


# ---------------------------------------------------------------- params and stages

def _params(backend=None, family_backend=None) -> dict:
    compute = {"families": {}, "device": "cpu", "dtype": "float32"}
    if backend is not None:
        compute["backend"] = backend
    if family_backend is not None:
        compute["families"] = {"big": {"backend": family_backend}}
    return {"compute": compute}


def test_backend_settings_defaults_overrides_and_one_line_errors():
    from stages._generation import backend_settings
    from stages.config import from_mapping as validate

    assert backend_settings(_params(), "tiny") == ({"kind": "transformers"}, "compute.backend")
    server = {"kind": "openai", "base_url": "http://127.0.0.1:8000/v1", "model": "m"}
    assert backend_settings(_params(server, {"model": "big-m"}), "big") == (
        {**server, "model": "big-m"}, "compute.families.big.backend")          # merged key by key
    assert backend_settings(_params(server, {"kind": "vllm", "gpu_memory_utilization": 0.5}), "big") == (
        {"kind": "vllm", "gpu_memory_utilization": 0.5}, "compute.families.big.backend")  # a new kind replaces
    assert backend_settings(_params(server, {"kind": "vllm"}), "tiny")[0] == server  # other families keep it
    with pytest.raises(HNeuronsError, match=r"^compute\.backend\.kind='vllmm': expected one of transformers, "
                                            r"vllm, openai$"):
        backend_settings(_params({"kind": "vllmm"}), "tiny")
    with pytest.raises(HNeuronsError, match=r"^compute\.families\.big\.backend\.gpu_memory_utilization: not a key "
                                            r"of the openai backend"):
        backend_settings(_params(server, {"gpu_memory_utilization": 0.5}), "big")
    validate(_params(server, {"kind": "vllm", "batch_invariant": True}))
    with pytest.raises(HNeuronsError, match=r"compute\.backend\.base_ur: unknown key \(did you mean "
                                            r"compute\.backend\.base_url\?\)"):
        validate(_params({"kind": "openai", "base_ur": "x"}))


def test_hooked_stages_record_that_they_ran_in_process(model, tok):
    from stages._generation import hooked_generation_info

    plain = hooked_generation_info(_params(), "tiny", model, tok)
    assert plain["engine"] == "transformers" and "configured_backend" not in plain
    served = hooked_generation_info(_params({"kind": "openai", "base_url": "http://x/v1", "model": "m"}), "tiny",
                                    model, tok)
    assert served["engine"] == "transformers" and served["configured_backend"] == "openai"


def test_sample_stage_through_a_server_writes_the_in_process_ids_and_records_the_engine(model, tok, tmp_path,
                                                                                         monkeypatch):
    from test_generate import _run_stage, _stage_questions, _write_stage_workspace

    questions = _stage_questions(model, tok)
    local_root, served_root = tmp_path / "local", tmp_path / "served"
    for root in (local_root, served_root):
        _write_stage_workspace(root, questions)  # greedy: the sampled path is compared above
    _run_stage(local_root, monkeypatch)
    from hneurons.models import load_causal_lm

    served_model, served_tok = load_causal_lm(served_root / "models/llm/tiny/instruct")
    stops = stop_token_ids(served_model, served_tok)
    with FakeCompletions(TransformersBackend(served_model, served_tok), stops[0]) as server:
        params = yaml.safe_load((served_root / "params.yaml").read_text())
        params["compute"]["backend"] = {"kind": "openai", "base_url": server.url, "model": "tiny", "concurrency": 3}
        (served_root / "params.yaml").write_text(yaml.safe_dump(params))
        _run_stage(served_root, monkeypatch)
        assert len(server.bodies) > 0
    out = Path("data/samples/tiny/triviaqa.parquet")
    local, served = pq.read_table(local_root / out), pq.read_table(served_root / out)
    assert served.column("response_ids").to_pylist() == local.column("response_ids").to_pylist()
    assert served.column("label").to_pylist() == local.column("label").to_pylist()
    local_meta = yaml.safe_load(local.schema.metadata[b"hneurons"])["generation"]
    served_meta = yaml.safe_load(served.schema.metadata[b"hneurons"])["generation"]
    assert local_meta["engine"] == "transformers" and local_meta["device"] == "cpu"
    assert local_meta["dtype"] == "float32" and local_meta["batch_invariant"] is False
    assert served_meta == {"engine": "openai", "engine_version": "stub-0.30.0", "device": "server",
                           "dtype": "server", "batch_invariant": None, "model": "tiny"}
    # the engine is part of the cache key: the server's batches sit beside, not over, the in-process ones
    shutil.copytree(local_root / ".cache", served_root / ".cache", dirs_exist_ok=True)
    names = [p.name for p in (served_root / ".cache/hneurons/sample/tiny").iterdir()]
    assert len(names) == 2 * len(list((local_root / ".cache/hneurons/sample/tiny").iterdir()))


def test_requirements_vllm_is_the_pinned_set_with_vllm_and_its_numpy():
    root = Path(__file__).resolve().parents[1]

    def pins(name: str) -> dict[str, str]:
        lines = [line.split("#")[0].strip() for line in (root / name).read_text().splitlines()]
        return dict(line.split("==", 1) for line in lines if line)

    base, gpu = pins("requirements.txt"), pins("requirements-vllm.txt")
    assert "vllm" not in base and gpu.pop("vllm") == "0.30.0"
    assert gpu.pop("numpy") != base.pop("numpy")
    assert gpu == base


def test_generation_backend_builds_each_kind_from_params(tiny_model_dir, model, tok, local):
    from stages._generation import generation_backend

    backend, tokenizer, loaded = generation_backend(_params(), "tiny", tiny_model_dir)
    assert isinstance(backend, TransformersBackend) and loaded is backend.model and tokenizer is backend.tokenizer
    stops = stop_token_ids(model, tok)
    with FakeCompletions(local, stops[0], served="tiny-instruct") as instruct, \
            FakeCompletions(local, stops[0], served="tiny-base") as base:
        config = {"kind": "openai", "base_url": instruct.url, "model": "tiny-instruct", "base_model": "tiny-base",
                  "base_model_url": base.url}
        served, tokenizer, loaded = generation_backend(_params(config), "tiny", tiny_model_dir)
        assert loaded is None and served.model == "tiny-instruct" and served.endpoint.base_url == instruct.url
        assert served.stops == stops and tokenizer.eos_token == "<|im_end|>"
        served_base, _, _ = generation_backend(_params(config), "tiny", tiny_model_dir, role="base")
        assert served_base.model == "tiny-base" and served_base.endpoint.base_url == base.url
        without = {key: value for key, value in config.items() if key != "base_model"}
        with pytest.raises(HNeuronsError, match=r"^compute\.backend\.base_model: required for the openai backend"):
            generation_backend(_params(without), "tiny", tiny_model_dir, role="base")
        with pytest.raises(HNeuronsError, match=r"^compute\.backend\.model=tiny-base: not served at"):
            generation_backend(_params({**config, "model": "tiny-base"}), "tiny", tiny_model_dir)
    with pytest.raises(HNeuronsError, match=r"^compute\.backend\.gpu_memory_utilization=1\.5: expected a number"):
        generation_backend(_params({"kind": "vllm", "gpu_memory_utilization": 1.5}), "tiny", tiny_model_dir)
