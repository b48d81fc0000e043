"""Reading ``dvc.lock``: its stages, their deps and outs with hashes, and which stage wrote a path.

Only the ``dvc.lock`` at the repository root is read (hneurons has one); paths are
POSIX and relative to it. :func:`lock_output_hashes` gives ``{out path: hash}``
for every output in a lock file, for comparing two reproductions byte for byte.
Params values are read as YAML 1.2 (:class:`Yaml12Loader`), as DVC writes them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hneurons.errors import HNeuronsError

LOCK_NAME = "dvc.lock"
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
    return yaml.load(text, Loader=Yaml12Loader)


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

