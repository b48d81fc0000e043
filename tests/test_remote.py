"""Several machines (README "Several machines"): an S3 remote shared through `dvc push --run-cache`, and
param sweeps through the experiments queue.

A tiny self-contained DVC project (not the hneurons pipeline) whose stage commands append their name to a
counter file outside the repo, so a test can tell whether a command ran or its outputs were restored. The
remote is moto's S3 server on 127.0.0.1 (a free port, stopped after the test); credentials are dummies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.pipeline

BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc")

# Each command appends its stage name to $COUNTER (outside the repo), then writes its output.
MAKE = ("python -c \"import os, yaml; open(os.environ['COUNTER'], 'a').write('make\\n'); "
        "n = yaml.safe_load(open('params.yaml'))['n']; "
        "open('a.txt', 'w').write(''.join(f'{i}\\n' for i in range(n)))\"")
DOUBLE = ("python -c \"import os; open(os.environ['COUNTER'], 'a').write('double\\n'); "
          "open('b.txt', 'w').write(open('a.txt').read() * 2)\"")
COUNT = ("python -c \"import os; open(os.environ['COUNTER'], 'a').write('count\\n'); "
         "open('c.txt', 'w').write(str(len(open('b.txt').readlines())) + '\\n')\"")


def expected(n: int) -> tuple[bytes, bytes]:
    a = "".join(f"{i}\n" for i in range(n)).encode()
    return a, a * 2


def make_env(tmp_path: Path, counter: Path) -> dict[str, str]:
    """This venv first on PATH; HOME, git, DVC and AWS configuration isolated from the machine's."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DVC_", "GIT_"))}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "COUNTER": str(counter),
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(home / "dvc-site"),
        "DVC_GLOBAL_CONFIG_DIR": str(home / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(home / "dvc-system"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    })
    return env


def runner(cwd: Path, env: dict[str, str]):
    def run(*args: str) -> str:
        proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr
    return run


def init_project(repo: Path, run, n: int, count_stage: bool = False) -> None:
    repo.mkdir()
    run("git", "init", "-q")
    run(DVC, "init", "-q")
    (repo / "params.yaml").write_text(f"n: {n}\n")
    stages = {"make": {"cmd": MAKE, "params": ["n"], "outs": ["a.txt"]},
              "double": {"cmd": DOUBLE, "deps": ["a.txt"], "outs": ["b.txt"]}}
    if count_stage:
        stages["count"] = {"cmd": COUNT, "deps": ["b.txt"], "outs": ["c.txt"]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False, width=1000))


def set_n(repo: Path, n: int) -> None:
    (repo / "params.yaml").write_text(f"n: {n}\n")


def ran(counter: Path) -> list[str]:
    return counter.read_text().split() if counter.exists() else []


def outputs(repo: Path) -> tuple[bytes, bytes]:
    return (repo / "a.txt").read_bytes(), (repo / "b.txt").read_bytes()


@pytest.fixture
def s3_endpoint(monkeypatch):
    """moto's S3 server on 127.0.0.1 (free port) with an empty bucket 'shared'; stopped afterwards."""
    import boto3
    from moto.server import ThreadedMotoServer

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    werkzeug_log = logging.getLogger("werkzeug")   # one INFO line per S3 request otherwise
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="shared")
        yield url
    finally:
        server.stop()
        werkzeug_log.setLevel(level)


def test_a_clone_reuses_the_remote_and_its_run_cache_and_runs_only_what_no_machine_ran(
        tmp_path, s3_endpoint):
    # Machine A (the GPU host) runs the model-like stages: all three at n=5 (a sweep point), then `make` and
    # `double` at n=3 (committed), pushing after each run: `--run-cache` sends the run records, while outputs
    # go up only with the workspace (or revisions) being pushed.
    counter_a, counter_b = tmp_path / "counter-a", tmp_path / "counter-b"
    repo_a = tmp_path / "a"
    run_a = runner(repo_a, make_env(tmp_path, counter_a))
    init_project(repo_a, run_a, n=5, count_stage=True)
    run_a(DVC, "remote", "add", "-d", "shared", "s3://shared/dvc")
    run_a(DVC, "remote", "modify", "shared", "endpointurl", s3_endpoint)   # committed; credentials are not
    run_a(DVC, "repro")
    a5, c5 = outputs(repo_a), (repo_a / "c.txt").read_bytes()
    assert "pushed" in run_a(DVC, "push", "--run-cache")
    set_n(repo_a, 3)
    run_a(DVC, "repro", "double")
    a3 = outputs(repo_a)
    assert (a5, c5, a3) == (expected(5), b"10\n", expected(3))
    assert ran(counter_a) == ["make", "double", "count", "make", "double"]   # it sees every command that runs
    run_a("git", "add", "-A")
    run_a("git", "commit", "-q", "-m", "tiny project, n=3")
    assert "pushed" in run_a(DVC, "push", "--run-cache")
    config = (repo_a / ".dvc/config").read_text()
    assert s3_endpoint in config and "testing" not in config

    # Machine B: a git clone; its DVC cache starts empty, everything comes from the remote.
    repo_b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(repo_a), str(repo_b)], check=True, capture_output=True,
                   env=make_env(tmp_path, counter_b))
    run_b = runner(repo_b, make_env(tmp_path, counter_b))

    # `make` and `double` match dvc.lock: skipped, not rerun. `count` never ran at n=3: it runs, and its
    # missing input b.txt is pulled for it; a.txt, which no stage that runs needs, is not downloaded.
    log = run_b(DVC, "repro", "--pull", "--allow-missing")
    assert "Stage 'make' didn't change, skipping" in log and "Stage 'double' didn't change, skipping" in log
    assert ran(counter_b) == ["count"]
    assert not (repo_b / "a.txt").exists()
    assert (repo_b / "b.txt").read_bytes() == a3[1] and (repo_b / "c.txt").read_bytes() == b"6\n"

    # `dvc pull` brings the rest: every output byte-identical to A's, nothing left to do.
    run_b(DVC, "pull")
    assert outputs(repo_b) == a3
    assert "Data and pipelines are up to date." in run_b(DVC, "status")

    # A param value that B's dvc.lock does not know but A ran: all three stages come from the remote's
    # run-cache; not one command runs.
    set_n(repo_b, 5)
    log = run_b(DVC, "repro", "--pull", "--allow-missing")
    for stage in ("make", "double", "count"):
        assert f"Stage '{stage}' is cached - skipping run" in log, log
    assert outputs(repo_b) == a5 and (repo_b / "c.txt").read_bytes() == c5
    assert "Data and pipelines are up to date." in run_b(DVC, "status")

    assert ran(counter_b) == ["count"]                        # B ran only the stage no machine had run
    assert ran(counter_a) == ["make", "double", "count", "make", "double"]


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def worker_stopped(repo: Path) -> bool:
    """True when no exp queue worker of this repo is alive (dvc-task writes its returncode on exit)."""
    for info in (repo / ".dvc/tmp/exps/celery").glob("dvc-exp-worker-*.json"):
        state = json.loads(info.read_text())
        if state.get("returncode") is not None:
            continue
        try:
            stat = Path(f"/proc/{state['pid']}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            return False
    return True


def test_two_queued_experiments_run_in_one_worker_and_appear_in_exp_show(tmp_path):
    counter = tmp_path / "counter"
    repo = tmp_path / "repo"
    run = runner(repo, make_env(tmp_path, counter))
    init_project(repo, run, n=3)
    run(DVC, "repro")
    run("git", "add", "-A")
    run("git", "commit", "-q", "-m", "tiny project, n=3")
    assert ran(counter) == ["make", "double"]

    run(DVC, "exp", "run", "--queue", "-S", "n=4")
    run(DVC, "exp", "run", "--queue", "-S", "n=6")
    assert ran(counter) == ["make", "double"]                  # queued, not run
    try:
        run(DVC, "queue", "start", "-j", "1")

        def finished() -> bool:
            tasks = [line.split() for line in run(DVC, "queue", "status").splitlines()[1:]]
            states = [t[-1] for t in tasks if len(t) >= 4 and t[-1] in {"Queued", "Running", "Success", "Failed"}]
            assert "Failed" not in states, run(DVC, "queue", "status")
            return len(states) == 2 and set(states) == {"Success"}

        assert wait_until(finished, 90), "the two queued experiments did not finish within 90 s"
    finally:
        subprocess.run([DVC, "queue", "stop", "--kill"], cwd=repo, env=make_env(tmp_path, counter),
                       capture_output=True, timeout=60)
        stopped = wait_until(lambda: worker_stopped(repo), 60)
    assert stopped, "the exp queue worker did not exit within 60 s of `dvc queue stop`"

    assert ran(counter) == ["make", "double"] * 3              # each experiment ran both stages once
    shown = json.loads(run(DVC, "exp", "show", "--json"))
    exps = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                n = data["params"]["params.yaml"]["data"]["n"]
                exps[n] = (rev["name"], exp["executor"]["state"],
                           data["outs"]["a.txt"]["hash"], data["outs"]["b.txt"]["hash"])
    assert sorted(exps) == [4, 6], shown
    for n, (name, state, hash_a, hash_b) in exps.items():
        a, b = expected(n)
        assert name and state == "success"
        assert (hash_a, hash_b) == (hashlib.md5(a).hexdigest(), hashlib.md5(b).hexdigest())
    assert (repo / "params.yaml").read_text() == "n: 3\n" and outputs(repo) == expected(3)
