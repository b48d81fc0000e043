"""The real dvc.yaml on a tiny profile: what runs, what reruns after a param change, what stays put,
and whether two clean reproductions write byte-identical outputs.

One module-scoped repository runs the whole graph once; a git clone of its first commit
runs it a second time from clean (determinism, then a probe experiment for
``dvc metrics diff`` / ``dvc plots diff`` and the lineage audit). Two tiny pipelines in
all: the slowest tests of the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from hneurons import layout
from hneurons.dvc_lock import lock_output_hashes
from pipeline_utils import git, make_repo, pipeline_env, set_param, tiny_params

pytestmark = pytest.mark.pipeline

PREPARED = ("triviaqa", "nq_open", "bioasq", "nonexist", "falseqa", "sycophancy", "jailbreak", "faitheval_style")
STAGES = {f"prepare@{name}" for name in PREPARED} | {
    "model@tiny-instruct", "model@tiny-base", "model@tinytune-base", "tune@tinytune", "sample@tiny",
    "extract@tiny-instruct-triviaqa", "probe@tiny", "origin@tiny", "detect@tiny", "intervene@tiny", "check_rows",
    "report"}
PROBE_METRICS = layout.report_dir("probe", "tiny") / layout.METRICS
INTERVENE_COMPLIANCE = layout.report_dir("intervene", "tiny") / layout.INTERVENE_COMPLIANCE_CSV


def sh(repo, *args, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=repo, env=os.environ, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_model_dir):
    """(repo, dvc Repo, state): ``state['first_lock']`` holds the output hashes of the first repro."""
    tmp = tmp_path_factory.mktemp("pipeline")
    repo = make_repo(tmp / "repo", tiny_params(), tiny_model_dir)
    old_env, old_cwd = dict(os.environ), os.getcwd()
    os.environ.update(pipeline_env(tmp))
    os.chdir(repo)
    try:
        from dvc.repo import Repo

        yield repo, Repo(str(repo)), {}
    finally:
        os.chdir(old_cwd)
        os.environ.clear()
        os.environ.update(old_env)


@pytest.fixture(scope="module")
def second(pipeline):
    """A git clone of the first repo's tiny-profile commit, reproduced from clean with the dvc CLI."""
    repo, _, _ = pipeline
    clone = repo.parent / "second"
    git(repo.parent, "clone", "-q", str(repo), str(clone))
    sh(clone, "dvc", "repro")
    return clone


def _ran(stages) -> set[str]:
    return {stage.addressing for stage in stages}


def test_first_repro_runs_every_stage(pipeline):
    repo, dvc, state = pipeline
    ran = _ran(dvc.reproduce())
    assert STAGES <= ran, sorted(STAGES - ran)
    assert dvc.status() == {}
    state["first_lock"] = lock_output_hashes(repo / "dvc.lock")
    assert (repo / layout.model_dir("tiny", "instruct") / "fingerprint.json").is_file()
    run = layout.activation_run("tiny", "instruct", "triviaqa", "tiny-instruct-triviaqa")
    assert (repo / run / "manifest.json").is_file()
    assert json.loads((repo / PROBE_METRICS).read_text())["chosen_C"] in (1, 10, 100)


def test_every_model_stage_records_its_device_and_dtype(pipeline):
    repo, _, _ = pipeline
    stages = ("sample", "probe", "detect", "intervene")
    metrics = {stage: layout.report_dir(stage, "tiny") / layout.METRICS for stage in stages}
    metrics.update(extract=layout.extract_report("tiny", "instruct", "triviaqa", "tiny-instruct-triviaqa"),
                   origin=layout.origin_metrics("tiny"), tune=layout.report_dir("tune", "tinytune") / layout.METRICS)
    for stage, path in metrics.items():
        machine = json.loads((repo / path).read_text())["machine"]
        assert (machine["device"], machine["dtype"], machine["threads"]) == ("cpu", "float32", 1), stage


def test_detect_writes_table1_and_judge_agreement(pipeline):
    repo, _, _ = pipeline
    metrics = json.loads((repo / layout.report_dir("detect", "tiny") / layout.METRICS).read_text())
    h = metrics["datasets"]["triviaqa"]["h_neurons"]
    assert 0 <= h["accuracy"] <= 1 and 0 <= h["auroc"] <= 1 and h["n"] > 0
    assert metrics["judge_agreement"]["hand_labels"]["n"] >= 50
    table = (repo / layout.report_dir("detect", "tiny") / layout.DETECT_TABLE1_CSV).read_text().splitlines()
    assert table[0].split(",")[:2] == ["neurons", "TriviaQA"]
    assert {line.split(",")[0] for line in table[1:]} == {"Random", "H-Neurons"}
    responses = pq.read_table(repo / layout.data_dir("detect", "tiny") / layout.DETECT_RESPONSES)
    assert responses.num_rows == 12


def test_intervene_sweeps_alpha_for_h_and_random_neurons(pipeline):
    repo, _, _ = pipeline
    lines = (repo / INTERVENE_COMPLIANCE).read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    assert {(r["benchmark"], r["neurons"], float(r["alpha"])) for r in rows} == {
        ("falseqa", neurons, alpha) for neurons in ("h_neurons", "random") for alpha in (0.0, 1.0)}
    assert all(0 <= float(r["compliance"]) <= 100 for r in rows if r["compliance"])
    assert (repo / layout.report_dir("intervene", "tiny") / layout.METRICS).is_file()


def test_tune_writes_a_twin_of_the_base(pipeline):
    repo, _, _ = pipeline
    base, twin = (json.loads((repo / layout.model_dir("tinytune", role) / "fingerprint.json").read_text())
                  for role in ("base", "instruct"))
    assert twin["source"]["kind"] == "tune" and twin["source"]["base_fingerprint"] == base["fingerprint"]
    assert twin["weights_sha256"] != base["weights_sha256"] and twin["n_neurons"] == base["n_neurons"]
    loss = repo / layout.report_dir("tune", "tinytune") / layout.TUNE_LOSS_CSV
    assert len(loss.read_text().splitlines()) == 1 + 2  # header + 2 steps
    instructions = repo / layout.data_dir("tune", "tinytune") / layout.TUNE_INSTRUCTIONS
    assert pq.read_metadata(instructions).num_rows == 4 * (3 + 1)


def test_origin_ranks_drift_and_transfers_the_probe_to_the_base(pipeline):
    repo, _, _ = pipeline
    metrics = json.loads((repo / layout.origin_metrics("tiny")).read_text())
    probe = json.loads((repo / PROBE_METRICS).read_text())
    assert "skipped" not in metrics and metrics["n_h_neurons"] == probe["n_h_neurons"] > 0
    for variant in ("global", "per_layer"):
        h = metrics["drift"][variant]["h_neurons"]
        assert h["n"] == metrics["n_h_neurons"] and 0 <= h["mean_rank"] <= 1 and 0 <= h["p_value"] <= 1
    drift = pq.read_table(repo / layout.data_dir("origin", "tiny") / layout.ORIGIN_DRIFT).to_pandas()
    assert len(drift) == metrics["n_neurons"] and drift["rank"].between(0, 1).all()
    assert (drift["drift_up"] > 0).all() and (drift["drift_down"] > 0).all()  # every weight was perturbed
    assert set(metrics["transfer"]) == {"triviaqa", "nq_open", "bioasq"}
    trivia = metrics["transfer"]["triviaqa"]
    assert trivia["n_correct"] > 0 and trivia["n_wrong"] > 0, trivia
    assert 0 <= trivia["auroc"] <= 1 and trivia["auroc_ci95"][0] <= trivia["auroc"] <= trivia["auroc_ci95"][1]
    assert (repo / layout.report_dir("origin", "tiny") / layout.ORIGIN_STRIP).is_file()


def test_report_summarises_every_stage(pipeline):
    repo, _, _ = pipeline
    summary = (repo / layout.SUMMARY_MD).read_text()
    assert "## Deviations from the paper" in summary
    for path in (PROBE_METRICS, layout.report_dir("detect", "tiny") / layout.METRICS, INTERVENE_COMPLIANCE):
        assert path.as_posix() in summary, path
    assert (repo / layout.FIGURES / "identification_tiny.png").is_file()
    assert json.loads((repo / layout.SUMMARY_JSON).read_text())["families"]["tiny"]["identification"]["chosen_C"]


def test_two_clean_reproductions_lock_identical_outputs(pipeline, second):
    _, _, state = pipeline
    first, again = state["first_lock"], lock_output_hashes(second / "dvc.lock")
    outputs = (layout.SUMMARY_MD, layout.probe_dir("tiny"), layout.data_dir("detect", "tiny"),
               layout.data_dir("intervene", "tiny"), layout.samples("tiny", "triviaqa"),
               layout.model_dir("tinytune", "instruct"), layout.data_dir("origin", "tiny"))
    assert {p.as_posix() for p in outputs} <= set(first)
    assert all(first.values()), [path for path, value in first.items() if not value]
    differing = sorted(path for path in first.keys() | again.keys() if first.get(path) != again.get(path))
    assert not differing, f"outputs differ between two clean runs: {differing}"


def test_param_change_reruns_only_that_stage_and_dependents(pipeline):
    repo, dvc, _ = pipeline
    set_param(repo, "datasets.nq_open.rows", [0, 15])
    ran = _ran(dvc.reproduce())
    # origin, detect, tune and check_rows read nq_open; the report reads their reports
    assert ran == {"prepare@nq_open", "origin@tiny", "detect@tiny", "tune@tinytune", "check_rows", "report"}, \
        sorted(ran)
    assert pq.read_metadata(repo / layout.prepared("nq_open")).num_rows == 15


def test_probe_param_change_reruns_probe_and_dependents_only(pipeline):
    repo, dvc, _ = pipeline
    set_param(repo, "probe.C_grid", [1, 10])
    ran = _ran(dvc.reproduce())
    assert "probe@tiny" in ran
    assert not ran & {"sample@tiny", "extract@tiny-instruct-triviaqa", "model@tiny-instruct"}, sorted(ran)
    assert ran <= {"probe@tiny", "origin@tiny", "detect@tiny", "intervene@tiny", "report"}, sorted(ran)


def test_noop_repro_runs_nothing(pipeline):
    repo, dvc, _ = pipeline
    assert _ran(dvc.reproduce()) == set()
    assert dvc.status() == {}


def test_cli_status_is_clean(pipeline):
    repo, _, _ = pipeline
    result = sh(repo, "dvc", "status")
    assert "up to date" in result.stdout.lower(), result.stdout


def test_probe_experiment_shows_in_metrics_and_plots_diff(second):
    repo = second
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-qm", "baseline run")
    metrics = json.loads((repo / PROBE_METRICS).read_text())
    grid = [row["C"] for row in metrics["C_selection"]["grid"]]
    chosen = metrics["chosen_C"]
    new_grid = [c for c in grid if c != chosen]  # the chosen C leaves the grid, so the choice must change
    sh(repo, "dvc", "exp", "run", "-S", f"probe.C_grid={json.dumps(new_grid)}")

    # stdout: the JSON, then possibly a note on metrics files missing in a revision
    diff, _ = json.JSONDecoder().raw_decode(sh(repo, "dvc", "metrics", "diff", "--json").stdout)
    assert diff["reports/probe/tiny/metrics.json"]["chosen_C"]["old"] == chosen
    assert diff["reports/probe/tiny/metrics.json"]["chosen_C"]["new"] in new_grid
    assert diff["reports/summary.json"]["families.tiny.identification.chosen_C"]["new"] in new_grid
    assert "sample" not in json.dumps(sorted(diff))  # upstream of the probe: unchanged, not in the diff

    plots, _ = json.JSONDecoder().raw_decode(sh(repo, "dvc", "plots", "diff", "--json", "HEAD").stdout)
    wanted = {"reports/probe/tiny/c_grid.csv", "reports/intervene/tiny/compliance.csv",
              "reports/figure_data/detection.csv", "reports/figure_data/compliance.csv"}
    assert wanted <= set(plots["data"])
    assert not [e for e in plots.get("errors") or [] if e.get("source") in wanted]
    revisions = {rev for item in plots["data"]["reports/probe/tiny/c_grid.csv"] for rev in item["revisions"]}
    assert revisions == {"HEAD", "workspace"}


def test_audit_names_the_producer_and_rejects_unproduced_paths(second):
    ok = sh(second, sys.executable, "-m", "hneurons.lineage", "reports/summary.md", "--no-workspace")
    assert ok.stdout.startswith("reports/summary.md: written by stage report (output reports/summary.md)")
    assert "<- stage probe@tiny" in ok.stdout
    bad = sh(second, sys.executable, "-m", "hneurons.lineage", "reports/nowhere.md", check=False)
    assert bad.returncode == 2
    assert bad.stderr == "error: reports/nowhere.md: not produced by any stage in dvc.lock\n"
    assert bad.stdout == ""


def test_bad_dataset_name_is_one_line_error(pipeline):
    repo, _, _ = pipeline
    result = sh(repo, "python", "-m", "stages.prepare", "imagenet", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: datasets.imagenet: unknown (known: bioasq, faitheval_style, falseqa, " \
                                    "jailbreak, nonexist, nq_open, sycophancy, triviaqa)"
