"""Atomic, deterministic writes and content hashes.

Every artifact goes to a temporary sibling first and is renamed into place, so an
interrupted stage never leaves a half-written file. JSON is written with sorted
keys and a trailing newline so equal content gives equal bytes.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes | str) -> str:
    """Hex sha256 of bytes (str is UTF-8 encoded)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def jsonable(value: Any) -> Any:
    """Nested data with numpy scalars as Python numbers and nan/inf as None (strict JSON), recursively."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def csv_text(frame: Any, float_format: str = "%.10g") -> str:
    """A pandas frame as CSV text: no index, ``\\n`` line ends, fixed float format (byte-stable)."""
    return frame.to_csv(index=False, lineterminator="\n", float_format=float_format)


def dumps_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it into place on success.

    On an exception the temporary file or directory is removed and ``path`` is
    left as it was. Temporary siblings of ``path`` left by a killed earlier write
    (``.<name>.<random>/``) are removed first.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{glob.escape(final.name)}.*"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent)) / final.name
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write canonical JSON atomically (see :func:`dumps_json`)."""
    write_text(path, dumps_json(obj))


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def write_parquet(path: str | os.PathLike, table: pa.Table, metadata: dict[str, Any] | None = None,
                  **kwargs: Any) -> None:
    """Write a table atomically; ``metadata`` is stored as canonical JSON under b"hneurons"."""
    if metadata is not None:
        existing = dict(table.schema.metadata or {})
        existing[b"hneurons"] = dumps_json(metadata).encode("utf-8")
        table = table.replace_schema_metadata(existing)
    kwargs.setdefault("compression", "zstd")
    kwargs.setdefault("write_page_checksum", True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """A Parquet table with page checksums verified; an unreadable or corrupt file is a one-line
    HNeuronsError naming it."""
    with _parquet_errors(path):
        return pq.read_table(path, columns=columns, page_checksum_verification=True)


def read_schema(path: str | os.PathLike) -> pa.Schema:
    """A Parquet file's schema (one-line HNeuronsError naming an unreadable file)."""
    with _parquet_errors(path):
        return pq.read_schema(path)


@contextlib.contextmanager
def _parquet_errors(path: str | os.PathLike) -> Iterator[None]:
    from hneurons.errors import HNeuronsError

    try:
        yield
    except FileNotFoundError:
        raise HNeuronsError(f"{path}: not found (run the stage that writes it)") from None
    except (pa.ArrowException, OSError) as exc:
        raise HNeuronsError(f"{path}: unreadable Parquet ({str(exc).splitlines()[0]})") from None


def read_parquet_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The hneurons metadata dict stored by :func:`write_parquet` ({} if absent)."""
    schema = read_schema(path)
    raw = (schema.metadata or {}).get(b"hneurons")
    return json.loads(raw) if raw else {}
