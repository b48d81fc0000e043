"""bench/gpu_check.py in its smallest setting on the CPU (the same code path a GPU host runs)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from tests.tiny import save_tiny_model

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench/gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def test_compare_cett_and_overlap_measure_what_they_say():
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((40, 30)).astype(np.float32)
    same = gpu_check.compare_cett(reference, reference)
    assert same["pearson_r"] == 1.0 and same["max_rel_diff"] == 0.0
    noisy = gpu_check.compare_cett(reference, reference * 1.01)
    assert abs(noisy["median_rel_diff"] - 0.01) < 1e-6 and noisy["pearson_r"] > 0.9999
    labels = np.arange(40) % 2
    planted = reference.copy()
    planted[:, 7] += 3.0 * labels                       # one column carries the label
    overlap = gpu_check.h_neuron_overlap(planted, planted, labels, C=1.0)
    assert overlap["jaccard"] == 1.0 and overlap["n_reference"] >= 1


def test_smallest_setting_runs_on_cpu_and_writes_every_check(tmp_path):
    model = save_tiny_model(tmp_path / "tiny")
    out = tmp_path / "gpu_check.json"
    status = gpu_check.main(["--model", str(model), "--synthetic", "12", "--device", "cpu", "--max-new-tokens", "3",
                             "--threads", "1", "--out", str(out)])
    result = json.loads(out.read_text(encoding="utf-8"))
    assert status == 0 and result["failures"] == []
    assert result["device"] == "cpu" and result["n_examples"] == 12
    assert 0.99 <= result["bfloat16_vs_float32"]["pearson_r"] < 1.0      # bf16 is close, not equal
    assert result["device_map_auto_max_abs_diff"] == 0.0                   # one CPU: the same placement
    assert result["generation"]["transformers"]["tokens"] > 0
    assert result["machine"]["dtype"] == "bfloat16" and result["machine"]["device"] == "cpu"
    assert set(result["generation"]) == {"transformers", "vllm"}
    assert result["generation"]["transformers"]["info"]["engine"] == "transformers"


def test_an_openai_server_is_measured_through_the_backend(tmp_path):
    from fake_openai import FakeCompletions
    from hneurons.backends import TransformersBackend
    from hneurons.generate import stop_token_ids
    from hneurons.models import load_causal_lm

    model_dir = save_tiny_model(tmp_path / "tiny")
    model, tokenizer = load_causal_lm(model_dir, "bfloat16")
    out = tmp_path / "gpu_check.json"
    with FakeCompletions(TransformersBackend(model, tokenizer), stop_token_ids(model, tokenizer)[0]) as server:
        status = gpu_check.main(["--model", str(model_dir), "--synthetic", "6", "--device", "cpu",
                                 "--max-new-tokens", "3", "--threads", "1", "--out", str(out),
                                 "--openai-url", server.url, "--openai-model", "tiny"])
        assert len(server.bodies) == 6
    served = json.loads(out.read_text(encoding="utf-8"))["generation"]["openai"]
    assert status == 0 and served["info"]["engine"] == "openai" and served["responses"] == 6
    assert served["tokens"] > 0 and 0.0 <= served["identical_to_transformers"] <= 1.0
