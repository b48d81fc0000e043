"""stages.config: every key of params.yaml is known and typed; a typo stops a stage with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hneurons.errors import HNeuronsError
from stages.config import Config, ProbeSection, load_config
from stages.config import from_mapping as validate
from tests.pipeline_utils import tiny_params

ROOT = Path(__file__).resolve().parents[1]


def _params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def test_committed_and_tiny_params_validate():
    validate(_params())
    validate(tiny_params())


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["sample"]["decoding"].update(temprature=1.0),
     "sample.decoding.temprature: unknown key (did you mean sample.decoding.temperature?)"),
    (lambda p: p["sample"].update(temperature=1.0), "sample.temperature: unknown key (did you mean sample.decoding.temperature?)"),
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
    (lambda p: p["probe"].update(C_grid=[1.0, -3]), "probe.C_grid: every C must be a finite number > 0 (got -3)"),
    (lambda p: p["probe"].update(C_grid=[]), "probe.C_grid: expected a non-empty list of numbers > 0"),
    (lambda p: p["probe"].update(labelling="2-vs-2"), "probe.labelling='2-vs-2': expected one of 3-vs-1, 1-vs-1"),
    (lambda p: p["probe"]["task"].update(batch_size=0), "probe.task.batch_size=0: expected an integer >= 1"),
    (lambda p: p["probe"].update(families={"smollm2": {"n_random_seeds": 2}}),
     "probe.families.smollm2.n_random_seeds=2: expected an integer >= 5"),
    (lambda p: p["probe"].update(families={"smollm2": {"task": {"alpah": 1}}}),
     "probe.families.smollm2.task.alpah: unknown key (did you mean probe.families.smollm2.task.alpha?)"),
    (lambda p: p["detect"]["decoding"]["nonexist"].update(top_p="0.9"), "detect.decoding.nonexist.top_p: expected number"),
])
def test_unknown_or_mistyped_key_names_it(edit, message):
    params = _params()
    edit(params)
    with pytest.raises(HNeuronsError) as info:
        validate(params)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_typed_sections_and_family_overrides():
    config = load_config(ROOT / "params.yaml")
    assert isinstance(config, Config) and isinstance(config.probe, ProbeSection)
    assert config.probe.C_grid == [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]          # sorted floats, checked once
    assert config.raw["probe"]["C_grid"] == [0.1, 0.3, 1, 3, 10, 30]        # as written, for lineage
    gemma = config.family("sample", "gemma270m")
    assert (gemma.sample.n_questions, gemma.sample.decoding.max_new_tokens, gemma.sample.decoding.top_p) == (1600, 32, 0.9)
    assert (config.sample.n_questions, config.sample.decoding.max_new_tokens) == (None, 50)
    decoding = config.intervene.decoding.falseqa                            # omitted top_k/top_p: defaults
    assert (decoding.temperature, decoding.top_k, decoding.top_p, decoding.max_new_tokens) == (0, 50, 0.9, 32)
    from stages._generation import decoding_settings

    assert decoding_settings(decoding, where="intervene.decoding.falseqa").greedy
    with pytest.raises(HNeuronsError, match=r"^sample.families: 'huge' is not listed \(smollm2, gemma270m\)$"):
        config.family("sample", "huge")
    with pytest.raises(Exception):
        config.probe.tol = 1.0                                              # frozen


def test_malformed_yaml_is_one_line_with_its_position(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("base:\n  seed: 1\n bad: [\n", encoding="utf-8")
    with pytest.raises(HNeuronsError, match=r"params.yaml: line 3, column 2: malformed YAML"):
        load_config(path)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_check_command_and_a_stage_stop_on_a_typo_with_exit_2(tmp_path):
    params = _params()
    params["sample"]["decoding"]["temprature"] = 1.0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    for args in (["-m", "stages.config"], ["-m", "stages.prepare", "triviaqa"]):
        done = _run(args, tmp_path)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            "error: params.yaml: sample.decoding.temprature: unknown key (did you mean sample.decoding.temperature?)"]
    good = _run(["-m", "stages.config", str(ROOT / "params.yaml")], tmp_path)
    assert good.returncode == 0 and f"ok ({len(_params())} sections)" in good.stdout
