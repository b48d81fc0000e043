"""The real dvc.yaml on a tiny profile: what runs, what reruns after a param change, what stays put."""

from __future__ import annotations

import os
import subprocess

import pytest

from pipeline_utils import make_repo, pipeline_env, set_param, tiny_params


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("pipeline")
    repo = make_repo(tmp / "repo", tiny_params(), tiny_model_dir)
    old_env, old_cwd = dict(os.environ), os.getcwd()
    os.environ.update(pipeline_env(tmp))
    os.chdir(repo)
    try:
        from dvc.repo import Repo

        yield repo, Repo(str(repo))
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


def _ran(stages) -> set[str]:
    return {stage.addressing for stage in stages}


def test_first_repro_runs_every_stage(pipeline):
    repo, dvc = pipeline
    ran = _ran(dvc.reproduce())
    expected = {f"prepare@{name}" for name in ("triviaqa", "nq_open", "bioasq", "nonexist", "falseqa",
                                                "sycophancy", "jailbreak", "faitheval_style")}
    expected |= {"model@tiny-instruct", "sample@tiny", "extract@tiny-instruct-triviaqa", "probe@tiny", "origin@tiny"}
    assert expected <= ran, sorted(ran)
    assert (repo / "models/llm/tiny/instruct/fingerprint.json").is_file()
    assert (repo / "data/prepared/triviaqa.parquet").is_file()
    assert (repo / "data/activations/tiny/instruct/triviaqa.parquet").is_file()
    assert (repo / "reports/probe/tiny/metrics.json").is_file()
    assert dvc.status() == {}


def test_param_change_reruns_only_that_stage_and_dependents(pipeline):
    repo, dvc = pipeline
    set_param(repo, "datasets.nq_open.rows", [0, 15])
    ran = _ran(dvc.reproduce())
    assert ran == {"prepare@nq_open", "origin@tiny"}, sorted(ran)  # origin reads nq_open (backward transfer)
    import pyarrow.parquet as pq

    assert pq.read_metadata(repo / "data/prepared/nq_open.parquet").num_rows == 15


def test_probe_param_change_reruns_probe_and_dependents_only(pipeline):
    repo, dvc = pipeline
    set_param(repo, "probe.C_grid", [1, 10])
    ran = _ran(dvc.reproduce())
    assert "probe@tiny" in ran
    assert not ran & {"sample@tiny", "extract@tiny-instruct-triviaqa", "model@tiny-instruct"}, sorted(ran)
    assert ran <= {"probe@tiny", "origin@tiny"}, sorted(ran)


def test_noop_repro_runs_nothing(pipeline):
    repo, dvc = pipeline
    assert _ran(dvc.reproduce()) == set()
    assert dvc.status() == {}


def test_cli_status_is_clean(pipeline):
    repo, _ = pipeline
    result = subprocess.run(["dvc", "status"], cwd=repo, capture_output=True, text=True, env=os.environ)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout.lower(), result.stdout


def test_bad_dataset_name_is_one_line_error(pipeline):
    repo, _ = pipeline
    result = subprocess.run(["python", "-m", "stages.prepare", "imagenet"], cwd=repo, capture_output=True,
                            text=True, env=os.environ)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: datasets.imagenet: unknown (known: bioasq, faitheval_style, falseqa, " \
                                    "jailbreak, nonexist, nq_open, sycophancy, triviaqa)"
