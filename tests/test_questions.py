"""held_out_questions: prepared rows minus the probe's train/validation questions."""

from __future__ import annotations

import pyarrow as pa
import pytest

from hneurons.errors import HNeuronsError
from hneurons.io import write_parquet
from hneurons.questions import held_out_questions, prepared_questions


def _write(tmp_path) -> None:
    write_parquet(tmp_path / "data/prepared/triviaqa.parquet",
                  pa.table({"example_id": [f"t{i}" for i in range(6)], "question": [f"Q{i}?" for i in range(6)],
                            "answers": [["a"]] * 6}))
    write_parquet(tmp_path / "data/samples/fam/triviaqa.parquet",
                  pa.table({"example_id": ["t1", "t2", "t4", "t4"], "split": ["train", "validation", "test", "test"]}))


def test_held_out_questions_drop_the_probe_splits_in_table_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path)
    rows = held_out_questions("fam", "triviaqa", ["example_id", "question"])
    assert [r["example_id"] for r in rows] == ["t0", "t3", "t4", "t5"]
    assert set(rows[0]) == {"example_id", "question"}
    assert len(prepared_questions("triviaqa")) == 6
    with pytest.raises(HNeuronsError, match=r"data/samples/fam/nq_open.parquet: not found"):
        held_out_questions("fam", "triviaqa", probe_dataset="nq_open")
    with pytest.raises(HNeuronsError, match=r"data/prepared/bioasq.parquet: not found; run prepare@bioasq"):
        held_out_questions("fam", "bioasq")
