"""Same params + same code => byte-identical outputs, checked on the real dvc.yaml (tiny profile).

Two fresh repositories reproduce the graph up to the report stage (prepare, model,
sample, extract, probe, origin, report: whatever `report` depends on); every output
hash in their dvc.lock files must be equal. Then one of them runs a probe-param
experiment and `dvc metrics diff` / `dvc plots diff` must show it. Slow by nature
(two tiny pipelines, a few minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hneurons.lineage import lock_output_hashes
from pipeline_utils import git, make_repo, pipeline_env, tiny_params


def sh(repo, *args, env, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("determinism")
    env = {**os.environ, **pipeline_env(tmp)}
    first = make_repo(tmp / "first", tiny_params(), tiny_model_dir)
    # a clone, not a second copy of the working tree: the same params and code even while others edit it
    git(tmp, "clone", "-q", str(first), str(tmp / "second"))
    repos = [first, tmp / "second"]
    for repo in repos:
        sh(repo, "dvc", "repro", "report", env=env)
    return repos, env


def test_two_clean_reproductions_lock_identical_outputs(runs):
    (first, second), _ = runs
    a, b = lock_output_hashes(first / "dvc.lock"), lock_output_hashes(second / "dvc.lock")
    assert {"reports/summary.md", "reports/summary.json", "reports/figures", "models/probe/tiny",
            "data/activations/tiny/instruct/triviaqa.parquet", "data/samples/tiny/triviaqa.parquet"} <= set(a)
    assert all(a.values()), [path for path, value in a.items() if not value]
    differing = sorted(path for path in a.keys() | b.keys() if a.get(path) != b.get(path))
    assert not differing, f"outputs differ between two clean runs: {differing}"


def test_probe_experiment_shows_in_metrics_and_plots_diff(runs):
    (repo, _), env = runs
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-qm", "baseline run")
    metrics = json.loads((repo / "reports/probe/tiny/metrics.json").read_text())
    grid = [row["C"] for row in metrics["C_selection"]["grid"]]
    chosen = metrics["chosen_C"]
    new_grid = [c for c in grid if c != chosen]  # the chosen C leaves the grid, so the choice must change
    sh(repo, "dvc", "exp", "run", "report", "-S", f"probe.C_grid={json.dumps(new_grid)}", env=env)

    # stdout: the JSON, then possibly a note on metrics files missing in a revision (stages not run)
    diff, _ = json.JSONDecoder().raw_decode(sh(repo, "dvc", "metrics", "diff", "--json", env=env).stdout)
    assert diff["reports/probe/tiny/metrics.json"]["chosen_C"]["old"] == chosen
    assert diff["reports/probe/tiny/metrics.json"]["chosen_C"]["new"] in new_grid
    assert diff["reports/summary.json"]["families.tiny.identification.chosen_C"]["new"] in new_grid
    assert "sample" not in json.dumps(sorted(diff))  # upstream of the probe: unchanged, not in the diff

    plots, _ = json.JSONDecoder().raw_decode(sh(repo, "dvc", "plots", "diff", "--json", "HEAD", env=env).stdout)
    wanted = {"reports/probe/tiny/c_grid.csv", "reports/figure_data/detection.csv",
              "reports/figure_data/compliance.csv", "reports/figure_data/transfer.csv"}
    assert wanted <= set(plots["data"])
    errors = [e for e in plots.get("errors") or [] if e.get("source") in wanted]  # stages not run may miss files
    assert not errors, errors
    revisions = {rev for item in plots["data"]["reports/probe/tiny/c_grid.csv"] for rev in item["revisions"]}
    assert revisions == {"HEAD", "workspace"}


def test_audit_names_the_report_stage_and_rejects_unproduced_paths(runs):
    (repo, _), env = runs
    ok = sh(repo, sys.executable, "-m", "hneurons.lineage", "reports/summary.md", "--no-workspace", env=env)
    assert ok.stdout.startswith("reports/summary.md: written by stage report (output reports/summary.md)")
    assert "<- stage probe@tiny" in ok.stdout
    bad = sh(repo, sys.executable, "-m", "hneurons.lineage", "reports/nowhere.md", env=env, check=False)
    assert bad.returncode == 2
    assert bad.stderr == "error: reports/nowhere.md: not produced by any stage in dvc.lock\n"
    assert bad.stdout == ""
