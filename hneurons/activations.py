"""CETT activation sets: directories of Parquet part files with manifests, and readers that decode only
the parts, rows and columns they need.

One row per (example, region). Columns of every part (ARCHITECTURE.md contract):

=============== ================================================================
example_id      string
dataset         string
label           int8 (1 = hallucinated, 0 = faithful)
region          string ("answer" | "other")
split           string ("train" | "validation" | "test" | "")
n_tokens        int32, positions in the region
response_tokens int32, length of the response ids
cett            fixed_size_list<float32 | float16>[n_layers * d_ffn],
                flat index = layer * d_ffn + neuron
=============== ================================================================

Layout of an activation set (``data/activations/<family>/<role>/<dataset>/``)::

    <dataset>/<shard>/manifest.json          one per shard (one extract stage each)
    <dataset>/<shard>/part-00000-0.parquet   block 0 (an extraction group), its first split present

A shard directory holds its parts and ``manifest.json`` (format, n_layers, d_ffn,
cett_dtype, shard index and count, rows, and per part: file, rows, split, bytes;
``metadata``: fingerprint, span rule, readout, counts, ...). Each written block
becomes one part (one row group) per split it holds, in SPLIT_ORDER, rows in block
order: every part holds one split, and the rows of a split keep their relative
order (the set's row order is block by block, split by split within a block).
Readers take the set directory (or one shard
directory) and concatenate the shards in shard order, parts in manifest order. Part
names carry the global block number, so a set split into N shards holds the same
part files as one shard. A filter on ``split`` skips the other splits' parts
without opening them.

On disk ``cett`` uses BYTE_STREAM_SPLIT + zstd, no dictionary and page checksums.
Measured on SmolLM2-135M CETT (46,080 features, bench/bench_extract.py): float32
0.80x the raw size (296 kB per example, two rows), float16 0.38x (140 kB; float16
rounding: relative error <= 4.9e-4 down to 6.1e-5, absolute error <= 3e-8 below,
where float16 is subnormal). ``cett_dtype="auto"`` stores float16 for models of
``FLOAT16_FROM_PARAMS`` parameters and more, float32 below.

Readers bound memory: :func:`read_activations` preallocates the float32 result
(peak ~ result + one part); :func:`read_activation_columns` keeps k columns of each
decoded part. Matrices that stay on disk: :mod:`hneurons.activation_rows`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hneurons.errors import HNeuronsError
from hneurons.io import atomic_path, dumps_json

FORMAT = "hneurons.activations/2"
MANIFEST = "manifest.json"
CETT_DTYPES = {"float32": (np.float32, pa.float32()), "float16": (np.float16, pa.float16())}
CETT_DTYPE_SETTINGS = ("auto", *CETT_DTYPES)
FLOAT16_FROM_PARAMS = 4_000_000_000
META_FIELDS = [("example_id", pa.string()), ("dataset", pa.string()), ("label", pa.int8()),
               ("region", pa.string()), ("split", pa.string()), ("n_tokens", pa.int32()),
               ("response_tokens", pa.int32())]
META_NAMES = [name for name, _ in META_FIELDS]
SPLIT_ORDER = ("train", "validation", "test", "")
CETT_COLUMN = "cett"
_PART = "part-{:05d}-{}.parquet"
_BLOCK_BYTES = 64 << 20


def split_order(splits) -> list[str]:
    """Split names in SPLIT_ORDER, then any others by name."""
    rank = {name: i for i, name in enumerate(SPLIT_ORDER)}
    return sorted(splits, key=lambda name: (rank.get(name, len(rank)), name))


def resolve_cett_dtype(setting: str, n_params: int) -> str:
    """The on-disk dtype for ``setting`` ("auto" | "float32" | "float16") and a model of ``n_params`` parameters."""
    if setting not in CETT_DTYPE_SETTINGS:
        raise HNeuronsError(f"cett_dtype={setting!r}: expected one of {', '.join(CETT_DTYPE_SETTINGS)}")
    if setting != "auto":
        return setting
    return "float16" if n_params >= FLOAT16_FROM_PARAMS else "float32"


def activation_schema(n_features: int, cett_dtype: str = "float32",
                      metadata: Mapping[str, Any] | None = None) -> pa.Schema:
    """The Arrow schema of a part file with ``metadata`` under b"hneurons"."""
    if cett_dtype not in CETT_DTYPES:
        raise HNeuronsError(f"dtype={cett_dtype!r}: expected one of {', '.join(CETT_DTYPES)}")
    fields = [pa.field(n, t, nullable=False) for n, t in META_FIELDS]
    fields.append(pa.field(CETT_COLUMN, pa.list_(pa.field("element", CETT_DTYPES[cett_dtype][1], nullable=False),
                                                 n_features), nullable=False))
    meta = {b"hneurons": dumps_json(dict(metadata or {})).encode("utf-8")}
    return pa.schema(fields, metadata=meta)


# ---------------------------------------------------------------- writing


class ActivationWriter:
    """Stream (frame, cett) blocks into one shard directory: a part file per block and split, then the manifest.

    Each block becomes one part per split it holds (SPLIT_ORDER, rows in block
    order), named by its block number (counted from ``first_block``) and the
    part's index within the block. The directory
    is written to a temporary sibling and renamed on a clean exit; on an exception
    nothing is left at ``path``. ``expected_rows`` (if given) must equal the rows
    written. ``shard``/``shards``: this directory's index and the set's shard count.
    """

    def __init__(self, path: str | os.PathLike, n_layers: int, d_ffn: int, cett_dtype: str = "float32",
                 metadata: Mapping[str, Any] | None = None, expected_rows: int | None = None,
                 shard: int = 0, shards: int = 1, first_block: int = 0):
        if not (isinstance(shards, int) and isinstance(shard, int) and 0 <= shard < shards):
            raise HNeuronsError(f"{path}: shard {shard!r} of {shards!r}: expected 0 <= shard < shards")
        self.path = Path(path)
        self.n_layers, self.d_ffn = int(n_layers), int(d_ffn)
        self.n_features = self.n_layers * self.d_ffn
        self.cett_dtype = cett_dtype
        self.expected_rows = expected_rows
        self.metadata = dict(metadata or {})
        self.shard, self.shards = shard, shards
        self.schema = activation_schema(self.n_features, cett_dtype, {"n_layers": self.n_layers, "d_ffn": self.d_ffn,
                                                                      "cett_dtype": cett_dtype})
        self.rows_written = 0
        self.parts: list[dict[str, Any]] = []
        self._block = int(first_block)
        self._atomic = None
        self._tmp: Path | None = None

    def __enter__(self) -> ActivationWriter:
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._tmp.mkdir()
        return self

    def write(self, frame: pd.DataFrame, cett: np.ndarray) -> None:
        """Append rows. frame: META_NAMES columns; cett: float[n_rows, n_features], row-aligned."""
        if cett.ndim != 2 or cett.shape != (len(frame), self.n_features):
            raise HNeuronsError(f"{self.path}: cett block of shape {cett.shape}, expected "
                                f"({len(frame)}, {self.n_features})")
        if len(frame) == 0:
            return
        split = frame["split"].astype(str).to_numpy()
        for index, name in enumerate(split_order(set(split.tolist()))):
            rows = np.flatnonzero(split == name)
            whole = rows.size == len(split)
            self._write_part(_PART.format(self._block, index), frame if whole else frame.iloc[rows],
                             cett if whole else cett[rows], name)
        self._block += 1

    def _write_part(self, name: str, frame: pd.DataFrame, cett: np.ndarray, split: str) -> None:
        target = self._tmp / name
        pq.write_table(self._table(frame, cett), target, row_group_size=len(frame), compression="zstd",
                       use_dictionary=["dataset", "region", "split"],
                       use_byte_stream_split=[f"{CETT_COLUMN}.list.element"], write_statistics=META_NAMES,
                       store_schema=True, write_page_checksum=True)
        self.parts.append({"file": name, "rows": len(frame), "split": split, "bytes": target.stat().st_size})
        self.rows_written += len(frame)

    def _table(self, frame: pd.DataFrame, cett: np.ndarray) -> pa.Table:
        np_dtype, pa_dtype = CETT_DTYPES[self.cett_dtype]
        flat = pa.array(np.ascontiguousarray(cett, dtype=np_dtype).reshape(-1), type=pa_dtype)
        columns = [pa.array(frame[name].to_numpy(), type=kind) for name, kind in META_FIELDS]
        columns.append(pa.FixedSizeListArray.from_arrays(flat, self.n_features))
        return pa.Table.from_arrays(columns, schema=self.schema)

    def manifest(self) -> dict[str, Any]:
        return {"format": FORMAT, "n_layers": self.n_layers, "d_ffn": self.d_ffn, "cett_dtype": self.cett_dtype,
                "shard": self.shard, "shards": self.shards, "n_rows": self.rows_written, "parts": self.parts,
                "metadata": self.metadata}

    def __exit__(self, kind, value, traceback) -> bool:
        atomic, self._atomic = self._atomic, None
        if kind is None and self.expected_rows is not None and self.rows_written != self.expected_rows:
            error = HNeuronsError(f"{self.path}: wrote {self.rows_written} rows, expected {self.expected_rows}")
            atomic.__exit__(HNeuronsError, error, None)  # removes the temporary directory
            raise error
        if kind is None:
            (self._tmp / MANIFEST).write_text(dumps_json(self.manifest()), encoding="utf-8")
        atomic.__exit__(kind, value, traceback)  # renames on success, cleans up on an exception
        return False


def write_activations(path: str | os.PathLike, blocks, n_layers: int, d_ffn: int, cett_dtype: str = "float32",
                      metadata: Mapping[str, Any] | None = None, expected_rows: int | None = None,
                      shard: int = 0, shards: int = 1, first_block: int = 0) -> int:
    """Write an iterable of (frame, cett) blocks as one shard directory, atomically; returns the rows written."""
    with ActivationWriter(path, n_layers, d_ffn, cett_dtype, metadata, expected_rows, shard, shards,
                          first_block) as writer:
        for frame, cett in blocks:
            writer.write(frame, cett)
    return writer.rows_written


# ---------------------------------------------------------------- opening a set


@dataclass(frozen=True)
class Part:
    """One part file: its path, rows, split and size in bytes (from the manifest)."""

    path: Path
    rows: int
    split: str
    bytes: int


@dataclass(frozen=True)
class ActivationSet:
    """An opened activation set: shapes, dtype, the run's metadata and its parts in row order."""

    path: Path
    n_layers: int
    d_ffn: int
    cett_dtype: str
    metadata: dict[str, Any]
    parts: tuple[Part, ...]
    shards: tuple[Path, ...]

    @property
    def n_features(self) -> int:
        return self.n_layers * self.d_ffn

    @property
    def n_rows(self) -> int:
        return sum(p.rows for p in self.parts)


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HNeuronsError(f"{path}: unreadable manifest ({str(exc).splitlines()[0]})") from None
    keys = ("format", "n_layers", "d_ffn", "cett_dtype", "shard", "shards", "n_rows", "parts", "metadata")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or any(k not in manifest for k in keys):
        raise HNeuronsError(f"{path}: not an activation manifest (expected format {FORMAT!r})")
    return manifest


def open_activations(path: str | os.PathLike) -> ActivationSet:
    """Open an activation set directory (shard sub-directories) or one shard directory; checks that the
    shards are complete (indices 0..n-1 of one count), agree on shape, dtype and metadata, and that every
    listed part exists with its recorded size. Errors are one line naming the file or directory."""
    root = Path(path)
    if not root.is_dir():
        raise HNeuronsError(f"{root}: activations not found (run the extract stage)")
    if (root / MANIFEST).is_file():
        shard_dirs = [root]
    else:
        shard_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not shard_dirs:
            raise HNeuronsError(f"{root}: no activation shards (no sub-directory with {MANIFEST}; "
                                f"run the extract stage)")
        for d in shard_dirs:
            if not (d / MANIFEST).is_file():
                raise HNeuronsError(f"{d / MANIFEST}: missing (an interrupted or foreign directory in {root})")
    manifests = [(d, _read_manifest(d)) for d in shard_dirs]
    counts = sorted({m["shards"] for _, m in manifests})
    if len(counts) > 1:
        listing = ", ".join(f"{d.name} ({m['shard']} of {m['shards']})" for d, m in manifests)
        raise HNeuronsError(f"{root}: shards of different shard counts ({listing}); remove the stale ones")
    by_index: dict[int, Path] = {}
    for d, m in manifests:
        if m["shard"] in by_index:
            raise HNeuronsError(f"{root}: shard {m['shard']} of {m['shards']} twice ({by_index[m['shard']].name}, "
                                f"{d.name}); remove the stale one")
        by_index[m["shard"]] = d
    if len(shard_dirs) > 1 or manifests[0][1]["shards"] != 1:
        missing = sorted(set(range(counts[0])) - set(by_index))
        if missing:
            raise HNeuronsError(f"{root}: shard(s) {missing} of {counts[0]} missing (have "
                                f"{', '.join(d.name for d in shard_dirs)}); run their extract stages")
    manifests.sort(key=lambda dm: dm[1]["shard"])
    first = manifests[0][1]
    for d, m in manifests[1:]:
        for key in ("n_layers", "d_ffn", "cett_dtype", "metadata"):
            if m[key] != first[key]:
                raise HNeuronsError(f"{d / MANIFEST}: {key} differs from {manifests[0][0].name}'s "
                                    f"(shards of different extractions)")
    parts = []
    for d, m in manifests:
        for entry in m["parts"]:
            part = Part(d / entry["file"], int(entry["rows"]), str(entry["split"]), int(entry["bytes"]))
            if not part.path.is_file():
                raise HNeuronsError(f"{part.path}: part file missing (listed in {d / MANIFEST})")
            size = part.path.stat().st_size
            if size != part.bytes:
                raise HNeuronsError(f"{part.path}: {size} bytes, {d / MANIFEST} records {part.bytes} "
                                    f"(truncated or replaced)")
            parts.append(part)
    return ActivationSet(root, int(first["n_layers"]), int(first["d_ffn"]), str(first["cett_dtype"]),
                         dict(first["metadata"]), tuple(parts), tuple(d for d, _ in manifests))


def activation_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The run's metadata (fingerprint, span rule, readout, counts, ...) with n_layers, d_ffn, cett_dtype
    and n_rows (all shards) of the set."""
    acts = open_activations(path)
    return {**acts.metadata, "n_layers": acts.n_layers, "d_ffn": acts.d_ffn, "cett_dtype": acts.cett_dtype,
            "n_rows": acts.n_rows}


# ---------------------------------------------------------------- reading parts


def _open_part(part: Part, width: int) -> pq.ParquetFile:
    try:
        parquet = pq.ParquetFile(part.path, page_checksum_verification=True)
    except (pa.ArrowException, OSError) as exc:
        raise HNeuronsError(f"{part.path}: unreadable Parquet ({str(exc).splitlines()[0]})") from None
    names = parquet.schema_arrow.names
    if CETT_COLUMN not in names or parquet.schema_arrow.field(CETT_COLUMN).type.list_size != width:
        raise HNeuronsError(f"{part.path}: not an activation part of {width} features")
    if parquet.metadata.num_rows != part.rows:
        raise HNeuronsError(f"{part.path}: {parquet.metadata.num_rows} rows, the manifest records {part.rows}")
    return parquet


def _read_columns(parquet: pq.ParquetFile, part: Part, columns: list[str]) -> pa.Table:
    try:
        return parquet.read(columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise HNeuronsError(f"{part.path}: corrupt part ({str(exc).splitlines()[0]})") from None


def _cett(parquet: pq.ParquetFile, part: Part, width: int) -> np.ndarray:
    """A part's cett as float[n_rows, n_features] (float16 or float32, as stored)."""
    column = _read_columns(parquet, part, [CETT_COLUMN]).column(0)
    blocks = [chunk.flatten().to_numpy(zero_copy_only=False).reshape(len(chunk), width) for chunk in column.chunks]
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def _wanted_split(part: Part, columns_filter: Mapping[str, Any] | None) -> bool:
    """False when the filter's split excludes the part (decided from the manifest alone)."""
    if not columns_filter or "split" not in columns_filter:
        return True
    wanted = columns_filter["split"]
    if isinstance(wanted, (list, tuple, set, frozenset)):
        return part.split in {str(w) for w in wanted}
    return part.split == str(wanted)


def _selection(frame: pd.DataFrame, columns_filter: Mapping[str, Any] | None, path) -> np.ndarray:
    """bool[n_rows]: rows whose columns equal the filter value (or are in a list/tuple/set of values)."""
    keep = np.ones(len(frame), dtype=bool)
    for column, wanted in (columns_filter or {}).items():
        if column not in frame.columns:
            raise HNeuronsError(f"{path}: filter column {column!r} is not one of {', '.join(META_NAMES)}")
        values = frame[column]
        if isinstance(wanted, (list, tuple, set, frozenset)):
            keep &= values.isin(list(wanted)).to_numpy()
        else:
            keep &= (values == wanted).to_numpy()
    return keep


def _selected_parts(acts: ActivationSet, columns_filter: Mapping[str, Any] | None,
                    ) -> Iterator[tuple[Part, pq.ParquetFile, pd.DataFrame, np.ndarray]]:
    """(part, open file, selected frame rows, keep mask) for every part with a selected row."""
    for column in columns_filter or {}:
        if column not in META_NAMES:
            raise HNeuronsError(f"{acts.path}: filter column {column!r} is not one of {', '.join(META_NAMES)}")
    for part in acts.parts:
        if not _wanted_split(part, columns_filter):
            continue
        parquet = _open_part(part, acts.n_features)
        frame = _read_columns(parquet, part, META_NAMES).to_pandas()
        keep = _selection(frame, columns_filter, part.path)
        if keep.any():
            yield part, parquet, frame[keep].reset_index(drop=True), keep


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=kind.to_pandas_dtype()) for name, kind in META_FIELDS})
    return pd.concat(frames, ignore_index=True)


def iter_activation_blocks(path: str | os.PathLike, columns_filter: Mapping[str, Any] | None = None,
                           ) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """Yield (frame, cett float32[n_block, n_features]) per part with selected rows; memory-light."""
    acts = open_activations(path)
    for part, parquet, frame, keep in _selected_parts(acts, columns_filter):
        block = _cett(parquet, part, acts.n_features)
        yield frame, (block if keep.all() else block[keep]).astype(np.float32, copy=False)


def read_activation_frame(path: str | os.PathLike, columns_filter: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The non-cett columns of the selected rows (no cett decoded)."""
    acts = open_activations(path)
    return _concat([frame for _, _, frame, _ in _selected_parts(acts, columns_filter)])


def read_activations(path: str | os.PathLike, columns_filter: Mapping[str, Any] | None = None,
                     ) -> tuple[pd.DataFrame, np.ndarray]:
    """(frame of the non-cett columns, X float32[n_rows, n_layers * d_ffn]), row-aligned, in memory.

    ``columns_filter`` maps a column to a value or a list of values, e.g.
    ``{"region": "answer", "split": ["train", "validation"]}``. X is allocated
    once and filled part by part (no per-row Python loop); parts of other
    splits are not opened.
    """
    acts = open_activations(path)
    selected = list(_selected_parts(acts, columns_filter))
    X = np.empty((sum(len(f) for _, _, f, _ in selected), acts.n_features), dtype=np.float32)
    row = 0
    for part, parquet, frame, keep in selected:
        block = _cett(parquet, part, acts.n_features)
        X[row:row + len(frame)] = block if keep.all() else block[keep]
        row += len(frame)
    return _concat([f for _, _, f, _ in selected]), X


def read_activation_columns(path: str | os.PathLike, columns: np.ndarray,
                            columns_filter: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """(frame, X float32[n_rows, k]): the selected rows' ``columns`` (flat indices, int[k]) only; each part
    is decoded once and the other columns dropped."""
    acts = open_activations(path)
    cols = np.asarray(columns, dtype=np.int64)
    if cols.size and (cols.min() < 0 or cols.max() >= acts.n_features):
        raise HNeuronsError(f"{acts.path}: column indices outside [0, {acts.n_features})")
    frames, blocks = [], []
    for part, parquet, frame, keep in _selected_parts(acts, columns_filter):
        block = _cett(parquet, part, acts.n_features)
        blocks.append(block[np.ix_(keep, cols)].astype(np.float32))
        frames.append(frame)
        del block
    X = np.concatenate(blocks) if blocks else np.zeros((0, cols.size), dtype=np.float32)
    return _concat(frames), X
