"""dvc.yaml's outs, metrics and plots are exactly the paths hneurons.layout gives (resolved for params.yaml)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hneurons import layout

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def resolved() -> dict[str, list[str]]:
    """``{stage address: [out path, ...]}`` of dvc.yaml with params.yaml (DVC's own foreach / ${} resolution)."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {stage.addressing: [out.def_path for out in stage.outs] for stage in repo.index.stages}


@pytest.fixture(scope="module")
def params() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def layout_outputs(params: dict[str, Any]) -> dict[str, list[Path]]:
    """``{stage address: layout paths}`` for every stage dvc.yaml defines, for the families and runs in params."""
    def per_family(stage: str, outputs: Callable[[str], list[Path]]) -> dict[str, list[Path]]:
        return {f"{stage}@{family}": outputs(family) for family in params[stage]["families"] or {}}

    expected: dict[str, list[Path]] = {f"prepare@{d}": layout.prepare_outputs(d) for d in params["datasets"]}
    expected["check_rows"] = layout.check_rows_outputs()
    expected.update({f"model@{name}": layout.model_outputs(m["family"], m["role"])
                     for name, m in params["models"].items()})
    expected.update(per_family("tune", layout.tune_outputs))
    expected.update(per_family("origin", layout.origin_outputs))
    expected.update(per_family("sample", lambda f: layout.sample_outputs(f, params["sample"]["dataset"])))
    expected.update({f"extract@{run}": layout.extract_outputs(r["family"], r["role"], r["dataset"], run)
                     for run, r in params["extract"]["runs"].items()})
    expected.update(per_family("probe", layout.probe_outputs))
    expected["report"] = layout.report_outputs()
    expected.update(per_family("detect", layout.detect_outputs))
    expected.update(per_family("intervene", layout.intervene_outputs))
    return expected


def test_dvc_outs_are_the_layout(resolved, params):
    expected = {stage: sorted(p.as_posix() for p in paths) for stage, paths in layout_outputs(params).items()}
    actual = {stage: sorted(paths) for stage, paths in resolved.items()}
    assert set(actual) == set(expected), "stages: dvc.yaml vs layout"
    for stage in actual:
        assert actual[stage] == expected[stage], (
            f"{stage}: dvc.yaml only {sorted(set(actual[stage]) - set(expected[stage]))}, "
            f"layout only {sorted(set(expected[stage]) - set(actual[stage]))}")


def test_artifact_deps_are_layout_outputs_or_their_directories(params):
    """Every dep under data/, models/ or reports/ is an out, a directory of outs, or a raw / hand-labelled input."""
    outs = [p.as_posix() for paths in layout_outputs(params).values() for p in paths]
    inputs = (layout.DATA / "raw").as_posix(), (layout.DATA / "labels").as_posix()
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        deps = {(stage.addressing, dep.def_path) for stage in repo.index.stages for dep in stage.deps}
    for stage, dep in sorted(deps):
        if dep.split("/")[0] not in ("data", "models", "reports") or dep.startswith(inputs):
            continue
        assert any(out == dep or out.startswith(dep + "/") for out in outs), f"{stage}: dep {dep} is no layout path"


def test_paths_are_repo_relative_and_distinct(params):
    paths = [p for paths in layout_outputs(params).values() for p in paths]
    assert all(isinstance(p, Path) and not p.is_absolute() for p in paths)
    assert len({p.as_posix() for p in paths}) == len(paths)


def test_family_paths_are_the_stages_reports():
    from hneurons.report import FamilyPaths

    paths = FamilyPaths.of("fam")
    assert paths.probe_c_grid == (layout.report_dir("probe", "fam") / layout.PROBE_C_GRID).as_posix()
    assert paths.origin_metrics == "reports/origin/fam.json"
    written = {p.as_posix() for stage in ("sample", "probe", "detect", "intervene", "tune")
               for p in getattr(layout, f"{stage}_outputs")(*(("fam", "ds") if stage == "sample" else ("fam",)))}
    written |= {(layout.report_dir("origin", "fam") / name).as_posix()
                for name in (layout.ORIGIN_TRANSFER, layout.ORIGIN_STRIP)} | {"reports/origin/fam.json"}
    for field, value in vars(paths).items():
        if field != "family" and value:
            assert value in written, f"FamilyPaths.{field}={value} is not a stage output"
