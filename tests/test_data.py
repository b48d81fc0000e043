"""Dataset readers -> one prepared schema, on the project's raw snapshots and small local files."""

import json
from collections import Counter
from pathlib import Path

import pytest

from hneurons import data
from hneurons.errors import HNeuronsError
from hneurons.judge import RuleJudge

RAW = Path(__file__).resolve().parents[1] / "data" / "raw"

CONFIGS = {
    "triviaqa": {"format": "triviaqa", "source": {"kind": "file", "path": str(RAW / "triviaqa/triviaqa_rc_nocontext_train_3500.jsonl")}, "rows": [0, 30]},
    "nq_open": {"format": "nq_open", "source": {"kind": "file", "path": str(RAW / "nq_open/NQ-open.dev.jsonl")}, "rows": [0, 30]},
    "bioasq": {"format": "bioasq", "source": {"kind": "file", "path": str(RAW / "bioasq/bioasq13b_factoid_1600.jsonl")}, "rows": [0, 30]},
    "nonexist": {"format": "nonexist", "source": {"kind": "file", "path": str(RAW / "nonexist/nonexist_generated_v2.jsonl")}},
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


# ---------------------------------------------------------------- faitheval_style drops and gold validation

def _fes_rows(tmp_path, items, n_options=4):
    """Raw TriviaQA-style rows + a reference file for ``items`` = (qid, question, aliases, responses, judges)."""
    rows = [{"question_id": qid, "question": question, "answers": aliases} for qid, question, aliases, _, _ in items]
    reference = tmp_path / "reference.jsonl"
    reference.write_text("".join(json.dumps({qid: {"question": question, "responses": responses, "judges": judges}})
                                 + "\n" for qid, question, _, responses, judges in items if responses is not None))
    return rows, {"reference": str(reference), "seed": 3, "n_options": n_options}


GOOD = [(f"g{i}", f"Which thing is number {i}?", [f"answer{i}"], [f"Answer{i}."] * 3, ["true"] * 3)
        for i in range(5)]


def test_faitheval_style_counts_every_drop_by_reason(tmp_path):
    items = GOOD + [
        ("no_ref", "Who is nobody?", ["nobody"], None, None),
        ("all_wrong", "Who wrote Hamlet?", ["Shakespeare"], ["Marlowe", "Bacon"], ["false", "false"]),
        ("forty", "How many stars appear on the flag of New Zealand?", ["four", "4"], ["40", "40"], ["true", "true"]),
        ("in_q", "What was Michelangelo's first name?", ["Michelangelo", "Michelangelo Buonarroti"], ["Michelangelo"],
         ["true"]),
        ("refusal", "What is the capital of Peru?", ["Lima"], ["I don't know Lima"], ["true"]),
    ]
    rows, options = _fes_rows(tmp_path, items)
    records, drops = data.faitheval_style_records(rows, options)
    assert dict(drops) == {"no_reference": 1, "no_correct_reference": 1, "gold_substring_only": 1,
                           "gold_in_question": 1, "gold_not_rule_correct": 1, "too_few_options": 0}
    assert [r["example_id"] for r in records] == [f"fes_g{i}" for i in range(5)]
    assert all(r["gold"] == f"Answer{r['example_id'][-1]}" for r in records)

    counted = Counter()
    table = data.prepare("faitheval_style", rows, options, "datasets.x", counted)
    assert table.num_rows == 5 and counted == drops

    _, too_many = data.faitheval_style_records(rows, {**options, "n_options": 6})
    assert too_many["too_few_options"] == 5


def test_faitheval_style_distractors_are_never_judged_correct(tmp_path):
    items = [("york", "Which city is the Big Apple?", ["New York"], ["New York"], ["true"]),
             ("nyc", "Which city hosts Wall Street?", ["New York City", "NYC"], ["New York City"], ["true"]),
             *GOOD[:4]]
    rows, options = _fes_rows(tmp_path, items)
    records, _ = data.faitheval_style_records(rows, options)
    york = next(r for r in records if r["example_id"] == "fes_york")
    assert "New York City" not in york["options"]  # would be judged correct for "New York"


def test_faitheval_style_rejects_qz_202_from_the_raw_file():
    config = CONFIGS["faitheval_style"]
    raw = data.read_jsonl(Path(config["source"]["path"]))
    row = next(r for r in raw if r["question_id"] == "qz_202")
    reference = next(r["qz_202"] for r in data.read_jsonl(Path(config["reference"])) if "qz_202" in r)
    assert set(reference["responses"]) == {"40"} and row["answers"] == ["four", "4"]
    assert data._gold_problem(row["question"], "40", row["answers"]) == "gold_substring_only"
    assert data._gold_problem(row["question"], "4", row["answers"]) is None
    records, drops = data.faitheval_style_records([row], {**config, "n_options": 4})
    assert records == [] and drops["gold_substring_only"] == 1


def test_faitheval_style_drop_counts_on_the_params_rows():
    config = {**CONFIGS["faitheval_style"], "rows": [2000, 2500], "seed": 20251201}
    fmt, rows, options = data.load_raw(config, "datasets.faitheval_style")
    drops = Counter()
    table = data.prepare(fmt, rows, options, "datasets.faitheval_style", drops)
    assert {k: v for k, v in drops.items() if v} == {"no_correct_reference": 215, "gold_in_question": 3,
                                                      "gold_substring_only": 1}
    assert table.num_rows == 500 - sum(drops.values()) == 281
    raw = {r["question_id"]: r for r in rows}
    judge = RuleJudge()
    for r in table.to_pylist():
        source = raw[r["example_id"].removeprefix("fes_")]
        verdicts = [judge.judge(source["question"], option, source["answers"]).correct for option in r["options"]]
        assert verdicts == [option == r["gold"] for option in r["options"]]


def test_other_formats_report_no_drops():
    drops = Counter()
    fmt, rows, options = data.load_raw(CONFIGS["nq_open"], "datasets.nq_open")
    assert data.prepare(fmt, rows, options, "datasets.nq_open", drops).num_rows == len(rows)
    assert drops == Counter()


def test_malformed_jsonl_line_names_its_line_number(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "a"}\n\n{"question": "b"}\n{"question": \n', encoding="utf-8")
    with pytest.raises(HNeuronsError, match=r"q.jsonl: line 4: malformed JSON \(Expecting value, column 14\)"):
        data.read_jsonl(path)


def test_row_range_beyond_the_source_is_an_error_not_a_silent_cut(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"question": f"q{i}", "answer": "a"}) + "\n" for i in range(48)),
                    encoding="utf-8")
    config = {"format": "triviaqa", "source": {"kind": "file", "path": str(path)}}
    assert len(data.load_raw({**config, "rows": [0, 48]}, "datasets.t")[1]) == 48
    with pytest.raises(HNeuronsError, match=r"datasets.t.rows=\[0, 100000\]: the source has 48 rows"):
        data.load_raw({**config, "rows": [0, 100000]}, "datasets.t")


def test_prompt_template_keeps_other_braces():
    from hneurons.generate import fill_question

    assert fill_question('Answer as JSON {"a": 1}: {question}', "Who?") == 'Answer as JSON {"a": 1}: Who?'
