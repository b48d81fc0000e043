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

:func:`lock_output_hashes` gives ``{out path: hash}`` for every output in a lock
file, for comparing two reproductions byte for byte.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import yaml

from hneurons.errors import HNeuronsError

LOCK_NAME = "dvc.lock"
FINGERPRINT_NAME = "fingerprint.json"
FINGERPRINT_FIELDS = ("source", "revision", "architecture", "model_type", "n_layers", "d_ffn", "dtype",
                      "weights_sha256", "tokenizer_sha256", "chat_template_sha256", "fingerprint")
HASH_KEYS = ("md5", "etag", "checksum")  # the first one present is the entry's hash
MATCH, MODIFIED, MISSING, UNCHECKED = "match", "modified", "missing", "unchecked"


# ---------------------------------------------------------------- YAML 1.2 numbers

_FLOAT_TAG = "tag:yaml.org,2002:float"


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader reading floats as YAML 1.2 (and DVC) do: ``1e-06`` is a float, not the string "1e-06".

    PyYAML implements YAML 1.1, whose float pattern needs a dot; DVC writes ``1e-06`` to dvc.lock for
    the params value ``1.0e-6``, so a 1.1 reader would see a string where DVC sees a number.
    """


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Yaml12Loader.add_implicit_resolver(
    _FLOAT_TAG, re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                           r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))


def load_yaml12(text: str) -> Any:
    """YAML text parsed with :class:`Yaml12Loader` (integers stay integers)."""
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


# ---------------------------------------------------------------- lock parsing (pure)

@dataclass(frozen=True)
class LockEntry:
    """One dep or out of a locked stage: repo-relative POSIX path and its hash.

    ``hash`` is DVC's value (directories end in ``.dir``); ``hash_name`` is the
    lock's ``hash:`` field (``md5`` for DVC 3, ``None`` for legacy DVC 2 entries).
    """

    path: str
    hash: str | None
    hash_name: str | None = None
    size: int | None = None
    nfiles: int | None = None

    @property
    def is_dir(self) -> bool:
        return bool(self.hash and self.hash.endswith(".dir"))


@dataclass(frozen=True)
class LockStage:
    """A ``dvc.lock`` stage; ``params`` maps params file -> {dotted key: value}."""

    name: str
    cmd: str
    deps: tuple[LockEntry, ...] = ()
    outs: tuple[LockEntry, ...] = ()
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_lock(data: Any, where: str = LOCK_NAME) -> dict[str, LockStage]:
    """Stages of a parsed ``dvc.lock`` (schema 2.0), keyed by name (``prepare@triviaqa``)."""
    if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
        raise HNeuronsError(f"{where}: not a dvc.lock file (no 'stages' mapping)")
    if str(data.get("schema", "2.0")) != "2.0":
        raise HNeuronsError(f"{where}: schema {data.get('schema')!r} is not supported (expected 2.0)")
    return {name: _parse_stage(name, body or {}, where) for name, body in (data.get("stages") or {}).items()}


def _parse_stage(name: str, body: dict[str, Any], where: str) -> LockStage:
    cmd = body.get("cmd", "")
    params = {str(file): dict(values or {}) for file, values in (body.get("params") or {}).items()}
    return LockStage(name=name, cmd=" && ".join(cmd) if isinstance(cmd, list) else str(cmd),
                     deps=tuple(_parse_entry(e, f"{where}: {name}") for e in body.get("deps") or ()),
                     outs=tuple(_parse_entry(e, f"{where}: {name}") for e in body.get("outs") or ()),
                     params=params)


def _parse_entry(raw: Any, where: str) -> LockEntry:
    if not isinstance(raw, dict) or "path" not in raw:
        raise HNeuronsError(f"{where}: a dep/out without 'path'")
    value = next((str(raw[key]) for key in HASH_KEYS if raw.get(key)), None)
    return LockEntry(path=_clean(str(raw["path"])), hash=value, hash_name=raw.get("hash"),
                     size=raw.get("size"), nfiles=raw.get("nfiles"))


def _clean(path: str) -> str:
    return Path(path).as_posix().rstrip("/") or "."


def load_lock(lock_path: str | os.PathLike) -> dict[str, LockStage]:
    """Read and parse a ``dvc.lock`` file; a missing or malformed file is a one-line error."""
    lock_path = Path(lock_path)
    if not lock_path.is_file():
        raise HNeuronsError(f"{lock_path}: not found (run `dvc repro` first, or run inside the repository)")
    try:
        data = load_yaml12(lock_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise HNeuronsError(f"{lock_path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_lock(data, str(lock_path.name))


def lock_output_hashes(lock_path: str | os.PathLike) -> dict[str, str]:
    """``{out path: hash}`` for every output (outs, metrics, plots) of every stage, sorted by path.

    Two reproductions of the same params and code are byte-identical iff these
    dicts are equal. An output without a hash maps to ``""``.
    """
    stages = load_lock(lock_path)
    return dict(sorted((out.path, out.hash or "") for stage in stages.values() for out in stage.outs))


def _within(path: str, parent: str) -> bool:
    return parent == "." or path == parent or path.startswith(parent + "/")


def find_producer(stages: dict[str, LockStage], path: str) -> tuple[LockStage, LockEntry] | None:
    """The stage and out that wrote ``path`` (the out itself or a file inside an output directory)."""
    for stage in stages.values():
        for out in stage.outs:
            if _within(path, out.path):
                return stage, out
    return None


def producers_of(stages: dict[str, LockStage], path: str) -> list[str]:
    """Names of the stages whose outputs overlap ``path`` (equal, inside it, or containing it), sorted."""
    return sorted({stage.name for stage in stages.values() for out in stage.outs
                   if _within(path, out.path) or _within(out.path, path)})


# ---------------------------------------------------------------- lineage tree (pure given a probe)

class Probe(Protocol):
    """What the tree builder asks of the workspace (see :class:`Workspace`, :class:`NullProbe`)."""

    def entry_status(self, entry: LockEntry) -> dict[str, Any]: ...

    def fingerprint(self, entry: LockEntry) -> dict[str, Any] | None: ...

    def param_status(self, file: str, key: str, value: Any) -> str: ...


class NullProbe:
    """A probe that checks nothing: every status is ``unchecked``, no fingerprints."""

    def entry_status(self, entry: LockEntry) -> dict[str, Any]:
        return {"workspace": UNCHECKED}

    def fingerprint(self, entry: LockEntry) -> dict[str, Any] | None:
        return None

    def param_status(self, file: str, key: str, value: Any) -> str:
        return UNCHECKED


def build_lineage(stages: dict[str, LockStage], stage_name: str, probe: Probe | None = None,
                  depth: int | None = None) -> dict[str, Any]:
    """The lineage tree of one stage as a JSON-ready dict.

    Node: ``{stage, cmd, differs_from_lock, params: [{file, key, value, workspace}],
    outs: [entry], deps: [entry]}``; entry: ``{path, hash, size, nfiles?, workspace,
    workspace_hash?, fingerprint?, produced_by: [stage], upstream: [node]}``.
    ``produced_by == []`` marks a raw input. An upstream stage already expanded
    elsewhere in the tree, or beyond ``depth`` levels (0 = this stage only),
    appears as ``{stage, omitted: "shown above" | "depth limit"}``.
    """
    return _node(stages, stage_name, probe or NullProbe(), depth, 0, set())


def _node(stages: dict[str, LockStage], name: str, probe: Probe, depth: int | None, level: int,
          seen: set[str]) -> dict[str, Any]:
    seen.add(name)
    stage = stages[name]
    params = [{"file": file, "key": key, "value": value, "workspace": probe.param_status(file, key, value)}
              for file, values in sorted(stage.params.items()) for key, value in sorted(values.items())]
    outs = [_entry(out, probe, with_fingerprint=True) for out in stage.outs]
    deps = []
    for dep in stage.deps:
        producers = [p for p in producers_of(stages, dep.path) if p != name]
        upstream = [_upstream(stages, p, probe, depth, level, seen) for p in producers]
        # a model fingerprint shows where its producer is not expanded in this tree
        hidden = not producers or any(u.get("omitted") == "depth limit" for u in upstream)
        item = _entry(dep, probe, with_fingerprint=hidden)
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


def _upstream(stages: dict[str, LockStage], name: str, probe: Probe, depth: int | None, level: int,
              seen: set[str]) -> dict[str, Any]:
    if name in seen:
        return {"stage": name, "omitted": "shown above"}
    if depth is not None and level >= depth:
        return {"stage": name, "omitted": "depth limit"}
    return _node(stages, name, probe, depth, level + 1, seen)


def _entry(entry: LockEntry, probe: Probe, with_fingerprint: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"path": entry.path, "hash": entry.hash, "size": entry.size}
    if entry.nfiles is not None:
        item["nfiles"] = entry.nfiles
    item.update(probe.entry_status(entry))
    fingerprint = probe.fingerprint(entry) if with_fingerprint else None
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


# ---------------------------------------------------------------- workspace (DVC's hashes)

def md5_of(path: Path) -> str:
    """Hex md5 of a file's bytes, read in 1 MiB blocks (the hash DVC 3 records for a file output)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rehash_status(path: Path, entry: LockEntry, listing: dict[str, str] | None) -> dict[str, Any]:
    """A lock entry vs the bytes on disk, hashed here: a file against the locked md5, a directory file
    by file against its locked ``.dir`` listing (None: the listing is not in the cache -> unchecked)."""
    if not path.exists():
        return {"workspace": MISSING}
    if not entry.is_dir:
        actual = md5_of(path)
        return {"workspace": MATCH} if actual == entry.hash else {"workspace": MODIFIED, "workspace_hash": actual}
    if listing is None:
        return {"workspace": UNCHECKED}
    found = {p.relative_to(path).as_posix(): p for p in sorted(path.rglob("*")) if p.is_file()
             and p.name != ".gitignore"}
    changed = sorted(rel for rel, md5 in listing.items() if rel not in found or md5_of(found[rel]) != md5)
    extra = sorted(set(found) - set(listing))
    if not changed and not extra:
        return {"workspace": MATCH}
    return {"workspace": MODIFIED, "files_changed": changed, "files_extra": extra}


class Workspace:
    """Workspace hashes and locked objects through an open ``dvc.repo.Repo``.

    Hashes use DVC's ``build`` with the repo's state database (files unchanged
    since DVC last hashed them are not re-read); locked directory listings and
    files come from the local DVC cache.
    """

    def __init__(self, root: Path, repo: Any, rehash: bool = False) -> None:
        self.root = root
        self.repo = repo
        self.rehash = rehash
        self._hashes: dict[tuple[str, str | None], str | None] = {}
        self._params: dict[str, Any] = {}

    @classmethod
    @contextlib.contextmanager
    def open(cls, root: Path, rehash: bool = False) -> Iterator["Workspace"]:
        """Open the DVC repository at ``root`` (a one-line error if it is not one); ``rehash``: see
        :meth:`entry_status`."""
        from dvc.exceptions import NotDvcRepoError
        from dvc.repo import Repo

        try:
            repo = Repo(str(root))
        except NotDvcRepoError:
            raise HNeuronsError(f"{root}: not a DVC repository (use --no-workspace)") from None
        with repo:
            yield cls(root, repo, rehash)

    def _odb(self, hash_name: str | None) -> Any:
        return self.repo.cache.local if hash_name == "md5" else self.repo.cache.legacy

    def workspace_hash(self, path: str, hash_name: str | None) -> str | None:
        """DVC's hash of the workspace path (``.dir`` for directories), None if it does not exist."""
        key = (path, hash_name)
        if key not in self._hashes:
            from dvc_data.hashfile.build import build

            odb = self._odb(hash_name)
            try:
                _, _, obj = build(odb, os.path.join(self.repo.root_dir, path), odb.fs,
                                  "md5" if hash_name == "md5" else "md5-dos2unix",
                                  ignore=self.repo.dvcignore, dry_run=True)
                self._hashes[key] = obj.hash_info.value
            except FileNotFoundError:
                self._hashes[key] = None
        return self._hashes[key]

    def entry_status(self, entry: LockEntry) -> dict[str, Any]:
        """``{workspace: match|modified|missing|unchecked[, workspace_hash]}`` for a lock entry.

        With ``rehash`` every md5 output is read anew (:func:`rehash_status`), trusting neither DVC's
        state database nor the cache's file objects (only a directory's ``.dir`` listing).
        """
        if entry.hash is None or entry.hash_name not in ("md5", None):
            return {"workspace": UNCHECKED}
        if self.rehash and entry.hash_name == "md5":
            listing = self.locked_listing(entry) if entry.is_dir else None
            return rehash_status(self.root / entry.path, entry, listing)
        actual = self.workspace_hash(entry.path, entry.hash_name)
        if actual is None:
            return {"workspace": MISSING}
        if actual == entry.hash:
            return {"workspace": MATCH}
        return {"workspace": MODIFIED, "workspace_hash": actual}

    def locked_bytes(self, value: str, hash_name: str | None) -> bytes | None:
        """The bytes of a cached object (a file or a ``.dir`` listing), None if not in the cache."""
        try:
            return Path(self._odb(hash_name).oid_to_path(value)).read_bytes()
        except (OSError, ValueError):
            return None

    def locked_listing(self, entry: LockEntry) -> dict[str, str] | None:
        """``{relpath: md5}`` of a locked directory output, from its cached ``.dir`` object."""
        raw = self.locked_bytes(entry.hash, entry.hash_name) if entry.is_dir else None
        if raw is None:
            return None
        return {item["relpath"]: item["md5"] for item in json.loads(raw)}

    def fingerprint(self, entry: LockEntry) -> dict[str, Any] | None:
        """Selected fields of ``<dir>/fingerprint.json``: the locked copy if cached, else the workspace's."""
        if not entry.is_dir:
            return None
        listing = self.locked_listing(entry) or {}
        raw = self.locked_bytes(listing[FINGERPRINT_NAME], entry.hash_name) if FINGERPRINT_NAME in listing else None
        origin = "dvc cache (as locked)"
        if raw is None:
            path = self.root / entry.path / FINGERPRINT_NAME
            if not path.is_file():
                return None
            raw, origin = path.read_bytes(), "workspace"
        data = json.loads(raw)
        return {"read_from": origin, **{key: data.get(key) for key in FINGERPRINT_FIELDS if key in data}}

    def param_status(self, file: str, key: str, value: Any) -> str:
        """``match``, ``modified`` or ``missing`` for a locked param value vs the params file."""
        if file not in self._params:
            self._params[file] = _read_params(self.root / file)
        data = self._params[file]
        if data is None:
            return UNCHECKED
        node: Any = data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return MISSING
            node = node[part]
        return MATCH if node == value else MODIFIED

    def target_status(self, path: str, out: LockEntry) -> dict[str, Any]:
        """Lock vs workspace hash of a file inside a directory output (via the cached listing)."""
        listing = self.locked_listing(out)
        if listing is None:
            return {"hash": None, "workspace": UNCHECKED}
        relpath = path[len(out.path) + 1:]
        locked = listing.get(relpath)
        if locked is None:
            return {"hash": None, "workspace": "not in the locked listing"}
        actual = self.workspace_hash(path, out.hash_name)
        status = MATCH if actual == locked else (MISSING if actual is None else MODIFIED)
        return {"hash": locked, "workspace": status, **({"workspace_hash": actual} if status == MODIFIED else {})}


def _read_params(path: Path) -> Any:
    """A YAML/JSON params file's contents ({} if it is missing); None for other formats (not compared)."""
    if path.suffix not in (".yaml", ".yml", ".json"):
        return None
    if not path.is_file():
        return {}
    return load_yaml12(path.read_text(encoding="utf-8")) or {}


# ---------------------------------------------------------------- git

def _git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    except OSError:
        return None
    return result.stdout if result.returncode == 0 else None


GIT_CODES = {"M": "modified", "A": "added", "D": "deleted", "R": "renamed", "C": "copied", "T": "type changed",
             "U": "unmerged", "?": "untracked", "!": "ignored by git"}


def git_state(root: Path, paths: list[str]) -> dict[str, Any]:
    """HEAD, the commit that last changed dvc.lock, and uncommitted changes among ``paths``.

    ``uncommitted``: ``[{path, status}]`` from ``git status --porcelain --ignored``
    (``ignored by git`` marks an input that git does not version).
    """
    head = _git(root, "rev-parse", "HEAD")
    if head is None:
        return {"commit": None, "note": "not a git repository or no commit yet"}
    lock_commit = (_git(root, "log", "-1", "--format=%H", "--", LOCK_NAME) or "").strip() or None
    status = _git(root, "status", "--porcelain=v1", "-z", "--ignored", "--untracked-files=all", "--",
                  *paths) or ""
    uncommitted = []
    records = iter(status.split("\0"))
    for record in records:
        if len(record) < 4:
            continue
        code = record[:2]
        if "R" in code or "C" in code:
            next(records, None)  # the rename source follows as its own record
        letter = next((c for c in code if c != " "), "?")
        uncommitted.append({"path": record[3:], "status": GIT_CODES.get(letter, code.strip())})
    return {"commit": head.strip(), "lock_commit": lock_commit,
            "uncommitted": sorted(uncommitted, key=lambda item: item["path"])}


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
        with Workspace.open(root, rehash) as probe:
            if target != out.path:
                report["target_in_output"] = probe.target_status(target, out)
                if report["target_in_output"]["workspace"] == "not in the locked listing":
                    raise HNeuronsError(f"{target}: not produced by any stage in {LOCK_NAME} "
                                        f"(not in the locked listing of {out.path}, stage {stage.name})")
            tree = build_lineage(stages, stage.name, probe, depth)
    else:
        tree = build_lineage(stages, stage.name, NullProbe(), depth)
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
