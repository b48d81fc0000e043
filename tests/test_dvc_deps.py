"""dvc.yaml's code deps equal each stage's repo-local import closure (so a code change reruns exactly its stages)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hneurons", "stages")


def _module_path(module: str) -> Path | None:
    """The file of a repo-local module: ``a/b.py``, or ``a/b/__init__.py`` for a package."""
    base = ROOT / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(path: Path) -> set[str]:
    """Repo-local modules imported anywhere in ``path`` (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] in PACKAGES)
    return found


def import_closure(module: str) -> set[str]:
    """Repo-relative paths of the .py files ``module`` reaches through repo-local imports (no __init__; a
    package's __init__ is followed for its imports)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        path = _module_path(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        todo.extend(_imports(path))
    return {p.relative_to(ROOT).as_posix() for p in seen if p.name != "__init__.py"}


def declared_code(deps: list) -> set[str]:
    """The .py files a stage's deps name: .py deps, and the .py files (no __init__ or __main__) of a package directory dep."""
    files = set()
    for dep in deps:
        if not isinstance(dep, str):
            continue
        if dep.endswith(".py"):
            files.add(dep)
        elif (ROOT / dep / "__init__.py").is_file():
            files.update(p.relative_to(ROOT).as_posix() for p in (ROOT / dep).rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    return files


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_declared_code_deps_equal_the_import_closure(name):
    body = STAGES[name].get("do", STAGES[name])
    module = body["cmd"].split()[2]                      # python -m stages.<name> ...
    declared = declared_code(body["deps"])
    closure = import_closure(module)
    assert closure == declared, f"missing {sorted(closure - declared)}, not imported {sorted(declared - closure)}"


def test_the_closure_follows_function_level_and_transitive_imports():
    closure = import_closure("stages.report")          # stages/report.py imports hneurons.report inside functions
    assert {"hneurons/report/build.py", "hneurons/stats.py", "hneurons/dvc_lock.py",
            "hneurons/workspace_state.py"} <= closure


def test_package_directory_deps_are_hashed_without_bytecode():
    packages = {d for body in STAGES.values() for d in body.get("do", body)["deps"]
                if isinstance(d, str) and (ROOT / d / "__init__.py").is_file()}
    assert packages, "no stage depends on a package directory"
    assert "__pycache__/" in (ROOT / ".dvcignore").read_text(encoding="utf-8").splitlines()
