"""The real dvc.yaml with an extraction split over three shard stages: every consumer of the activation set
depends on all three (DVC resolves a dep on the set directory to the stages whose outs lie inside it)."""

from __future__ import annotations

import yaml

from pipeline_utils import ROOT, git, pipeline_env, tiny_params


def test_consumers_of_a_sharded_set_depend_on_every_shard_stage(tmp_path, monkeypatch):
    from dvc.repo import Repo

    params = tiny_params()
    params["extract"]["runs"] = {f"tiny-instruct-triviaqa-{i}": {"family": "tiny", "role": "instruct",
                                                                  "dataset": "triviaqa", "shard": i, "shards": 3}
                                 for i in range(3)}
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    for key, value in pipeline_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    git(repo, "init", "-q")
    monkeypatch.chdir(repo)
    Repo.init(str(repo))
    dvc = Repo(str(repo))
    graph = dvc.index.graph
    by_name = {stage.addressing: stage for stage in graph.nodes}
    shards = {f"extract@tiny-instruct-triviaqa-{i}" for i in range(3)}
    assert shards <= set(by_name)
    outs = {str(out.def_path) for name in shards for out in by_name[name].outs if out.def_path.startswith("data/")}
    assert outs == {f"data/activations/tiny/instruct/triviaqa/tiny-instruct-triviaqa-{i}" for i in range(3)}
    for consumer in ("probe@tiny", "detect@tiny", "origin@tiny"):
        upstream = {stage.addressing for stage in graph.successors(by_name[consumer])}
        assert shards <= upstream, (consumer, sorted(upstream))
