"""The workspace against ``dvc.lock``: DVC's hashes of workspace paths, locked objects from the DVC cache
(directory listings, model fingerprints), params values and git state.

Workspace hashes come from DVC itself (``dvc_data``'s ``build`` with the repository's
state database, the same code ``dvc status`` runs), so directories get DVC's ``.dir``
hash and unchanged files are not re-read; :func:`rehash_status` instead hashes from
the bytes. Only YAML/JSON params files are compared with the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hneurons.dvc_lock import LOCK_NAME, MATCH, MISSING, MODIFIED, UNCHECKED, LockEntry, load_yaml12
from hneurons.errors import HNeuronsError

FINGERPRINT_NAME = "fingerprint.json"
FINGERPRINT_FIELDS = ("source", "revision", "architecture", "model_type", "n_layers", "d_ffn", "dtype",
                      "weights_sha256", "tokenizer_sha256", "chat_template_sha256", "fingerprint")


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
    def open(cls, root: Path, rehash: bool = False) -> Iterator[Workspace]:
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

