"""CETT activation files: a streaming Parquet writer and row-group readers.

One row per (example, region). Columns (ARCHITECTURE.md contract):

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

On disk ``cett`` uses BYTE_STREAM_SPLIT + zstd and no dictionary. Measured on
SmolLM2-135M CETT (46,080 features, bench/bench_extract.py): float32 0.80x the
raw size (296 kB per example, two rows), float16 0.38x (140 kB; float16 rounding:
relative error <= 4.9e-4 down to 6.1e-5, absolute error <= 3e-8 below, where
float16 is subnormal); on synthetic data both decode at ~0.1 s per 45 MB,
close to an opaque fixed-size binary column (0.07 s), so the self-describing
fixed-size list is kept. Schema metadata
(``b"hneurons"``, canonical JSON, see hneurons.io) holds n_layers, d_ffn,
cett_dtype, n_rows and whatever the caller adds (fingerprint, span rule, readout,
counts). Readers preallocate the float32 result and fill it one row group at a
time (peak ~ the result plus one row group).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hneurons.errors import HNeuronsError
from hneurons.io import atomic_path, dumps_json, read_parquet_metadata

CETT_DTYPES = {"float32": (np.float32, pa.float32()), "float16": (np.float16, pa.float16())}
META_FIELDS = [("example_id", pa.string()), ("dataset", pa.string()), ("label", pa.int8()),
               ("region", pa.string()), ("split", pa.string()), ("n_tokens", pa.int32()),
               ("response_tokens", pa.int32())]
META_NAMES = [name for name, _ in META_FIELDS]
CETT_COLUMN = "cett"


def activation_schema(n_features: int, cett_dtype: str = "float32",
                      metadata: Mapping[str, Any] | None = None) -> pa.Schema:
    """The Arrow schema of an activation file with ``metadata`` under b"hneurons"."""
    if cett_dtype not in CETT_DTYPES:
        raise HNeuronsError(f"dtype={cett_dtype!r}: expected one of {', '.join(CETT_DTYPES)}")
    fields = [pa.field(n, t, nullable=False) for n, t in META_FIELDS]
    fields.append(pa.field(CETT_COLUMN, pa.list_(pa.field("element", CETT_DTYPES[cett_dtype][1], nullable=False),
                                                 n_features), nullable=False))
    meta = {b"hneurons": dumps_json(dict(metadata or {})).encode("utf-8")}
    return pa.schema(fields, metadata=meta)


class ActivationWriter:
    """Stream (frame, cett) blocks into one Parquet file, one row group per block.

    The file is written to a temporary sibling and renamed on a clean exit; on an
    exception nothing is left at ``path``. ``expected_rows`` (if given) must
    equal the rows written, so the metadata's counts are true.
    """

    def __init__(self, path: str | os.PathLike, n_layers: int, d_ffn: int, cett_dtype: str = "float32",
                 metadata: Mapping[str, Any] | None = None, expected_rows: int | None = None):
        self.path = Path(path)
        self.n_features = n_layers * d_ffn
        self.cett_dtype = cett_dtype
        self.expected_rows = expected_rows
        meta = dict(metadata or {})
        meta.update({"n_layers": n_layers, "d_ffn": d_ffn, "cett_dtype": cett_dtype})
        if expected_rows is not None:
            meta["n_rows"] = expected_rows
        self.schema = activation_schema(self.n_features, cett_dtype, meta)
        self.rows_written = 0
        self._atomic = None
        self._writer: pq.ParquetWriter | None = None

    def __enter__(self) -> "ActivationWriter":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._writer = pq.ParquetWriter(
            tmp, self.schema, compression="zstd", use_dictionary=["dataset", "region", "split"],
            use_byte_stream_split=[f"{CETT_COLUMN}.list.element"], write_statistics=META_NAMES,
            store_schema=True, write_page_checksum=True)
        return self

    def write(self, frame: pd.DataFrame, cett: np.ndarray) -> None:
        """Append one row group. frame: META_NAMES columns; cett: float[n_rows, n_features]."""
        if cett.ndim != 2 or cett.shape != (len(frame), self.n_features):
            raise HNeuronsError(f"{self.path}: cett block of shape {cett.shape}, expected "
                                f"({len(frame)}, {self.n_features})")
        if len(frame) == 0:
            return
        self._writer.write_table(self._table(frame, cett))
        self.rows_written += len(frame)

    def _table(self, frame: pd.DataFrame, cett: np.ndarray) -> pa.Table:
        np_dtype, pa_dtype = CETT_DTYPES[self.cett_dtype]
        flat = pa.array(np.ascontiguousarray(cett, dtype=np_dtype).reshape(-1), type=pa_dtype)
        columns = [pa.array(frame[name].to_numpy(), type=kind) for name, kind in META_FIELDS]
        columns.append(pa.FixedSizeListArray.from_arrays(flat, self.n_features))
        return pa.Table.from_arrays(columns, schema=self.schema)

    def __exit__(self, kind, value, traceback) -> bool:
        writer, self._writer = self._writer, None
        atomic, self._atomic = self._atomic, None
        writer.close()
        if kind is None and self.expected_rows is not None and self.rows_written != self.expected_rows:
            error = HNeuronsError(f"{self.path}: wrote {self.rows_written} rows, expected {self.expected_rows}")
            atomic.__exit__(HNeuronsError, error, None)  # removes the temporary file
            raise error
        atomic.__exit__(kind, value, traceback)  # renames on success, cleans up on an exception
        return False


def write_activations(path: str | os.PathLike, blocks, n_layers: int, d_ffn: int, cett_dtype: str = "float32",
                      metadata: Mapping[str, Any] | None = None, expected_rows: int | None = None) -> int:
    """Write an iterable of (frame, cett) blocks atomically; returns the rows written."""
    with ActivationWriter(path, n_layers, d_ffn, cett_dtype, metadata, expected_rows) as writer:
        for frame, cett in blocks:
            writer.write(frame, cett)
    return writer.rows_written


# ---------------------------------------------------------------- reading


def _open(path: str | os.PathLike) -> pq.ParquetFile:
    if not Path(path).is_file():
        raise HNeuronsError(f"{path}: activation file not found (run the extract stage)")
    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
    except (pa.ArrowException, OSError) as exc:
        raise HNeuronsError(f"{path}: unreadable Parquet ({str(exc).splitlines()[0]})") from None
    if CETT_COLUMN not in parquet.schema_arrow.names:
        raise HNeuronsError(f"{path}: not an activation file (no {CETT_COLUMN!r} column)")
    return parquet


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


def _cett_block(parquet: pq.ParquetFile, group: int, path) -> np.ndarray:
    """One row group's cett as float[n_rows, n_features] (float16 or float32, as stored)."""
    column = _read_group(parquet, group, [CETT_COLUMN], path).column(0)
    width = column.type.list_size
    parts = [chunk.flatten().to_numpy(zero_copy_only=False).reshape(len(chunk), width) for chunk in column.chunks]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _meta_frame(parquet: pq.ParquetFile, group: int, path) -> pd.DataFrame:
    return _read_group(parquet, group, META_NAMES, path).to_pandas()


def _read_group(parquet: pq.ParquetFile, group: int, columns: list[str], path) -> pa.Table:
    try:
        return parquet.read_row_group(group, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise HNeuronsError(f"{path}: corrupt row group {group} ({str(exc).splitlines()[0]})") from None


def iter_activation_blocks(path: str | os.PathLike, columns_filter: Mapping[str, Any] | None = None,
                           ) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """Yield (frame, cett float32[n_block, n_features]) per row group, filtered; memory-light."""
    parquet = _open(path)
    for group in range(parquet.num_row_groups):
        frame = _meta_frame(parquet, group, path)
        keep = _selection(frame, columns_filter, path)
        if keep.any():
            block = _cett_block(parquet, group, path)[keep].astype(np.float32, copy=False)
            yield frame[keep].reset_index(drop=True), block


def read_activations(path: str | os.PathLike, columns_filter: Mapping[str, Any] | None = None,
                     ) -> tuple[pd.DataFrame, np.ndarray]:
    """(frame of the non-cett columns, X float32[n_rows, n_layers * d_ffn]), row-aligned.

    ``columns_filter`` maps a column to a value or a list of values, e.g.
    ``{"region": "answer", "split": ["train", "validation"]}``. X is allocated
    once and filled row group by row group (no per-row Python loop).
    """
    parquet = _open(path)
    width = parquet.schema_arrow.field(CETT_COLUMN).type.list_size
    frames, selections = [], []
    for group in range(parquet.num_row_groups):
        frame = _meta_frame(parquet, group, path)
        keep = _selection(frame, columns_filter, path)
        frames.append(frame[keep])
        selections.append(keep)
    total = sum(int(k.sum()) for k in selections)
    X = np.empty((total, width), dtype=np.float32)
    row = 0
    for group, keep in enumerate(selections):
        n = int(keep.sum())
        if n == 0:
            continue
        block = _cett_block(parquet, group, path)
        X[row:row + n] = block if n == len(keep) else block[keep]
        row += n
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=META_NAMES)
    return frame, X


def activation_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The file's schema metadata: n_layers, d_ffn, cett_dtype, n_rows, fingerprint, span rule, readout, counts."""
    _open(path)
    return read_parquet_metadata(path)
