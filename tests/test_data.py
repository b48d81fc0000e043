"""Dataset readers -> one prepared schema, on the project's raw snapshots and small local files."""

import json
from pathlib import Path

import pyarrow as pa
import pytest

from hneurons import data
from hneurons.errors import HNeuronsError

RAW = Path(__file__).resolve().parents[1] / "data" / "raw"

CONFIGS = {
    "triviaqa": {"format": "triviaqa", "source": {"kind": "file", "path": str(RAW / "triviaqa/triviaqa_rc_nocontext_train_3500.jsonl")}, "rows": [0, 30]},
    "nq_open": {"format": "nq_open", "source": {"kind": "file", "path": str(RAW / "nq_open/NQ-open.dev.jsonl")}, "rows": [0, 30]},
    "bioasq": {"format": "bioasq", "source": {"kind": "file", "path": str(RAW / "bioasq/bioasq13b_factoid_1600.jsonl")}, "rows": [0, 30]},
    "nonexist": {"format": "nonexist", "source": {"kind": "file", "path": str(RAW / "nonexist/nonexist_generated_v1.jsonl")}},
    "falseqa": {"format": "falseqa", "source": {"kind": "file", "path": str(RAW / "falseqa")}, "splits": ["test"]},
    "sycophancy": {"format": "sycophancy", "source": {"kind": "file", "path": str(RAW / "sycophancy/are_you_sure_fallback_v1.jsonl")}},
    "jailbreak": {"format": "jailbreak", "source": {"kind": "file", "path": str(RAW / "jailbreak/forbidden_question_set.csv")},
                  "templates": str(RAW / "jailbreak/jailbreak_prompts.csv"), "template_row": 660},
    "faitheval_style": {"format": "faitheval_style", "source": {"kind": "file", "path": str(RAW / "triviaqa/triviaqa_rc_nocontext_train_3500.jsonl")},
                        "rows": [2000, 2200], "reference": str(RAW / "triviaqa/systemicvoid_gemma3_4b_consistency_samples.jsonl"),
                        "seed": 7, "n_options": 4},
}


def _prepare(name, config=None):
    config = config or CONFIGS[name]
    fmt, rows, options = data.load_raw(config, f"datasets.{name}")
    return data.prepare(fmt, rows, options, f"datasets.{name}")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_format_has_the_common_schema(name):
    table = _prepare(name)
    assert table.schema.names[:3] == ["example_id", "question", "answers"]
    assert table.schema == data.schema_for(CONFIGS[name]["format"])
    assert table.num_rows > 0
    ids = table.column("example_id").to_pylist()
    assert len(set(ids)) == len(ids)
    assert all(q.strip() for q in table.column("question").to_pylist())


def test_row_slice_and_answers():
    rows = _prepare("triviaqa").to_pylist()
    assert len(rows) == 30 and rows[0]["example_id"] == "tc_1"
    assert "Sinclair Lewis" in rows[0]["answers"]


def test_falseqa_keeps_labels_and_parses_answer_lists():
    rows = _prepare("falseqa").to_pylist()
    assert len(rows) == 1374
    assert sum(r["label"] for r in rows) == 687
    assert all(isinstance(r["answers"], list) and r["answers"] for r in rows)


def test_sycophancy_multiple_choice_options():
    rows = _prepare("sycophancy").to_pylist()
    mc = [r for r in rows if r["format"] == "mc"]
    assert len(mc) == 254
    assert all(len(r["options"]) == 5 and r["correct_option"] in "ABCDE" for r in mc)
    assert {r["category"] for r in rows} == {"trivia_qa", "truthful_qa", "aqua"}


def test_jailbreak_template_is_filled():
    rows = _prepare("jailbreak").to_pylist()
    assert len(rows) == 390
    assert all(r["question"] in r["prompt"] and data.JAILBREAK_PLACEHOLDER not in r["prompt"] for r in rows)
    assert len({r["category"] for r in rows}) == 13


def test_faitheval_style_recipe():
    table = _prepare("faitheval_style")
    rows = table.to_pylist()
    assert len(rows) > 50
    for r in rows:
        letters = "ABCD"
        assert len(r["options"]) == 4
        wrong = r["options"][letters.index(r["counterfactual_option"])]
        assert r["answers"] == [wrong] and wrong in r["context"]
        assert r["options"][letters.index(r["gold_option"])] == r["gold"]
        assert r["counterfactual_option"] != r["gold_option"]
        assert f' {data.normalize_answer(r["gold"])} ' not in f' {data.normalize_answer(r["context"])} '

    assert _prepare("faitheval_style").equals(table)  # deterministic
    other_seed = dict(CONFIGS["faitheval_style"], seed=8)
    assert not _prepare("faitheval_style", other_seed).equals(table)


def test_hf_source_through_load_dataset_on_a_local_file(tmp_path):
    path = tmp_path / "nq.jsonl"
    path.write_text("\n".join(json.dumps({"question": f"q{i}?", "answer": [f"a{i}"]}) for i in range(5)))
    config = {"format": "nq_open", "source": {"kind": "hf", "name": "json", "split": "train",
                                              "data_files": str(path)}}
    rows = _prepare("nq_open", config).to_pylist()
    assert [r["answers"] for r in rows] == [[f"a{i}"] for i in range(5)]


@pytest.mark.parametrize("config, message", [
    ({"format": "triviaqa", "source": {"kind": "file", "path": "nope.jsonl"}}, r"datasets.x.source.path: raw file nope.jsonl not found"),
    ({"format": "squad", "source": {"kind": "file", "path": "x"}}, r"datasets.x.format='squad'"),
    ({"source": {"kind": "file", "path": "x"}}, r"datasets.x: a dataset needs 'format' and 'source'"),
    ({"format": "triviaqa", "source": {"kind": "ftp"}}, r"datasets.x.source.kind='ftp'"),
    ({**CONFIGS["triviaqa"], "rows": [5, 2]}, r"datasets.x.rows=\[5, 2\]"),
    ({**CONFIGS["jailbreak"], "template_row": 0}, r"template lacks"),
])
def test_bad_dataset_config_is_one_line_error(config, message):
    with pytest.raises(HNeuronsError, match=message) as info:
        fmt, rows, options = data.load_raw(config, "datasets.x")
        data.prepare(fmt, rows, options, "datasets.x")
    assert "\n" not in str(info.value)


def test_duplicate_ids_and_empty_results_are_rejected():
    with pytest.raises(HNeuronsError, match="duplicate example_id 'a'"):
        data.prepare("bioasq", [{"id": "a", "question": "q", "answers": []}] * 2, {}, "datasets.x")
    with pytest.raises(HNeuronsError, match="no examples"):
        data.prepare("bioasq", [], {}, "datasets.x")
    with pytest.raises(HNeuronsError, match="lack field 'id'"):
        data.prepare("bioasq", [{"question": "q"}], {}, "datasets.x")
