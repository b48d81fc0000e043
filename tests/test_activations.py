"""Activation files: lossless round trip, filters, streaming, atomicity; the extract stage end to end."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from hneurons.activations import (ActivationWriter, activation_metadata, iter_activation_blocks, read_activations,
                                  write_activations)
from hneurons.errors import HNeuronsError
from hneurons.io import sha256_file, write_json

N_LAYERS, D_FFN = 3, 8


def _blocks(n_examples: int = 7, group: int = 3, seed: int = 0):
    """(frame, X) blocks of synthetic rows: two regions per example, some splits and labels."""
    rng = np.random.default_rng(seed)
    out = []
    for first in range(0, n_examples, group):
        rows = []
        for i in range(first, min(first + group, n_examples)):
            for region in ("answer", "other"):
                rows.append({"example_id": f"q{i}", "dataset": "toy", "label": i % 2, "region": region,
                             "split": ("train", "test", "")[i % 3], "n_tokens": int(rng.integers(1, 30)),
                             "response_tokens": int(rng.integers(1, 50))})
        X = rng.lognormal(-3, 1, size=(len(rows), N_LAYERS * D_FFN)).astype(np.float32)
        out.append((pd.DataFrame(rows), X))
    return out


def _write(path, blocks, dtype="float32", **kwargs):
    return write_activations(path, blocks, N_LAYERS, D_FFN, dtype, {"readout": "mean"}, **kwargs)


def test_round_trip_is_lossless(tmp_path):
    blocks = _blocks()
    path = tmp_path / "a.parquet"
    assert _write(path, blocks) == 14
    frame, X = read_activations(path)
    expected = pd.concat([f for f, _ in blocks], ignore_index=True)
    np.testing.assert_array_equal(X, np.concatenate([x for _, x in blocks]))
    assert X.dtype == np.float32 and X.flags.c_contiguous
    pd.testing.assert_frame_equal(frame, expected.astype(frame.dtypes.to_dict()))
    assert frame["label"].dtype == np.int8
    assert pq.ParquetFile(path).num_row_groups == 3
    schema = pq.read_schema(path)
    assert schema.field("cett").type == pa.list_(pa.field("element", pa.float32(), nullable=False), 24)


def test_float16_on_disk(tmp_path):
    blocks = _blocks()
    path = tmp_path / "h.parquet"
    _write(path, blocks, "float16")
    _, X = read_activations(path)
    original = np.concatenate([x for _, x in blocks])
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, original.astype(np.float16).astype(np.float32))
    assert activation_metadata(path)["cett_dtype"] == "float16"


def test_filters_and_blocks_agree(tmp_path):
    path = tmp_path / "a.parquet"
    _write(path, _blocks(n_examples=9))
    full_frame, full_X = read_activations(path)
    frame, X = read_activations(path, {"region": "answer", "split": ["train", "test"]})
    wanted = ((full_frame.region == "answer") & full_frame.split.isin(["train", "test"])).to_numpy()
    np.testing.assert_array_equal(X, full_X[wanted])
    assert frame.example_id.tolist() == full_frame.example_id[wanted].tolist()
    parts = list(iter_activation_blocks(path, {"region": "answer", "split": ["train", "test"]}))
    np.testing.assert_array_equal(np.concatenate([x for _, x in parts]), X)
    assert pd.concat([f for f, _ in parts], ignore_index=True).equals(frame)
    empty_frame, empty_X = read_activations(path, {"label": 5})
    assert len(empty_frame) == 0 and empty_X.shape == (0, N_LAYERS * D_FFN)
    with pytest.raises(HNeuronsError, match="filter column 'layer'"):
        read_activations(path, {"layer": 1})


def test_metadata_and_determinism(tmp_path):
    blocks = _blocks()
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    _write(a, blocks, expected_rows=14)
    _write(b, blocks, expected_rows=14)
    assert sha256_file(a) == sha256_file(b)
    meta = activation_metadata(a)
    assert meta == {"readout": "mean", "n_layers": N_LAYERS, "d_ffn": D_FFN, "cett_dtype": "float32", "n_rows": 14}


def test_failed_write_leaves_previous_file(tmp_path):
    path = tmp_path / "a.parquet"
    _write(path, _blocks(n_examples=2))
    before = sha256_file(path)

    def broken():
        yield from _blocks(n_examples=4, group=2)[:1]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        _write(path, broken())
    with pytest.raises(HNeuronsError, match="expected 99"):
        _write(path, _blocks(), expected_rows=99)
    assert sha256_file(path) == before
    assert sorted(os.listdir(tmp_path)) == ["a.parquet"]


def test_bad_blocks_and_paths(tmp_path):
    frame, X = _blocks(n_examples=1)[0]
    with pytest.raises(HNeuronsError, match="shape"):
        with ActivationWriter(tmp_path / "a.parquet", N_LAYERS, D_FFN) as writer:
            writer.write(frame, X[:, :5])
    assert not (tmp_path / "a.parquet").exists()
    with pytest.raises(HNeuronsError, match="dtype"):
        ActivationWriter(tmp_path / "a.parquet", N_LAYERS, D_FFN, "int8")
    with pytest.raises(HNeuronsError, match="not found"):
        read_activations(tmp_path / "missing.parquet")
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    with pytest.raises(HNeuronsError, match="not an activation file"):
        activation_metadata(tmp_path / "other.parquet")


# ---------------------------------------------------------------- the stage, end to end on a tiny model


def _stage_workspace(root, tiny_model_dir):
    """params.yaml, a model dir with fingerprint.json and a samples file in the sample stage's schema."""
    import shutil

    from transformers import AutoConfig, AutoTokenizer

    model_dir = root / "models/llm/tiny/instruct"
    shutil.copytree(tiny_model_dir, model_dir)
    config = AutoConfig.from_pretrained(model_dir)
    fingerprint = {"fingerprint": "f" * 64, "n_layers": config.num_hidden_layers, "d_ffn": config.intermediate_size}
    write_json(model_dir / "fingerprint.json", fingerprint)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = []
    items = [("q0", "Where was Judi Dench born?", "York.", True), ("q1", "Capital of France?", "Paris is the capital.", True),
             ("q2", "Who won in 1930?", "Sinclair Lewis", False), ("q3", "Who?", "London, I think.", False),
             ("q4", "Which?", "", False)]
    for n, (qid, question, response, correct) in enumerate(items):
        prompt = list(tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                              tokenize=True, return_dict=False))
        for index in range(2):  # two samples per question; only the representative one is used
            rows.append({"example_id": qid, "sample_index": index, "question": question,
                         "answers": ["York", "Paris"], "prompt_ids": prompt,
                         "response_ids": tok.encode(response, add_special_tokens=False), "finished": True,
                         "response": response, "correct": correct, "refusal": False, "judge": "rule",
                         "label": (0 if correct else 1) if n != 1 or index == 0 else -1,
                         "split": "train" if n % 2 else "test", "representative": index == 0})
    (root / "data/samples/tiny").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "data/samples/tiny/toy.parquet")
    params = {"base": {"threads": 1},
              "compute": {"families": {}, "device": "cpu", "dtype": "float32"},
              "extract": {"runs": {"tiny-instruct-toy": {"family": "tiny", "role": "instruct", "dataset": "toy"}},
                          "readout": "mean", "region_variant": "with_prompt", "span_rule": "content",
                          "annotation_file": "", "batch_size": 2, "row_group_examples": 2,
                          "cett_dtype": "float32"}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return fingerprint


@pytest.fixture
def workspace(tmp_path, tiny_model_dir, monkeypatch):
    """An empty stage workspace (the current directory) and the tiny model to copy into it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path, tiny_model_dir


def test_extract_stage_end_to_end(workspace):
    from stages import extract

    root, model = workspace
    fingerprint = _stage_workspace(root, model)
    extract.main(["tiny-instruct-toy"])
    out = root / "data/activations/tiny/instruct/toy.parquet"
    frame, X = read_activations(out)
    assert frame.example_id.tolist() == ["q0", "q0", "q1", "q1", "q2", "q2", "q3", "q3"]
    assert frame.region.tolist() == ["answer", "other"] * 4
    assert frame.label.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert X.shape == (8, fingerprint["n_layers"] * fingerprint["d_ffn"]) and np.isfinite(X).all()
    meta = activation_metadata(out)
    assert meta["model"] == fingerprint and meta["span_rule"] == "content" and meta["n_rows"] == 8
    assert meta["dropped"] == {"empty_response": 1, "empty_response/label=1": 1}
    report = json.loads((root / "reports/extract/tiny/instruct/toy.json").read_text())
    assert report["n_input"] == 5 and report["n_dropped"] == 1 and report["n_examples"] == 4
    assert report["rows_by_region_label_split"]["answer/label=1/split=test"] == 1
    first = sha256_file(out)
    extract.main(["tiny-instruct-toy"])
    assert sha256_file(out) == first


def test_extract_stage_stops_on_an_empty_class(workspace):
    from stages import extract

    root, model = workspace
    _stage_workspace(root, model)
    samples = root / "data/samples/tiny/toy.parquet"
    table = pq.read_table(samples)
    keep = [r for r in table.to_pylist() if r["label"] != 1]
    pq.write_table(pa.Table.from_pylist(keep, schema=table.schema), samples)
    with pytest.raises(HNeuronsError, match=r"extract tiny/instruct/toy: no hallucinated \(label 1\)"):
        extract.main(["tiny-instruct-toy"])
    assert not (root / "data/activations").exists()


def test_extract_stage_bad_params(workspace):
    from stages import extract

    root, model = workspace
    _stage_workspace(root, model)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["extract"]["readout"] = "median"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(HNeuronsError, match="extract.readout='median'"):
        extract.main(["tiny-instruct-toy"])
    with pytest.raises(HNeuronsError, match="extract.runs.nope: unknown"):
        extract.main(["nope"])
