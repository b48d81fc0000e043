"""Activation sets: lossless round trip, filters, split-only reads, shards, streaming, atomicity, errors;
the extract stage end to end, one shard and three."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from hneurons.activation_rows import ActivationColumns, spill_activations
from hneurons.activations import (
    ActivationWriter,
    activation_metadata,
    iter_activation_blocks,
    read_activation_columns,
    read_activation_frame,
    read_activations,
    resolve_cett_dtype,
    write_activations,
)
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


def _sorted_blocks(n_examples: int = 9, group: int = 2, seed: int = 0):
    """Blocks of one split each, splits in extraction order (train, test, ""), as the extract stage writes."""
    frame = pd.concat([f for f, _ in _blocks(n_examples, n_examples, seed)], ignore_index=True)
    X = np.concatenate([x for _, x in _blocks(n_examples, n_examples, seed)])
    order = np.argsort(frame["split"].map({"train": 0, "test": 1, "": 2}).to_numpy(), kind="stable")
    frame, X = frame.iloc[order].reset_index(drop=True), X[order]
    out, start = [], 0
    while start < len(frame):
        stop = start + 1
        while stop < len(frame) and stop - start < 2 * group and frame.split[stop] == frame.split[start]:
            stop += 1
        out.append((frame.iloc[start:stop].reset_index(drop=True), X[start:stop]))
        start = stop
    return out


def _by_split_within_blocks(blocks):
    """The set's row order: block by block, within a block train, validation, test, "" (stable)."""
    frames, Xs = [], []
    for frame, X in blocks:
        order = np.argsort(frame["split"].map({"train": 0, "validation": 1, "test": 2, "": 3}).to_numpy(),
                           kind="stable")
        frames.append(frame.iloc[order])
        Xs.append(X[order])
    return pd.concat(frames, ignore_index=True), np.concatenate(Xs)


def test_round_trip_is_lossless(tmp_path):
    blocks = _blocks(seed=1)
    blocks[0] = (blocks[0][0].assign(split=["test", "test", "", "", "train", "train"]), blocks[0][1])
    path = tmp_path / "set" / "run"
    assert _write(path, blocks) == 14
    expected, expected_X = _by_split_within_blocks(blocks)
    assert expected.split[:6].tolist() == ["train", "train", "test", "test", "", ""]
    for where in (path, tmp_path / "set"):  # a shard directory or the set directory
        frame, X = read_activations(where)
        np.testing.assert_array_equal(X, expected_X)
        assert X.dtype == np.float32 and X.flags.c_contiguous
        pd.testing.assert_frame_equal(frame, expected.astype(frame.dtypes.to_dict()))
    assert frame["label"].dtype == np.int8
    manifest = json.loads((path / "manifest.json").read_text())
    # a block of mixed splits becomes one part per split, named by block and index
    assert [p["file"] for p in manifest["parts"]][:3] == ["part-00000-0.parquet", "part-00000-1.parquet",
                                                          "part-00000-2.parquet"]
    assert sum(p["rows"] for p in manifest["parts"]) == 14 == manifest["n_rows"]
    for part in manifest["parts"]:
        table = pq.read_table(path / part["file"])
        assert set(table.column("split").to_pylist()) == {part["split"]}
        assert pq.ParquetFile(path / part["file"]).num_row_groups == 1
    schema = pq.read_schema(path / "part-00000-0.parquet")
    assert schema.field("cett").type == pa.list_(pa.field("element", pa.float32(), nullable=False), 24)


def test_float16_on_disk(tmp_path):
    blocks = _blocks()
    path = tmp_path / "h"
    _write(path, blocks, "float16")
    _, X = read_activations(path)
    original = np.concatenate([x for _, x in blocks])
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X, original.astype(np.float16).astype(np.float32))
    assert activation_metadata(path)["cett_dtype"] == "float16"


def test_cett_dtype_auto_follows_the_parameter_count():
    assert resolve_cett_dtype("auto", 135_000_000) == "float32"
    assert resolve_cett_dtype("auto", 4_000_000_000) == "float16"
    assert resolve_cett_dtype("float32", 70_000_000_000) == "float32"
    with pytest.raises(HNeuronsError, match="cett_dtype='bf16'"):
        resolve_cett_dtype("bf16", 1)


def test_filters_and_blocks_agree(tmp_path):
    path = tmp_path / "a"
    _write(path, _blocks(n_examples=9))
    full_frame, full_X = read_activations(path)
    frame, X = read_activations(path, {"region": "answer", "split": ["train", "test"]})
    wanted = ((full_frame.region == "answer") & full_frame.split.isin(["train", "test"])).to_numpy()
    np.testing.assert_array_equal(X, full_X[wanted])
    assert frame.example_id.tolist() == full_frame.example_id[wanted].tolist()
    parts = list(iter_activation_blocks(path, {"region": "answer", "split": ["train", "test"]}))
    np.testing.assert_array_equal(np.concatenate([x for _, x in parts]), X)
    assert pd.concat([f for f, _ in parts], ignore_index=True).equals(frame)
    assert read_activation_frame(path, {"region": "answer", "split": ["train", "test"]}).equals(frame)
    empty_frame, empty_X = read_activations(path, {"label": 5})
    assert len(empty_frame) == 0 and empty_X.shape == (0, N_LAYERS * D_FFN)
    with pytest.raises(HNeuronsError, match="filter column 'layer'"):
        read_activations(path, {"layer": 1})


def test_a_split_is_read_without_decoding_the_others(tmp_path):
    """Every part holds one split; reading train never opens a test part (a corrupt one goes unnoticed)."""
    path = tmp_path / "a"
    _write(path, _sorted_blocks())
    full_frame, full_X = read_activations(path)
    manifest = json.loads((path / "manifest.json").read_text())
    for part in manifest["parts"]:
        if part["split"] == "test":
            (path / part["file"]).write_bytes(b"\0" * part["bytes"])  # same size, unreadable
    frame, X = read_activations(path, {"split": "train"})
    train = (full_frame.split == "train").to_numpy()
    np.testing.assert_array_equal(X, full_X[train])
    assert frame.example_id.tolist() == full_frame.example_id[train].tolist()
    broken = next(p["file"] for p in manifest["parts"] if p["split"] == "test")
    with pytest.raises(HNeuronsError, match=f"{broken}: unreadable Parquet"):
        read_activations(path, {"split": "test"})


def test_column_reads_row_files_and_lazy_columns_equal_the_in_memory_matrix(tmp_path):
    path = tmp_path / "a"
    _write(path, _sorted_blocks(n_examples=11), "float16")
    where = {"split": "train"}
    frame, X = read_activations(path, where)
    cols = np.array([0, 5, 23, 7])
    frame_c, X_c = read_activation_columns(path, cols, where)
    np.testing.assert_array_equal(X_c, X[:, cols])
    assert frame_c.equals(frame)
    lazy = ActivationColumns(path, where)
    assert lazy.shape == X.shape
    np.testing.assert_array_equal(lazy[:, cols], X[:, cols])
    frame_r, rows = spill_activations(path, tmp_path, where)
    assert frame_r.equals(frame) and rows.shape == X.shape and rows.dtype == np.float32
    assert rows.path.stat().st_size == X.size * 2  # kept in the stored dtype
    np.testing.assert_array_equal(rows[1:4], X[1:4])
    np.testing.assert_array_equal(rows[:, cols], X[:, cols])
    np.testing.assert_array_equal(np.asarray(rows), X)


def test_metadata_and_determinism(tmp_path):
    blocks = _blocks()
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, blocks, expected_rows=14)
    _write(b, blocks, expected_rows=14)
    assert sorted(os.listdir(a)) == sorted(os.listdir(b))
    assert all(sha256_file(a / name) == sha256_file(b / name) for name in os.listdir(a))
    meta = activation_metadata(a)
    assert meta == {"readout": "mean", "n_layers": N_LAYERS, "d_ffn": D_FFN, "cett_dtype": "float32", "n_rows": 14}


def test_shards_concatenate_to_the_one_shard_set(tmp_path):
    blocks = _sorted_blocks(n_examples=12)
    _write(tmp_path / "one" / "run", blocks)
    cuts = [(0, 2), (2, 3), (3, len(blocks))]
    for shard, (first, stop) in enumerate(cuts):
        _write(tmp_path / "three" / f"run-{shard}", blocks[first:stop], shard=shard, shards=3, first_block=first)
    one_frame, one_X = read_activations(tmp_path / "one")
    frame, X = read_activations(tmp_path / "three")
    assert frame.equals(one_frame)
    np.testing.assert_array_equal(X, one_X)
    parts_one = sorted(p.name for p in (tmp_path / "one").rglob("part-*"))
    parts_three = sorted(p.name for p in (tmp_path / "three").rglob("part-*"))
    assert parts_one == parts_three
    for name in parts_one:  # the same part files, byte for byte
        [x] = (tmp_path / "one").rglob(name)
        [y] = (tmp_path / "three").rglob(name)
        assert sha256_file(x) == sha256_file(y)
    assert activation_metadata(tmp_path / "three")["n_rows"] == len(one_frame)

    (tmp_path / "three" / ".gitignore").write_text("/run-0\n")  # what DVC writes next to its outputs
    assert read_activations(tmp_path / "three")[0].equals(one_frame)
    os.rename(tmp_path / "three" / "run-1", tmp_path / "run-1")
    with pytest.raises(HNeuronsError, match=r"three: shard\(s\) \[1\] of 3 missing"):
        read_activations(tmp_path / "three")
    os.rename(tmp_path / "run-1", tmp_path / "three" / "run-1")
    _write(tmp_path / "three" / "stale", blocks)  # a left-over 1-shard run
    with pytest.raises(HNeuronsError, match="shards of different shard counts"):
        read_activations(tmp_path / "three")
    import shutil

    shutil.rmtree(tmp_path / "three" / "stale")
    _write(tmp_path / "three" / "run-1b", blocks[2:3], shard=1, shards=3, first_block=2)
    with pytest.raises(HNeuronsError, match="shard 1 of 3 twice"):
        read_activations(tmp_path / "three")


def test_failed_write_leaves_previous_set(tmp_path):
    path = tmp_path / "a"
    _write(path, _blocks(n_examples=2))
    before = {name: sha256_file(path / name) for name in os.listdir(path)}

    def broken():
        yield from _blocks(n_examples=4, group=2)[:1]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        _write(path, broken())
    with pytest.raises(HNeuronsError, match="expected 99"):
        _write(path, _blocks(), expected_rows=99)
    assert {name: sha256_file(path / name) for name in os.listdir(path)} == before
    assert sorted(os.listdir(tmp_path)) == ["a"]


def test_bad_blocks_missing_and_corrupt_parts(tmp_path):
    frame, X = _blocks(n_examples=1)[0]
    with pytest.raises(HNeuronsError, match="shape"):
        with ActivationWriter(tmp_path / "a", N_LAYERS, D_FFN) as writer:
            writer.write(frame, X[:, :5])
    assert not (tmp_path / "a").exists()
    with pytest.raises(HNeuronsError, match="dtype"):
        ActivationWriter(tmp_path / "a", N_LAYERS, D_FFN, "int8")
    with pytest.raises(HNeuronsError, match="activations not found"):
        read_activations(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HNeuronsError, match="no activation shards"):
        activation_metadata(tmp_path / "empty")
    (tmp_path / "empty" / "x").mkdir()
    with pytest.raises(HNeuronsError, match=r"x/manifest.json: missing"):
        activation_metadata(tmp_path / "empty")

    path = tmp_path / "set" / "run"
    _write(path, _blocks())
    part = path / "part-00001-0.parquet"
    data = part.read_bytes()
    part.unlink()
    with pytest.raises(HNeuronsError, match=r"^\S*part-00001-0.parquet: part file missing"):
        read_activations(tmp_path / "set")
    part.write_bytes(data[:-10])
    with pytest.raises(HNeuronsError, match="part-00001-0.parquet: .* bytes.*truncated"):
        read_activations(tmp_path / "set")
    middle = len(data) // 2  # a flipped byte inside the cett pages: caught by the page checksums
    part.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    with pytest.raises(HNeuronsError, match=r"part-00001-0.parquet: (corrupt part|unreadable)") as error:
        read_activations(tmp_path / "set")
    assert "\n" not in str(error.value)
    (path / "manifest.json").write_text("{}")
    with pytest.raises(HNeuronsError, match="manifest.json: not an activation manifest"):
        read_activations(tmp_path / "set")


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
    out = root / "data/activations/tiny/instruct/toy"
    frame, X = read_activations(out)
    # groups of 2 in sample order (q0 q1, q2 q3), each written train part first
    assert frame.example_id.tolist() == ["q1", "q1", "q0", "q0", "q3", "q3", "q2", "q2"]
    assert frame.split.tolist() == ["train", "train", "test", "test"] * 2
    assert frame.region.tolist() == ["answer", "other"] * 4
    assert frame.label.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    train, X_train = read_activations(out, {"split": "train"})
    assert train.example_id.tolist() == ["q1", "q1", "q3", "q3"]
    np.testing.assert_array_equal(X_train, X[(frame.split == "train").to_numpy()])
    assert X.shape == (8, fingerprint["n_layers"] * fingerprint["d_ffn"]) and np.isfinite(X).all()
    meta = activation_metadata(out)
    assert meta["model"] == fingerprint and meta["span_rule"] == "content" and meta["n_rows"] == 8
    assert meta["dropped"] == {"empty_response": 1, "empty_response/label=1": 1}
    assert meta["cett_dtype"] == "float32" and meta["n_params"] > 0
    report = json.loads((root / "reports/extract/tiny/instruct/toy/tiny-instruct-toy.json").read_text())
    assert report["n_input"] == 5 and report["n_dropped"] == 1 and report["n_examples"] == 4
    assert report["rows_by_region_label_split"]["answer/label=1/split=test"] == 1
    assert report["shard"] == {"index": 0, "of": 1, "n_examples": 4, "n_rows": 8, "n_parts": 4}  # 2 groups x 2 splits
    shard = out / "tiny-instruct-toy"
    first = {p.name: sha256_file(p) for p in shard.iterdir()}
    extract.main(["tiny-instruct-toy"])
    assert {p.name: sha256_file(p) for p in shard.iterdir()} == first


def test_three_shards_equal_one(workspace):
    """1 vs 3 extract stages on the tiny model: identical frames, matrices, part files and probe input
    (shards cut at group boundaries, so every batch is the one of the 1-shard run)."""
    import shutil

    from hneurons.probe import L1Probe, training_labels
    from stages import extract

    root, model = workspace
    _stage_workspace(root, model)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["extract"]["row_group_examples"] = 2  # 2 groups of 2 examples (batch_size 2), each of two splits
    params["extract"]["runs"] = {f"toy-{i}": {"family": "tiny", "role": "instruct", "dataset": "toy", "shard": i,
                                              "shards": 3} for i in range(3)}
    params["extract"]["runs"]["one"] = {"family": "tiny", "role": "instruct", "dataset": "toy"}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    out = root / "data/activations/tiny/instruct/toy"
    extract.main(["one"])
    shutil.move(out, root / "one")
    for i in range(3):
        extract.main([f"toy-{i}"])
    frame_1, X_1 = read_activations(root / "one")
    frame_3, X_3 = read_activations(out)
    assert frame_3.equals(frame_1) and len(frame_1) == 8
    np.testing.assert_array_equal(X_3, X_1)
    assert activation_metadata(out) == activation_metadata(root / "one")
    names = {p.relative_to(p.parent.parent).as_posix() for p in out.rglob("part-*")}
    assert names == {"toy-0/part-00000-0.parquet", "toy-0/part-00000-1.parquet", "toy-2/part-00001-0.parquet",
                     "toy-2/part-00001-1.parquet"}  # shard 1 of 3 is empty (2 groups only)
    for part in out.rglob("part-*"):
        assert sha256_file(part) == sha256_file(root / "one" / "one" / part.name)
    reports = [json.loads((root / f"reports/extract/tiny/instruct/toy/toy-{i}.json").read_text())["shard"]
               for i in range(3)]
    assert [r["n_examples"] for r in reports] == [2, 0, 2] and sum(r["n_rows"] for r in reports) == 8
    # the probe's input: the training rows read back from disk, and the fit on them
    fits = []
    for where in (root / "one", out):
        frame, rows = spill_activations(where, root, {"split": "train"})
        _, y = training_labels(frame["region"].to_numpy(), frame["label"].to_numpy(), "3-vs-1")
        fits.append((np.asarray(rows), L1Probe(C=100.0, screen_size=5, max_add=5).fit(rows, y).coef_))
    np.testing.assert_array_equal(fits[0][0], fits[1][0])
    np.testing.assert_array_equal(fits[0][1], fits[1][1])
    params["extract"]["runs"]["bad"] = {"family": "tiny", "role": "instruct", "dataset": "toy", "shard": 3,
                                        "shards": 3}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(HNeuronsError, match="extract.runs.bad: shard=3 of shards=3"):
        extract.main(["bad"])


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
