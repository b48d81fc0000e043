"""stages.params_schema: every key of params.yaml is known and typed; a typo stops a stage with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hneurons.errors import HNeuronsError
from stages._common import load_params
from stages.params_schema import validate
from tests.pipeline_utils import tiny_params

ROOT = Path(__file__).resolve().parents[1]


def _params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def test_committed_and_tiny_params_validate():
    validate(_params())
    validate(tiny_params())


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["sample"].update(temprature=1.0), "sample.temprature: unknown key (did you mean sample.temperature?)"),
    (lambda p: p["report"].update(familes=["smollm2"]), "report.familes: unknown key (did you mean report.families?)"),
    (lambda p: p["detect"]["decoding"]["nonexist"].update(top_kk=5),
     "detect.decoding.nonexist.top_kk: unknown key (did you mean detect.decoding.nonexist.top_k?)"),
    (lambda p: p["sample"]["families"]["smollm2"].update(n_question=5),
     "sample.families.smollm2.n_question: unknown key (did you mean sample.families.smollm2.n_questions?)"),
    (lambda p: p["models"]["smollm2-instruct"]["source"].update(shaa256="0"), "models.smollm2-instruct.source.shaa256"),
    (lambda p: p.update(bse={}), "bse: unknown key (did you mean base?)"),
    (lambda p: p["base"].update(seed="abc"), "base.seed: expected int, got 'abc'"),
    (lambda p: p["base"].update(threads=True), "base.threads: expected int, got True"),
    (lambda p: p["tune"].update(lr="2e-5"), "tune.lr: expected number, got '2e-5' (YAML 1.1 reads 2e-5 as text"),
    (lambda p: p["sample"].update(splits=[0.6, 0.2, 0.2]), "sample.splits: expected a mapping"),
])
def test_unknown_or_mistyped_key_names_it(edit, message):
    params = _params()
    edit(params)
    with pytest.raises(HNeuronsError) as info:
        validate(params)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_malformed_yaml_is_one_line_with_its_position(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("base:\n  seed: 1\n bad: [\n", encoding="utf-8")
    with pytest.raises(HNeuronsError, match=r"params.yaml: line 3, column 2: malformed YAML"):
        load_params(path)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_check_command_and_a_stage_stop_on_a_typo_with_exit_2(tmp_path):
    params = _params()
    params["sample"]["temprature"] = 1.0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    for args in (["-m", "stages.params_schema"], ["-m", "stages.prepare", "triviaqa"]):
        done = _run(args, tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            "error: params.yaml: sample.temprature: unknown key (did you mean sample.temperature?)"]
    good = _run(["-m", "stages.params_schema", str(ROOT / "params.yaml")], tmp_path)
    assert good.returncode == 0 and f"ok ({len(_params())} sections)" in good.stdout
