"""hneurons.io: atomic writes leave no temp siblings; Parquet pages are checksummed and verified on read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from hneurons.errors import HNeuronsError
from hneurons.io import read_schema, read_table, write_parquet, write_text


def _table(n: int = 4000) -> pa.Table:
    rng = np.random.default_rng(0)
    return pa.table({"example_id": [f"q{i}" for i in range(n)], "x": rng.standard_normal(n)})


@pytest.mark.parametrize("compression", ["zstd", "none"])   # none: only the page checksum can notice
def test_a_flipped_byte_inside_a_data_page_is_a_one_line_error(tmp_path, compression):
    path = tmp_path / "t.parquet"
    write_parquet(path, _table(), {"family": "tiny"}, compression=compression)
    assert read_table(path).equals(_table().replace_schema_metadata(read_table(path).schema.metadata))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2                     # inside the column chunks, far from header and footer
    data[middle] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(HNeuronsError) as info:
        read_table(path)
    assert str(info.value).startswith(f"{path}: unreadable Parquet (") and "\n" not in str(info.value)


def test_truncated_or_missing_parquet_is_a_one_line_error(tmp_path):
    path = tmp_path / "t.parquet"
    write_parquet(path, _table(100))
    path.write_bytes(path.read_bytes()[:-20])   # footer cut
    for read in (read_table, read_schema):
        with pytest.raises(HNeuronsError, match=r"t.parquet: unreadable Parquet \("):
            read(path)
    with pytest.raises(HNeuronsError, match=r"absent.parquet: not found"):
        read_table(tmp_path / "absent.parquet")


def test_stale_temp_siblings_of_a_killed_write_are_removed(tmp_path):
    stale = tmp_path / ".metrics.json.abc123"
    stale.mkdir()
    (stale / "metrics.json").write_text("{half", encoding="utf-8")
    empty = tmp_path / ".metrics.json.def456"
    empty.mkdir()
    other = tmp_path / ".other.json.abc123"
    other.mkdir()
    write_text(tmp_path / "metrics.json", "{}\n")
    assert (tmp_path / "metrics.json").read_text(encoding="utf-8") == "{}\n"
    assert not stale.exists() and not empty.exists() and other.exists()
