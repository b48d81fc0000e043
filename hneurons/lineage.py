"""Lineage audit: which stage wrote a file, from which params, deps, data and model.

Run from inside the repository::

    python -m hneurons.lineage PATH [--json] [--depth N] [--no-workspace] [--check]

For PATH (an output file, or a file inside an output directory) it prints the
``dvc.lock`` stage that wrote it, that stage's command and params values, every
dependency and output with its lock hash, and, recursively, the same for each
dependency that another stage produced (a tree; a stage is shown once, later
references say "shown above"). Dependencies no stage produced are raw inputs
(data snapshots, code). A directory holding ``fingerprint.json`` (a materialized
model) shows the fingerprint's source, revision, architecture and weight /
tokenizer / chat-template hashes, read from the DVC cache copy that matches the
lock when present, else from the workspace.

It also reports the git commit (``HEAD``, and the commit that last touched
``dvc.lock``), uncommitted changes to ``dvc.lock``, ``dvc.yaml``, the params
files and the raw/code inputs on the path, and whether each workspace file's hash
matches the lock. Workspace hashes come from DVC itself (``dvc_data``'s
``build`` with the repository's state database, the same code ``dvc status``
runs), so directories get DVC's ``.dir`` hash and unchanged files are not
re-read. Params values in the lock are compared with the current params files.

Exit status: 0 on success, 2 on bad input (a path no stage produced, no
``dvc.lock``), and with ``--check`` 1 when the workspace differs from the lock. ``--rehash`` hashes
every output from its bytes instead of trusting DVC's state database (which keys hashes by inode,
size and mtime, so a same-size in-place write goes unseen).

Limits: only the ``dvc.lock`` at the repository root is read (hneurons has one),
paths are taken relative to it (stages with a ``wdir`` are not supported), and
only YAML/JSON params files are compared with the lock.

The parts: :mod:`hneurons.dvc_lock` reads the lock, :mod:`hneurons.lineage_tree`
builds the tree, :mod:`hneurons.workspace_state` compares with the workspace and
git; this module composes them into the report, renders it and is the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from hneurons.dvc_lock import (
    LOCK_NAME,
    MATCH,
    MISSING,
    MODIFIED,
    UNCHECKED,
    LockStage,
    find_producer,
    load_lock,
    producers_of,
)
from hneurons.errors import HNeuronsError
from hneurons.lineage_tree import NullWorkspaceView, build_lineage, differences, iter_nodes, leaf_inputs
from hneurons.workspace_state import FINGERPRINT_FIELDS, Workspace, git_state

# ---------------------------------------------------------------- audit (composition)

def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding ``dvc.lock`` (or ``.dvc``)."""
    for candidate in (start, *start.parents):
        if (candidate / LOCK_NAME).is_file() or (candidate / ".dvc").is_dir():
            return candidate
    raise HNeuronsError(f"{LOCK_NAME}: not found in {start} or any parent (run inside the repository)")


def repo_relative(path: str, root: Path, cwd: Path) -> str:
    """``path`` (absolute, or relative to ``cwd``) as a POSIX path relative to ``root``; no symlink resolution."""
    absolute = os.path.normpath(os.path.join(cwd, path))
    relative = os.path.relpath(absolute, os.path.normpath(root))
    if relative == ".." or relative.startswith(".." + os.sep):
        raise HNeuronsError(f"{path}: outside the repository {root}")
    return Path(relative).as_posix()


def not_produced(path: str, stages: dict[str, LockStage]) -> HNeuronsError:
    """The one-line error for a path no stage wrote (naming stages whose outputs lie inside it)."""
    inside = producers_of(stages, path)
    hint = f" (it contains outputs of {', '.join(inside)})" if inside else ""
    return HNeuronsError(f"{path}: not produced by any stage in {LOCK_NAME}{hint}")


def audit(path: str, root: Path, cwd: Path | None = None, depth: int | None = None,
          workspace: bool = True, rehash: bool = False) -> dict[str, Any]:
    """The full lineage report of ``path`` (see the module docstring) as a JSON-ready dict;
    ``rehash``: outputs are hashed from their bytes (:func:`rehash_status`)."""
    stages = load_lock(root / LOCK_NAME)
    target = repo_relative(path, root, cwd or Path.cwd())
    found = find_producer(stages, target)
    if found is None:
        raise not_produced(target, stages)
    stage, out = found
    report: dict[str, Any] = {"target": target, "stage": stage.name, "output": out.path}
    if workspace:
        with Workspace.open(root, rehash) as view:
            if target != out.path:
                report["target_in_output"] = view.target_status(target, out)
                if report["target_in_output"]["workspace"] == "not in the locked listing":
                    raise HNeuronsError(f"{target}: not produced by any stage in {LOCK_NAME} "
                                        f"(not in the locked listing of {out.path}, stage {stage.name})")
            tree = build_lineage(stages, stage.name, view, depth)
    else:
        tree = build_lineage(stages, stage.name, NullWorkspaceView(), depth)
    diffs = differences(tree)
    if "target_in_output" in report and report["target_in_output"]["workspace"] in (MODIFIED, MISSING):
        diffs.insert(0, {"path": target, "status": report["target_in_output"]["workspace"],
                         "stage": stage.name, "lock": report["target_in_output"]["hash"],
                         "workspace": report["target_in_output"].get("workspace_hash")})
    params_files = sorted({p["file"] for node in iter_nodes(tree) for p in node["params"]})
    report["git"] = git_state(root, [LOCK_NAME, "dvc.yaml", *params_files, *leaf_inputs(tree)])
    report["workspace"] = {"checked": workspace, "rehashed": bool(workspace and rehash),
                           "matches_lock": (not diffs) if workspace else None,
                           "differences": diffs}
    report["lineage"] = tree
    return report



# ---------------------------------------------------------------- text rendering

def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _status(item: dict[str, Any]) -> str:
    state = item["workspace"]
    if state == MODIFIED:
        return f"[MODIFIED in workspace: {item.get('workspace_hash')}]"
    if state == MISSING:
        return "[MISSING in workspace]"
    return "[workspace matches]" if state == MATCH else f"[{state}]"


def _value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _render_entry(item: dict[str, Any], pad: str, lines: list[str]) -> None:
    files = f", {item['nfiles']} files" if "nfiles" in item else ""
    raw = "  input (no stage produced it)" if item.get("produced_by") == [] else ""
    lines.append(f"{pad}{item['path']}  {item['hash']}  ({_size(item['size'])}{files})  {_status(item)}{raw}")
    fingerprint = item.get("fingerprint")
    if fingerprint:
        lines.append(f"{pad}  model fingerprint (read from {fingerprint['read_from']}):")
        for key in FINGERPRINT_FIELDS:
            if key in fingerprint:
                lines.append(f"{pad}    {key}: {_value(fingerprint[key]) if key == 'source' else fingerprint[key]}")


def _render_node(node: dict[str, Any], pad: str, lines: list[str], header: str = "stage") -> None:
    stale = "  [workspace differs from the lock: `dvc repro` would rerun it]" if node["differs_from_lock"] else ""
    lines.append(f"{pad}{header} {node['stage']}{stale}")
    lines.append(f"{pad}  cmd: {node['cmd']}")
    if node["params"]:
        lines.append(f"{pad}  params:")
        for p in node["params"]:
            mark = "" if p["workspace"] in (MATCH, UNCHECKED) else f"  [{p['workspace'].upper()} in {p['file']}]"
            lines.append(f"{pad}    {p['key']} = {_value(p['value'])}{mark}")
    lines.append(f"{pad}  outs:")
    for item in node["outs"]:
        _render_entry(item, pad + "    ", lines)
    lines.append(f"{pad}  deps:")
    for item in node["deps"]:
        _render_entry(item, pad + "    ", lines)
        for upstream in item["upstream"]:
            if "omitted" in upstream:
                lines.append(f"{pad}      <- stage {upstream['stage']} ({upstream['omitted']})")
            else:
                _render_node(upstream, pad + "      ", lines, header="<- stage")


def render_text(report: dict[str, Any]) -> str:
    """The report as indented text: header, git, workspace summary, then the lineage tree."""
    lines = [f"{report['target']}: written by stage {report['stage']} (output {report['output']})"]
    inner = report.get("target_in_output")
    if inner:
        lines.append(f"  file hash in the lock's listing: {inner['hash']}  {_status(inner)}")
    git = report["git"]
    if git.get("commit") is None:
        lines.append(f"git: {git.get('note')}")
    else:
        lines.append(f"git: HEAD {git['commit']}; {LOCK_NAME} last committed in {git['lock_commit'] or 'none'}")
        for change in git["uncommitted"]:
            lines.append(f"  uncommitted: {change['path']} ({change['status']})")
        if not git["uncommitted"]:
            lines.append(f"  no uncommitted changes to {LOCK_NAME}, dvc.yaml, params or the raw/code inputs")
    ws = report["workspace"]
    if not ws["checked"]:
        lines.append("workspace: not checked (--no-workspace)")
    elif ws["matches_lock"]:
        lines.append(f"workspace matches {LOCK_NAME}" + (" (every output re-hashed from its bytes)"
                                                         if ws.get("rehashed") else ""))
    else:
        lines.append(f"workspace differs from {LOCK_NAME}:")
        for diff in ws["differences"]:
            if "param" in diff:
                lines.append(f"  param {diff['param']}: {diff['status']} (stage {diff['stage']})")
            else:
                lines.append(f"  {diff['path']}: {diff['status']} (stage {diff['stage']}; "
                             f"lock {diff['lock']}, workspace {diff['workspace']})")
                for key in ("files_changed", "files_extra"):
                    if diff.get(key):
                        lines.append(f"    {key.replace('_', ' ')}: {', '.join(diff[key])}")
    lines.append("")
    _render_node(report["lineage"], "", lines)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- command line

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hneurons.lineage",
                                     description="Audit the lineage of a pipeline output from dvc.lock.")
    parser.add_argument("path", help="an output file (or a file inside an output directory)")
    parser.add_argument("--json", action="store_true", help="print the report as canonical JSON")
    parser.add_argument("--depth", type=int, default=None,
                        help="upstream stage levels to expand (0 = the producing stage only; default all)")
    parser.add_argument("--no-workspace", action="store_true",
                        help="skip hashing the workspace (lock and git only)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the workspace differs from dvc.lock")
    parser.add_argument("--rehash", action="store_true",
                        help="hash every output from its bytes (trusts neither DVC's state nor its cache objects)")
    parser.add_argument("--root", default=None, help="repository root (default: nearest parent with dvc.lock)")
    args = parser.parse_args(argv)
    if args.depth is not None and args.depth < 0:
        parser.error("--depth must be >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry: print the report; return the exit status (2 and one line on bad input)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cwd = Path.cwd()
    try:
        root = Path(args.root).absolute() if args.root else find_root(cwd)
        report = audit(args.path, root, cwd, args.depth, workspace=not args.no_workspace, rehash=args.rehash)
    except HNeuronsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        from hneurons.io import dumps_json

        sys.stdout.write(dumps_json(report))
    else:
        sys.stdout.write(render_text(report))
    return 1 if args.check and report["workspace"]["matches_lock"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
