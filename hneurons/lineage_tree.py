"""The lineage tree of a locked stage: its params, outs and deps, and recursively the stages that
produced its deps, each entry with its workspace status as a :class:`WorkspaceView` reports it.

Pure given the view: :class:`NullWorkspaceView` checks nothing (every status ``unchecked``);
:class:`hneurons.workspace_state.Workspace` compares with the workspace through DVC.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from hneurons.dvc_lock import MISSING, MODIFIED, UNCHECKED, LockEntry, LockStage, producers_of


class WorkspaceView(Protocol):
    """What the tree builder asks of the workspace (see :class:`hneurons.workspace_state.Workspace`,
    :class:`NullWorkspaceView`)."""

    def entry_status(self, entry: LockEntry) -> dict[str, Any]: ...

    def fingerprint(self, entry: LockEntry) -> dict[str, Any] | None: ...

    def param_status(self, file: str, key: str, value: Any) -> str: ...


class NullWorkspaceView:
    """A view that checks nothing: every status is ``unchecked``, no fingerprints."""

    def entry_status(self, entry: LockEntry) -> dict[str, Any]:
        return {"workspace": UNCHECKED}

    def fingerprint(self, entry: LockEntry) -> dict[str, Any] | None:
        return None

    def param_status(self, file: str, key: str, value: Any) -> str:
        return UNCHECKED


def build_lineage(stages: dict[str, LockStage], stage_name: str, view: WorkspaceView | None = None,
                  depth: int | None = None) -> dict[str, Any]:
    """The lineage tree of one stage as a JSON-ready dict.

    Node: ``{stage, cmd, differs_from_lock, params: [{file, key, value, workspace}],
    outs: [entry], deps: [entry]}``; entry: ``{path, hash, size, nfiles?, workspace,
    workspace_hash?, fingerprint?, produced_by: [stage], upstream: [node]}``.
    ``produced_by == []`` marks a raw input. An upstream stage already expanded
    elsewhere in the tree, or beyond ``depth`` levels (0 = this stage only),
    appears as ``{stage, omitted: "shown above" | "depth limit"}``.
    """
    return _node(stages, stage_name, view or NullWorkspaceView(), depth, 0, set())


def _node(stages: dict[str, LockStage], name: str, view: WorkspaceView, depth: int | None, level: int,
          seen: set[str]) -> dict[str, Any]:
    seen.add(name)
    stage = stages[name]
    params = [{"file": file, "key": key, "value": value, "workspace": view.param_status(file, key, value)}
              for file, values in sorted(stage.params.items()) for key, value in sorted(values.items())]
    outs = [_entry(out, view, with_fingerprint=True) for out in stage.outs]
    deps = []
    for dep in stage.deps:
        producers = [p for p in producers_of(stages, dep.path) if p != name]
        upstream = [_upstream(stages, p, view, depth, level, seen) for p in producers]
        # a model fingerprint shows where its producer is not expanded in this tree
        hidden = not producers or any(u.get("omitted") == "depth limit" for u in upstream)
        item = _entry(dep, view, with_fingerprint=hidden)
        item.update(produced_by=producers, upstream=upstream)
        deps.append(item)
    return {"stage": name, "cmd": stage.cmd, "differs_from_lock": _differs(params, outs, deps),
            "params": params, "outs": outs, "deps": deps}


def _differs(params: list[dict[str, Any]], outs: list[dict[str, Any]], deps: list[dict[str, Any]]) -> bool | None:
    """True if any param, out or dep of a stage differs from the lock; None if nothing was checked."""
    states = [item["workspace"] for item in (*params, *outs, *deps)]
    if all(state == UNCHECKED for state in states):
        return None
    return any(state in (MODIFIED, MISSING) for state in states)


def _upstream(stages: dict[str, LockStage], name: str, view: WorkspaceView, depth: int | None, level: int,
              seen: set[str]) -> dict[str, Any]:
    if name in seen:
        return {"stage": name, "omitted": "shown above"}
    if depth is not None and level >= depth:
        return {"stage": name, "omitted": "depth limit"}
    return _node(stages, name, view, depth, level + 1, seen)


def _entry(entry: LockEntry, view: WorkspaceView, with_fingerprint: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"path": entry.path, "hash": entry.hash, "size": entry.size}
    if entry.nfiles is not None:
        item["nfiles"] = entry.nfiles
    item.update(view.entry_status(entry))
    fingerprint = view.fingerprint(entry) if with_fingerprint else None
    if fingerprint is not None:
        item["fingerprint"] = fingerprint
    return item


def iter_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every fully shown stage node of a tree, depth first (the root first)."""
    yield node
    for dep in node.get("deps", ()):
        for upstream in dep.get("upstream", ()):
            if "omitted" not in upstream:
                yield from iter_nodes(upstream)


def differences(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """Workspace-vs-lock differences in a tree: outs, deps and params not matching, once per path/key."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for node in iter_nodes(tree):
        for kind in ("outs", "deps"):
            for item in node[kind]:
                if item["workspace"] in (MODIFIED, MISSING):
                    found.setdefault(("path", item["path"]), {
                        "path": item["path"], "status": item["workspace"], "stage": node["stage"],
                        "lock": item["hash"], "workspace": item.get("workspace_hash"),
                        **({"files_changed": item["files_changed"], "files_extra": item["files_extra"]}
                           if "files_changed" in item else {})})
        for param in node["params"]:
            if param["workspace"] in (MODIFIED, MISSING):
                key = f"{param['file']}:{param['key']}"
                found.setdefault(("param", key), {"param": key, "status": param["workspace"],
                                                  "stage": node["stage"]})
    return list(found.values())


def leaf_inputs(tree: dict[str, Any]) -> list[str]:
    """Paths of the deps on the tree that no stage produced (raw data, code), sorted."""
    return sorted({dep["path"] for node in iter_nodes(tree) for dep in node["deps"] if not dep["produced_by"]})

