"""Activation rows as matrices that stay on disk: a raw row file read in row blocks
(:class:`RowMatrix`, filled by :func:`spill_activations`: peak ~ two decoded parts while
filling, one row block while reading) and a lazy column reader (:class:`ActivationColumns`).
Both index like numpy (``M[a:b]``, ``M[:, cols]``), which is all the L1 fit and the
random-neuron baselines ask of a matrix.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hneurons.activations import (
    _BLOCK_BYTES,
    CETT_DTYPES,
    _cett,
    _concat,
    _selected_parts,
    open_activations,
    read_activation_columns,
    read_activation_frame,
)
from hneurons.errors import HNeuronsError


class RowMatrix:
    """float32[n_rows, n_cols] kept in a raw row-major file (stored float16 or float32), read in row blocks.

    Indexing returns float32 numpy arrays: ``M[a:b]`` (rows a..b-1), ``M[:, cols]``
    (int[k] columns of every row, gathered in row blocks of ~64 MiB; column-major like
    numpy's result, so downstream products round the same way) and
    ``np.asarray(M)`` (everything). Memory held between reads: none; nothing is
    memory-mapped, so reads never add the file's pages to the process's RSS.
    """

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, path: str | os.PathLike, n_rows: int, n_cols: int, stored: str = "float32"):
        self.path = Path(path)
        self.shape = (int(n_rows), int(n_cols))
        self.stored = np.dtype(CETT_DTYPES[stored][0])
        expected = self.shape[0] * self.shape[1] * self.stored.itemsize
        if not self.path.is_file() or self.path.stat().st_size != expected:
            raise HNeuronsError(f"{self.path}: expected {expected} bytes of {stored} rows")

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    def _rows(self, start: int, stop: int) -> np.ndarray:
        n = max(0, stop - start)
        width = self.shape[1]
        block = np.fromfile(self.path, dtype=self.stored, count=n * width, offset=start * width * self.stored.itemsize)
        return block.reshape(n, width).astype(np.float32, copy=False)

    def _row_slices(self) -> Iterator[slice]:
        step = max(1, _BLOCK_BYTES // max(1, self.shape[1] * 4))
        for start in range(0, self.shape[0], step):
            yield slice(start, min(start + step, self.shape[0]))

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):
            if len(key) != 2 or key[0] != slice(None):
                raise HNeuronsError("RowMatrix supports M[a:b] and M[:, columns] only")
            cols = np.asarray(key[1])
            # column-major, as numpy's X[:, cols] is, so products over it round identically
            out = np.empty((self.shape[0], cols.size) if cols.ndim == 1 else (self.shape[0],), dtype=np.float32,
                           order="F")
            for rows in self._row_slices():
                out[rows] = self._rows(rows.start, rows.stop)[:, cols]
            return out
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                raise HNeuronsError("RowMatrix row slices must have step 1")
            return self._rows(start, stop)
        if isinstance(key, (int, np.integer)):
            index = int(key) + (self.shape[0] if key < 0 else 0)
            return self._rows(index, index + 1)[0]
        raise HNeuronsError("RowMatrix supports M[a:b] and M[:, columns] only")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        for rows in self._row_slices():
            out[rows] = self._rows(rows.start, rows.stop)
        return out if dtype is None else out.astype(dtype, copy=False)


def spill_activations(path: str | os.PathLike, directory: str | os.PathLike,
                      columns_filter: Mapping[str, Any] | None = None) -> tuple[pd.DataFrame, RowMatrix]:
    """(frame, RowMatrix) of the selected rows, copied part by part in the stored dtype into a new raw file
    in ``directory`` (the caller removes it). Peak memory ~ two decoded parts."""
    acts = open_activations(path)
    target = Path(directory) / f"rows-{uuid.uuid4().hex}.{acts.cett_dtype}"
    frames = []
    with open(target, "wb") as handle:
        for part, parquet, frame, keep in _selected_parts(acts, columns_filter):
            block = _cett(parquet, part, acts.n_features)
            np.ascontiguousarray(block if keep.all() else block[keep]).tofile(handle)
            frames.append(frame)
            del block
    frame = _concat(frames)
    return frame, RowMatrix(target, len(frame), acts.n_features, acts.cett_dtype)


class ActivationColumns:
    """The selected rows of an activation set as a lazy float32[n_rows, n_features] matrix of which only
    columns are read: ``A[:, cols]`` decodes each selected part once and keeps ``cols`` (int[k])."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, path: str | os.PathLike, columns_filter: Mapping[str, Any] | None = None,
                 n_rows: int | None = None):
        self.path = Path(path)
        self.columns_filter = dict(columns_filter or {})
        acts = open_activations(path)
        if n_rows is None:
            n_rows = len(read_activation_frame(path, self.columns_filter))
        self.shape = (int(n_rows), acts.n_features)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if not (isinstance(key, tuple) and len(key) == 2 and key[0] == slice(None)):
            raise HNeuronsError("ActivationColumns supports A[:, columns] only")
        _, X = read_activation_columns(self.path, np.asarray(key[1]), self.columns_filter)
        return np.asfortranarray(X)  # the layout of numpy's X[:, cols]

