"""hneurons.compare: changed metrics classified as float noise, inside / outside the committed CI, or no CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hneurons.compare import FLOAT, INSIDE, NO_CI, OUTSIDE, ci_of, classify, machine_changes

RATE = {"ci_hi": 46.9, "ci_hi_parsed": 55.6, "ci_lo": 15.6, "ci_lo_parsed": 18.5, "compliance": 31.25,
        "compliance_parsed": 37.0, "n": 32, "n_parsed": 27, "parse_failure_rate": 15.6}


def test_ci_is_read_next_to_the_number_it_belongs_to():
    assert ci_of({"accuracy": 0.8, "accuracy_ci95": [0.7, 0.9], "auroc": 0.85}, "accuracy") == (0.7, 0.9)
    assert ci_of({"accuracy": 0.8, "accuracy_ci95": [0.7, 0.9], "auroc": 0.85}, "auroc") is None
    assert ci_of(RATE, "compliance") == (15.6, 46.9)
    assert ci_of(RATE, "compliance_parsed") == (18.5, 55.6)
    assert ci_of(RATE, "parse_failure_rate") is None and ci_of(RATE, "n") is None
    assert ci_of({"diff_ci_hi": 22.5, "diff_ci_lo": -6.25, "diff_pp": 7.5, "h_pp": 31.25}, "diff_pp") == (-6.25, 22.5)
    assert ci_of({"diff_ci_hi": 22.5, "diff_ci_lo": -6.25, "diff_pp": 7.5, "h_pp": 31.25}, "h_pp") is None


def test_classify_float_noise_inside_outside_and_no_ci():
    committed = {"test": {"probe": {"accuracy": 0.8, "accuracy_ci95": [0.7, 0.9]}}, "kkt": 0.5}
    assert classify("m.json", "test.probe.accuracy", 0.8, 0.8 + 1e-12, committed).verdict == FLOAT
    assert classify("m.json", "test.probe.accuracy", 0.8, 0.85, committed).verdict == INSIDE
    outside = classify("m.json", "test.probe.accuracy", 0.8, 0.95, committed)
    assert outside.verdict == OUTSIDE and outside.ci == (0.7, 0.9)
    assert classify("m.json", "kkt", 0.5, 0.51, committed).verdict == NO_CI
    assert classify("m.json", "family", "a", "b", committed) is None


def test_machine_changes_list_only_differing_facts():
    old = {"machine": {"cpu": "Xeon A", "threads": 2, "torch": "2.13.0+cpu"}}
    new = {"machine": {"cpu": "EPYC B", "threads": 2, "torch": "2.13.0+cpu"}}
    assert machine_changes(old, new) == {"cpu": ("Xeon A", "EPYC B")}
    assert machine_changes(old, old) == {}


def test_cli_on_a_dvc_repo_exits_1_only_when_a_number_leaves_its_ci(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def sh(*args):
        return subprocess.run(list(args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    assert sh("git", "init", "-q").returncode == 0 and sh("dvc", "init", "-q").returncode == 0
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - m.json\n", encoding="utf-8")
    metrics = {"acc": 0.8, "acc_ci95": [0.7, 0.9], "n": 48, "machine": {"cpu": "A", "threads": 2}}
    (tmp_path / "m.json").write_text(json.dumps(metrics), encoding="utf-8")
    assert sh("git", "add", "-A").returncode == 0 and sh("git", "commit", "-qm", "c").returncode == 0
    (tmp_path / "m.json").write_text(json.dumps({**metrics, "acc": 0.85, "machine": {"cpu": "B", "threads": 2}}),
                                     encoding="utf-8")
    inside = sh(sys.executable, "-m", "hneurons.compare")
    assert inside.returncode == 0, inside.stderr
    assert "inside committed CI 1" in inside.stdout and "cpu 'A' -> 'B'" in inside.stdout
    (tmp_path / "m.json").write_text(json.dumps({**metrics, "acc": 0.95}), encoding="utf-8")
    outside = sh(sys.executable, "-m", "hneurons.compare")
    assert outside.returncode == 1 and "outside_ci m.json:acc  0.8 -> 0.95" in outside.stdout
