"""A request larger than the data (n_questions, n_items) is a one-line error naming the key, not a silent cut."""

from __future__ import annotations

import pyarrow as pa
import pytest

from hneurons.errors import HNeuronsError
from hneurons.io import write_parquet


def _prepared(path, n: int, with_answers: int) -> None:
    write_parquet(path, pa.table({"example_id": [f"q{i}" for i in range(n)], "question": [f"Q{i}?" for i in range(n)],
                                  "answers": [[f"a{i}"] if i < with_answers else [] for i in range(n)]}))


def test_sample_n_questions_above_the_answerable_questions(tmp_path):
    from stages.sample import read_questions

    _prepared(tmp_path / "t.parquet", 10, with_answers=8)
    assert len(read_questions(tmp_path / "t.parquet", 8)[0]) == 8
    with pytest.raises(HNeuronsError, match=r"^sample.n_questions=9: .*t.parquet has only 8 questions with answers"):
        read_questions(tmp_path / "t.parquet", 9)


def test_origin_n_questions_above_the_eligible_questions(tmp_path, monkeypatch):
    from hneurons.origin_transfer import transfer_questions

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/prepared").mkdir(parents=True)
    _prepared(tmp_path / "data/prepared/nq_open.parquet", 6, with_answers=5)
    cfg = {"probe_dataset": "triviaqa", "n_questions": {"nq_open": 5}}
    assert [r["example_id"] for r in transfer_questions("nq_open", "tiny", cfg)] == [f"q{i}" for i in range(5)]
    with pytest.raises(HNeuronsError, match=r"^origin.n_questions.nq_open=6: only 5 eligible nq_open questions"):
        transfer_questions("nq_open", "tiny", {**cfg, "n_questions": {"nq_open": 6}})


def test_intervene_n_items_above_the_pool():
    from hneurons.intervene_items import pick

    assert len(pick(list(range(10)), "falseqa", 10, False, 1)) == 10
    with pytest.raises(HNeuronsError, match=r"^intervene.n_items.falseqa=11: the pool has only 10 items$"):
        pick(list(range(10)), "falseqa", 11, False, 1)
    with pytest.raises(HNeuronsError, match=r"^intervene.capability.n_questions=11: the pool has only 10 items$"):
        pick(list(range(10)), "triviaqa", 11, False, 1)
    assert len(pick(list(range(10)), "sycophancy", 50, True, 1)) == 10      # screened: the pool in seeded order
