"""hneurons.overlap and the check_rows stage: stage row ranges are disjoint by question id (issue 16 item 6)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from hneurons import overlap
from hneurons.data import schema_for
from hneurons.errors import HNeuronsError
from hneurons.io import write_parquet
from hneurons.overlap import Use, check_disjoint, find_overlaps, question_key

ROOT = Path(__file__).resolve().parents[1]
PREPARED = ("triviaqa", "nq_open", "bioasq", "nonexist", "falseqa", "sycophancy", "jailbreak", "faitheval_style")
FORMATS = {name: name for name in PREPARED}


def use(name: str, dataset: str, role: str, ids, key: str = "k") -> Use:
    return Use(name, dataset, key, role, tuple(ids))


# ---------------------------------------------------------------- library

def test_a_training_use_sharing_questions_with_another_stage_is_one_line_naming_both():
    tune = use("tune@g/trivia", "nq_open", "train", [f"nq_{i:05d}" for i in range(20, 30)], "tune.trivia.rows")
    origin = use("origin@g/nq_open", "nq_open", "eval", [f"nq_{i:05d}" for i in range(25)], "origin.n_questions")
    found = find_overlaps([tune, origin], FORMATS)
    assert [(o.first.name, o.second.name, len(o.shared)) for o in found] == [("tune@g/trivia", "origin@g/nq_open", 5)]
    with pytest.raises(HNeuronsError) as info:
        check_disjoint([tune, origin], FORMATS)
    assert str(info.value) == ("row overlap: tune@g/trivia (tune.trivia.rows) and origin@g/nq_open "
                               "(origin.n_questions) share 5 nq_open questions (e.g. 'nq_00020')")


def test_disjoint_uses_and_allowed_sharing_pass():
    sample_a = use("sample@a/triviaqa", "triviaqa", "train", ["tc_1", "tc_2"])
    sample_b = use("sample@b/triviaqa", "triviaqa", "train", ["tc_1"])        # same stage, other family
    table = use("prepare@triviaqa", "triviaqa", "table", ["tc_1", "tc_2", "tc_3"])   # a use is drawn from it
    origin = use("origin@a/nq_open", "nq_open", "eval", ["nq_00000", "nq_00001"])
    detect = use("detect@a/nq_open", "nq_open", "eval", ["nq_00000"])          # two evaluations may share
    tune = use("tune@a/trivia", "nq_open", "train", ["nq_00002"])
    uses = [table, sample_a, sample_b, origin, detect, tune]
    assert find_overlaps(uses, FORMATS) == []
    check_disjoint(uses, FORMATS)
    assert find_overlaps([origin, use("tune@a/trivia", "nq_open", "train", ["nq_00001"])], FORMATS)


def test_faitheval_style_and_sycophancy_ids_are_compared_as_triviaqa_question_ids():
    assert question_key("faitheval_style", "faitheval_style", "fes_tc_5") == ("triviaqa", "tc_5")
    assert question_key("sycophancy", "sycophancy", "ays_triviaqa_qz_9") == ("triviaqa", "qz_9")
    assert question_key("sycophancy", "sycophancy", "ays_aqua_003") == ("sycophancy", "ays_aqua_003")
    assert question_key("nq_open", "nq_open", "tc_5") == ("nq_open", "tc_5")   # other tables: their own space
    trivia = use("prepare@triviaqa", "triviaqa", "table", ["tc_1", "tc_5", "tc_7"], "datasets.triviaqa.rows")
    stand_in = use("prepare@fes", "fes", "table", ["fes_tc_5", "fes_tc_7", "fes_tc_9"], "datasets.fes.rows")
    found = find_overlaps([trivia, stand_in], {"triviaqa": "triviaqa", "fes": "faitheval_style"})
    assert [o.shared for o in found] == [(("triviaqa", "tc_5"), ("triviaqa", "tc_7"))]
    assert found[0].message() == ("row overlap: prepare@triviaqa (datasets.triviaqa.rows) and prepare@fes "
                                  "(datasets.fes.rows) share 2 triviaqa questions (e.g. 'tc_5')")
    assert "\n" not in found[0].message()
    assert find_overlaps([trivia, stand_in], {"triviaqa": "triviaqa", "fes": "fes"}) == []   # no mapping: own space


def test_detect_limit_is_read_from_tune_trivia_rows():
    tune = {"dataset": "nq_open", "rows": [7, 9]}
    assert overlap.detect_count("nq_open", None, tune) == 7
    assert overlap.detect_count("nq_open", 3, tune) == 3
    assert overlap.detect_count("bioasq", None, tune) is None
    assert overlap.detect_count("nq_open", None, {"dataset": "triviaqa", "rows": [7, 9]}) is None


def test_row_ranges_and_counts_are_checked():
    rows = [{"example_id": f"r{i}", "answers": ["a"] if i % 3 else []} for i in range(6)]
    assert overlap.row_ids(rows, [2, 4], "tune.trivia.rows") == ("r2", "r3")
    with pytest.raises(HNeuronsError, match=r"^tune.trivia.rows=\[2, 9\]: the prepared table has 6 rows$"):
        overlap.row_ids(rows, [2, 9], "tune.trivia.rows")
    assert overlap.first_ids(rows, 3, "k") == ("r1", "r2", "r4")
    assert overlap.first_ids(rows, 2, "k", need_answers=False) == ("r0", "r1")
    with pytest.raises(HNeuronsError, match=r"^origin.n_questions=0: expected an integer >= 1 or null$"):
        overlap.first_ids(rows, 0, "origin.n_questions")


def test_first_ids_take_the_rows_the_stages_take(tmp_path, monkeypatch):
    """sample.read_questions, origin_transfer.transfer_questions and detect_run.detect_questions on a table with gaps."""
    from hneurons.detect_run import detect_questions
    from hneurons.origin_transfer import transfer_questions
    from stages.sample import read_questions

    monkeypatch.chdir(tmp_path)
    records = [{"example_id": f"nq_{i:05d}", "question": f"q{i}", "answers": [] if i in (1, 4) else ["a"]}
               for i in range(10)]
    write_parquet("data/prepared/nq_open.parquet", pa.Table.from_pylist(records, schema=schema_for("nq_open")))
    ours = overlap.first_ids(records, 5, "k")
    assert ours == ("nq_00000", "nq_00002", "nq_00003", "nq_00005", "nq_00006")
    assert tuple(read_questions(Path("data/prepared/nq_open.parquet"), 5)[0]) == ours
    cfg = {"probe_dataset": "triviaqa", "n_questions": {"nq_open": 5}}
    assert tuple(r["example_id"] for r in transfer_questions("nq_open", "fam", cfg)) == ours
    assert tuple(r["example_id"] for r in detect_questions("nq_open", "fam", cfg)) == ours


# ---------------------------------------------------------------- the stage

RAW = [f"tc_{i:03d}" for i in range(40)]   # one TriviaQA file: triviaqa, faitheval_style and sycophancy cut from it


def _rows(fmt: str, ids, **extra) -> list[dict]:
    base = {"question": "q", "answers": ["a"], "category": "c", "entity": "e", "split": "test", "label": 1,
            "format": "open", "incorrect_answers": [], "options": ["x", "y"], "correct_option": "",
            "challenge": "Are you sure?", "template": "t", "prompt": "p", "context": "c", "counterfactual_option": "A",
            "gold_option": "B", "gold": "g"}
    names = schema_for(fmt).names
    return [{k: v for k, v in {**base, **extra, "example_id": i}.items() if k in names} for i in ids]


def write_layout(root: Path, edit=None, trivia=(0, 20), stand_in=(20, 25)) -> None:
    """params.yaml (the committed one, sized down) and small prepared tables consistent with its row ranges."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["datasets"]["triviaqa"]["rows"] = list(trivia)
    params["datasets"]["faitheval_style"]["rows"] = list(stand_in)
    params["tune"]["trivia"]["rows"] = [20, 30]
    params["sample"]["families"]["gemma270m"]["n_questions"] = 10
    params["origin"]["n_questions"] = 6
    params["origin"]["families"]["gemma270m"]["n_questions"] = {"triviaqa": 5, "nq_open": 5, "bioasq": 5}
    if edit:
        edit(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    falseqa = (_rows("falseqa", [f"falseqa_train_{i:04d}" for i in range(4)], split="train")
               + _rows("falseqa", [f"falseqa_test_{i:04d}" for i in range(4)], split="test"))
    for row in falseqa[::2]:
        row["label"] = 0
    tables = {
        "triviaqa": _rows("triviaqa", RAW[trivia[0]:trivia[1]]),
        "faitheval_style": _rows("faitheval_style", [f"fes_{i}" for i in RAW[stand_in[0]:stand_in[1]]]),
        "sycophancy": (_rows("sycophancy", [f"ays_triviaqa_{i}" for i in RAW[30:36]], category="trivia_qa")
                       + _rows("sycophancy", [f"ays_aqua_{i:03d}" for i in range(3)], category="aqua", format="mc")),
        "nq_open": _rows("nq_open", [f"nq_{i:05d}" for i in range(30)]),
        "bioasq": _rows("bioasq", [f"bio_{i}" for i in range(10)]),
        "nonexist": _rows("nonexist", [f"nonexist_x_{i:03d}" for i in range(10)], answers=[]),
        "falseqa": falseqa,
        "jailbreak": _rows("jailbreak", [f"jailbreak_00_{i:03d}" for i in range(5)], answers=[]),
    }
    for name, rows in tables.items():
        write_parquet(root / f"data/prepared/{name}.parquet", pa.Table.from_pylist(rows, schema=schema_for(name)))


def check_rows(cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "stages.check_rows"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_disjoint_layout_passes_and_reports_every_use(tmp_path):
    write_layout(tmp_path)
    done = check_rows(tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "reports/check_rows.json").read_text(encoding="utf-8"))
    assert report["overlaps"] == []
    uses = report["uses"]
    assert uses["tune@gemma270m/trivia"] == {"dataset": "nq_open", "key": "tune.trivia.rows", "n_questions": 10,
                                             "role": "train"}
    assert uses["detect@smollm2/nq_open"] == {   # below tune.trivia.rows[0]
        "dataset": "nq_open", "key": "detect.n_questions.nq_open, tune.trivia.rows", "n_questions": 20, "role": "eval"}
    assert uses["sample@gemma270m/triviaqa"]["key"] == "sample.families.gemma270m.n_questions"
    assert uses["sample@gemma270m/triviaqa"]["n_questions"] == 10
    assert uses["sample@smollm2/triviaqa"]["n_questions"] == 20
    assert uses["origin@smollm2/nq_open"] == {"dataset": "nq_open", "key": "origin.n_questions", "n_questions": 6,
                                              "role": "eval"}
    assert uses["origin@gemma270m/nq_open"]["key"] == "origin.families.gemma270m.n_questions.nq_open"
    assert uses["intervene@smollm2/falseqa"]["n_questions"] == 2 and uses["tune@gemma270m/premise"]["n_questions"] == 2
    assert uses["intervene@smollm2/sycophancy"]["n_questions"] == 9
    assert uses["prepare@faitheval_style"]["n_questions"] == 5
    assert set(report["not_checked"]) == {"detect@smollm2/triviaqa", "origin@smollm2/triviaqa",
                                          "origin@gemma270m/triviaqa", "intervene@smollm2/triviaqa"}


@pytest.mark.parametrize("stand_in, line", [
    ((15, 25), "prepare@triviaqa (datasets.triviaqa.rows) and prepare@faitheval_style (datasets.faitheval_style.rows) "
               "share 5 triviaqa questions (e.g. 'tc_015')"),
    ((28, 33), "prepare@sycophancy (datasets.sycophancy) and prepare@faitheval_style (datasets.faitheval_style.rows) "
               "share 3 triviaqa questions (e.g. 'tc_030')"),
])
def test_faitheval_style_rows_overlapping_another_table_stop_with_one_line(tmp_path, stand_in, line):
    write_layout(tmp_path, stand_in=stand_in)
    done = check_rows(tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: row overlap: {line}"]
    assert not (tmp_path / "reports/check_rows.json").exists()


@pytest.mark.parametrize("edit, line", [
    (lambda p: p["origin"].update(n_questions=25),
     "tune@gemma270m/trivia (tune.trivia.rows) and origin@smollm2/nq_open (origin.n_questions) "
     "share 5 nq_open questions (e.g. 'nq_00020')"),
    (lambda p: p["origin"]["families"]["gemma270m"]["n_questions"].update(nq_open=22),
     "tune@gemma270m/trivia (tune.trivia.rows) and origin@gemma270m/nq_open "
     "(origin.families.gemma270m.n_questions.nq_open) share 2 nq_open questions (e.g. 'nq_00020')"),
    (lambda p: p["detect"]["n_questions"].update(nq_open=21),
     "tune@gemma270m/trivia (tune.trivia.rows) and detect@smollm2/nq_open (detect.n_questions.nq_open) "
     "share 1 nq_open question (e.g. 'nq_00020')"),
])
def test_counts_reaching_into_tune_rows_stop_with_one_line(tmp_path, edit, line):
    write_layout(tmp_path, edit)
    done = check_rows(tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: row overlap: {line}"]
    assert not (tmp_path / "reports/check_rows.json").exists()


def test_moving_tune_rows_moves_detect_limit(tmp_path):
    write_layout(tmp_path, lambda p: p["tune"]["trivia"].update(rows=[12, 22]))
    done = check_rows(tmp_path)
    assert done.returncode == 0, done.stderr
    uses = json.loads((tmp_path / "reports/check_rows.json").read_text(encoding="utf-8"))["uses"]
    assert uses["detect@smollm2/nq_open"]["n_questions"] == 12 and uses["tune@gemma270m/trivia"]["n_questions"] == 10


def _real_prepared(tmp_path: Path) -> Path:
    """The committed layout's prepared tables: $HNEURONS_PREPARED_DIR, else this checkout's data/prepared,
    else prepared here from data/raw by the prepare stage (a clean clone has no DVC outputs)."""
    for candidate in (os.environ.get("HNEURONS_PREPARED_DIR"), ROOT / "data/prepared"):
        if candidate and all((Path(candidate) / f"{name}.parquet").is_file() for name in PREPARED):
            return Path(candidate)
    work = tmp_path / "prepare"
    (work / "data").mkdir(parents=True)
    (work / "data/raw").symlink_to(ROOT / "data/raw")
    (work / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in PREPARED:
        done = subprocess.run([sys.executable, "-m", "stages.prepare", name], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    return work / "data/prepared"


def test_committed_params_pass_on_the_real_prepared_tables(tmp_path):
    source = _real_prepared(tmp_path)
    (tmp_path / "data/prepared").mkdir(parents=True)
    for name in PREPARED:
        (tmp_path / f"data/prepared/{name}.parquet").symlink_to(source / f"{name}.parquet")
    (tmp_path / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    done = check_rows(tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "reports/check_rows.json").read_text(encoding="utf-8"))
    assert report["overlaps"] == [] and report["uses"]["tune@gemma270m/trivia"]["n_questions"] == 1000


def test_dvc_stage_reads_every_prepared_table_and_runs_before_the_report():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    datasets = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["datasets"]
    assert {f"data/prepared/{name}.parquet" for name in datasets} <= set(stages["check_rows"]["deps"])
    assert stages["check_rows"]["metrics"] == [{"reports/check_rows.json": {"cache": False}}]
    assert "reports/check_rows.json" in stages["report"]["deps"]
