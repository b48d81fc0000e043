"""Lineage audit on a tiny real DVC + git repository built in tmp_path (no mocks of DVC or git)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hneurons.dvc_lock import find_producer, lock_output_hashes, parse_lock
from hneurons.errors import HNeuronsError
from hneurons.lineage import audit, main
from hneurons.lineage_tree import NullWorkspaceView, build_lineage, iter_nodes

ROOT = Path(__file__).resolve().parents[1]

GEN = """import sys, pathlib, yaml
key = sys.argv[1]
params = yaml.safe_load(open("params.yaml"))
raw = pathlib.Path("raw/input.txt").read_text().strip()
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path(f"out/gen_{key}.txt").write_text(f"{raw} {key} x{params['items'][key]['n'] * params['scale']}\\n")
"""
MK_MODEL = """import hashlib, json, pathlib, yaml
name = yaml.safe_load(open("params.yaml"))["model"]["name"]
out = pathlib.Path("models/m")
out.mkdir(parents=True, exist_ok=True)
weights = (pathlib.Path("out/gen_a.txt").read_text() * 3).encode()
(out / "weights.bin").write_bytes(weights)
fp = {"source": {"kind": "path", "path": name}, "revision": "r1", "architecture": "TinyForCausalLM",
      "model_type": "tiny", "weights_sha256": hashlib.sha256(weights).hexdigest(),
      "tokenizer_sha256": "t" * 64, "chat_template_sha256": "c" * 64, "fingerprint": "f" * 64}
(out / "fingerprint.json").write_text(json.dumps(fp, sort_keys=True))
"""
USE = """import json, pathlib
fp = json.loads(pathlib.Path("models/m/fingerprint.json").read_text())
text = pathlib.Path("out/gen_a.txt").read_text() + pathlib.Path("out/gen_b.txt").read_text()
pathlib.Path("report").mkdir(exist_ok=True)
pathlib.Path("report/summary.json").write_text(json.dumps({"model": fp["fingerprint"], "text": text}))
"""
PARAMS = {"scale": 3, "items": {"a": {"n": 1}, "b": {"n": 2}}, "model": {"name": "tiny-m"}}


def _dvc_yaml(python: str) -> dict:
    return {"stages": {
        "gen": {"foreach": "${items}", "do": {
            "cmd": f"{python} gen.py ${{key}}", "deps": ["gen.py", "raw/input.txt"],
            "params": ["items.${key}", "scale"], "outs": ["out/gen_${key}.txt"]}},
        "model": {"cmd": f"{python} mk_model.py", "deps": ["mk_model.py", "out/gen_a.txt"],
                  "params": ["model.name"], "outs": ["models/m"]},
        "use": {"cmd": f"{python} use.py", "deps": ["use.py", "models/m", "out/gen_a.txt", "out/gen_b.txt"],
                "outs": ["report/summary.json"]},
    }}


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory):
    """A committed git + DVC repo with stages gen@a, gen@b (foreach), model (dir out + fingerprint), use."""
    from dvc.repo import Repo

    base = tmp_path_factory.mktemp("lineage")
    env = {"DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(base / "site-cache"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        repo = base / "repo"
        repo.mkdir()
        _git(repo, "init", "-q")
        Repo.init(str(repo)).close()
        (repo / "raw").mkdir()
        (repo / "raw" / "input.txt").write_text("raw data\n")
        (repo / "gen.py").write_text(GEN)
        (repo / "mk_model.py").write_text(MK_MODEL)
        (repo / "use.py").write_text(USE)
        (repo / "params.yaml").write_text(yaml.safe_dump(PARAMS))
        (repo / "dvc.yaml").write_text(yaml.safe_dump(_dvc_yaml(sys.executable)))
        mp.chdir(repo)  # DVC resolves reproduce() targets against the working directory
        with Repo(str(repo)) as dvc:
            ran = dvc.reproduce()
        assert sorted(s.addressing for s in ran) == ["gen@a", "gen@b", "model", "use"]
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", "pipeline")
        yield repo


def _lock(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_lineage_reaches_raw_input_and_model_fingerprint(dvc_repo):
    report = audit("report/summary.json", dvc_repo, cwd=dvc_repo)
    lock = _lock(dvc_repo)
    tree = report["lineage"]
    assert report["stage"] == "use" and tree["cmd"] == lock["use"]["cmd"]
    assert [(d["path"], d["hash"]) for d in tree["deps"]] == [(d["path"], d["md5"]) for d in lock["use"]["deps"]]
    nodes = {node["stage"]: node for node in iter_nodes(tree)}
    assert sorted(nodes) == ["gen@a", "gen@b", "model", "use"]
    gen_a = nodes["gen@a"]
    assert {p["key"]: p["value"] for p in gen_a["params"]} == {"items.a": {"n": 1}, "scale": 3}
    assert [(d["path"], d["hash"]) for d in gen_a["deps"]] == [(d["path"], d["md5"]) for d in lock["gen@a"]["deps"]]
    raw = next(d for d in gen_a["deps"] if d["path"] == "raw/input.txt")
    assert raw["produced_by"] == [] and raw["hash"] == _md5(dvc_repo / "raw/input.txt")
    model_out = nodes["model"]["outs"][0]
    assert model_out["hash"] == lock["model"]["outs"][0]["md5"] and model_out["hash"].endswith(".dir")
    fingerprint = model_out["fingerprint"]
    written = json.loads((dvc_repo / "models/m/fingerprint.json").read_text())
    for key in ("source", "revision", "architecture", "weights_sha256", "tokenizer_sha256", "chat_template_sha256"):
        assert fingerprint[key] == written[key]
    assert fingerprint["read_from"].startswith("dvc cache")
    assert report["workspace"] == {"checked": True, "rehashed": False, "matches_lock": True, "differences": []}
    assert report["git"]["commit"] == _git(dvc_repo, "rev-parse", "HEAD").strip()
    assert report["git"]["uncommitted"] == []


def test_stage_shown_once_and_depth_limit(dvc_repo):
    tree = audit("report/summary.json", dvc_repo, cwd=dvc_repo)["lineage"]
    via_use = next(d for d in tree["deps"] if d["path"] == "out/gen_a.txt")["upstream"]
    model = next(d for d in tree["deps"] if d["path"] == "models/m")["upstream"][0]
    via_model = next(d for d in model["deps"] if d["path"] == "out/gen_a.txt")["upstream"]
    assert [u.get("omitted") for u in via_model + via_use].count("shown above") == 1
    shallow = audit("report/summary.json", dvc_repo, cwd=dvc_repo, depth=0)["lineage"]
    assert [n["stage"] for n in iter_nodes(shallow)] == ["use"]
    assert {u["omitted"] for d in shallow["deps"] for u in d["upstream"]} == {"depth limit"}
    model_dep = next(d for d in shallow["deps"] if d["path"] == "models/m")
    assert model_dep["fingerprint"]["architecture"] == "TinyForCausalLM"  # shown where the producer is cut off
    assert "fingerprint" not in next(d for d in tree["deps"] if d["path"] == "models/m")


def test_file_inside_an_output_directory(dvc_repo):
    report = audit(str(dvc_repo / "models/m/weights.bin"), dvc_repo, cwd=dvc_repo / "raw")
    assert (report["target"], report["stage"], report["output"]) == ("models/m/weights.bin", "model", "models/m")
    assert report["target_in_output"] == {"hash": _md5(dvc_repo / "models/m/weights.bin"), "workspace": "match"}
    with pytest.raises(HNeuronsError, match="not in the locked listing of models/m"):
        audit("models/m/absent.bin", dvc_repo, cwd=dvc_repo)


def test_reports_modified_output_param_and_code(dvc_repo, capsys, monkeypatch):
    out, params, code = dvc_repo / "out/gen_b.txt", dvc_repo / "params.yaml", dvc_repo / "gen.py"
    saved = {path: path.read_bytes() for path in (out, params, code)}
    try:
        out.write_text("tampered\n")
        params.write_text(yaml.safe_dump({**PARAMS, "scale": 4}))
        code.write_text(GEN + "# edited\n")
        report = audit("report/summary.json", dvc_repo, cwd=dvc_repo)
        diffs = report["workspace"]["differences"]
        assert report["workspace"]["matches_lock"] is False
        modified = {d["path"]: d for d in diffs if "path" in d}
        assert modified["out/gen_b.txt"]["workspace"] == _md5(out)
        assert modified["out/gen_b.txt"]["lock"] == _lock(dvc_repo)["gen@b"]["outs"][0]["md5"]
        assert "gen.py" in modified
        assert {d["param"] for d in diffs if "param" in d} == {"params.yaml:scale"}
        assert {c["path"]: c["status"] for c in report["git"]["uncommitted"]} == {
            "gen.py": "modified", "params.yaml": "modified"}
        monkeypatch.chdir(dvc_repo)
        assert main(["report/summary.json", "--check"]) == 1
        text = capsys.readouterr().out
        assert "workspace differs from dvc.lock" in text and "out/gen_b.txt: modified" in text
    finally:
        for path, data in saved.items():
            path.write_bytes(data)
    assert audit("report/summary.json", dvc_repo, cwd=dvc_repo)["workspace"]["matches_lock"] is True


def test_cli_json_and_one_line_errors(dvc_repo, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "hneurons.lineage"]
    done = subprocess.run([*cli, "out/gen_a.txt", "--json"], cwd=dvc_repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["stage"] == "gen@a" and data["workspace"]["matches_lock"] is True
    assert done.stdout == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert str(dvc_repo) not in done.stdout  # no absolute paths
    bad = subprocess.run([*cli, "raw/input.txt"], cwd=dvc_repo, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == "error: raw/input.txt: not produced by any stage in dvc.lock\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = subprocess.run([*cli, "x", "--root", str(empty)], cwd=empty, env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and len(missing.stderr.splitlines()) == 1
    assert missing.stderr.startswith("error: ") and "dvc.lock: not found" in missing.stderr


def test_lock_output_hashes_equal_after_forced_reproduction(dvc_repo, monkeypatch):
    from dvc.repo import Repo

    monkeypatch.chdir(dvc_repo)
    first = lock_output_hashes(dvc_repo / "dvc.lock")
    assert sorted(first) == ["models/m", "out/gen_a.txt", "out/gen_b.txt", "report/summary.json"]
    assert first["out/gen_a.txt"] == _md5(dvc_repo / "out/gen_a.txt") and first["models/m"].endswith(".dir")
    (dvc_repo / "out/gen_a.txt").unlink()
    with Repo(str(dvc_repo)) as dvc:
        ran = dvc.reproduce(force=True)
    assert len(ran) == 4
    assert lock_output_hashes(dvc_repo / "dvc.lock") == first


def test_pure_lock_parsing_and_tree():
    lock = {"schema": "2.0", "stages": {
        "prep@x": {"cmd": "prep x", "deps": [{"path": "raw/x", "hash": "md5", "md5": "a" * 32, "size": 1}],
                   "params": {"params.yaml": {"k": 1}},
                   "outs": [{"path": "data/x", "hash": "md5", "md5": "b" * 32 + ".dir", "size": 2, "nfiles": 2}]},
        "fit": {"cmd": ["fit a", "fit b"], "deps": [{"path": "data/x/part1", "md5": "c" * 32}],
                "outs": [{"path": "model.bin", "md5": "d" * 32}]},
    }}
    stages = parse_lock(lock)
    stage, out = find_producer(stages, "data/x/part1/file")
    assert (stage.name, out.path, out.is_dir) == ("prep@x", "data/x", True)
    assert find_producer(stages, "data/xy") is None and find_producer(stages, "raw/x") is None
    tree = build_lineage(stages, "fit", NullWorkspaceView())
    assert tree["cmd"] == "fit a && fit b" and tree["differs_from_lock"] is None
    upstream = tree["deps"][0]["upstream"][0]
    assert tree["deps"][0]["produced_by"] == ["prep@x"] and upstream["stage"] == "prep@x"
    assert upstream["params"] == [{"file": "params.yaml", "key": "k", "value": 1, "workspace": "unchecked"}]
    assert upstream["deps"][0]["produced_by"] == []
    with pytest.raises(HNeuronsError, match="schema"):
        parse_lock({"schema": "1.0", "stages": {}})
    with pytest.raises(HNeuronsError, match="without 'path'"):
        parse_lock({"stages": {"s": {"cmd": "c", "outs": [{"md5": "x"}]}}})


def test_lock_params_compare_by_value_as_yaml_1_2(tmp_path):
    from hneurons.dvc_lock import load_lock
    from hneurons.workspace_state import Workspace

    # DVC (YAML 1.2) writes the params value 1.0e-6 as `1e-06`; PyYAML's 1.1 resolver reads that as a string
    assert yaml.safe_load("tol: 1e-06")["tol"] == "1e-06"
    (tmp_path / "params.yaml").write_text("probe:\n  tol: 1.0e-6\n  C: 3\ntune:\n  lr: 2.0e-5\n  name: '1e-06'\n")
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  probe:\n    cmd: fit\n    params:\n      params.yaml:\n"
        "        probe.tol: 1e-06\n        probe.C: 3\n        tune.lr: 2e-05\n        tune.name: '1e-06'\n")
    stage = load_lock(tmp_path / "dvc.lock")["probe"]
    values = stage.params["params.yaml"]
    assert values == {"probe.tol": 1e-06, "probe.C": 3, "tune.lr": 2e-05, "tune.name": "1e-06"}
    assert isinstance(values["probe.C"], int)
    workspace = Workspace(tmp_path, None)
    assert {key: workspace.param_status("params.yaml", key, value) for key, value in values.items()} == {
        "probe.tol": "match", "probe.C": "match", "tune.lr": "match", "tune.name": "match"}
    assert workspace.param_status("params.yaml", "probe.tol", 1e-05) == "modified"


def test_rehash_finds_a_same_size_in_place_write_that_dvc_state_misses(dvc_repo, monkeypatch):
    out = dvc_repo / "out/gen_b.txt"
    inner = dvc_repo / "models/m/weights.bin"
    saved = {path: (path.read_bytes(), path.stat()) for path in (out, inner)}
    assert audit("report/summary.json", dvc_repo, cwd=dvc_repo)["workspace"]["matches_lock"] is True  # state warm
    try:
        for path, (data, stat) in saved.items():
            os.chmod(path, 0o644)
            with open(path, "r+b") as handle:                   # in place: same inode, same size, same mtime
                handle.write(bytes([data[0] ^ 1]))
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        plain = audit("report/summary.json", dvc_repo, cwd=dvc_repo)
        assert plain["workspace"]["matches_lock"] is True          # DVC's state database still has the old hashes
        rehashed = audit("report/summary.json", dvc_repo, cwd=dvc_repo, rehash=True)
        assert rehashed["workspace"]["rehashed"] and rehashed["workspace"]["matches_lock"] is False
        found = {d["path"]: d for d in rehashed["workspace"]["differences"] if "path" in d}
        assert found["out/gen_b.txt"]["workspace"] == _md5(out)
        assert found["models/m"]["files_changed"] == ["weights.bin"] and found["models/m"]["files_extra"] == []
        monkeypatch.chdir(dvc_repo)
        assert main(["report/summary.json", "--check", "--rehash"]) == 1
    finally:
        for path, (data, stat) in saved.items():
            with open(path, "r+b") as handle:
                handle.write(data)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert audit("report/summary.json", dvc_repo, cwd=dvc_repo, rehash=True)["workspace"]["matches_lock"] is True
