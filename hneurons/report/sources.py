"""Provenance of the artifacts the report reads: md5, producing stage and ``dvc.lock`` status.

The md5 is the hash DVC records for a file; the stage and lock hash come from
``dvc.lock`` via :mod:`hneurons.dvc_lock`. Each section ends with a 'Source:' line
(:func:`source_line`) and the report with the table of every artifact read
(:func:`sources_markdown`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hneurons.report.markdown import md_table


def provenance(path: str, root: Path, lock: Mapping[str, Any] | None) -> dict[str, Any]:
    """Where an artifact came from: ``{path, md5, stage, lock_output, lock_hash, lock_status}``.

    path: repo-relative POSIX path of an existing file; lock: parsed ``dvc.lock``
    (``hneurons.dvc_lock.load_lock``) or None. ``lock_status``: ``matches`` (the file
    is a locked output with this md5), ``inside <dir>`` (a file of a locked
    directory output), ``differs`` (stale lock or edited file) or ``not in dvc.lock``.
    """
    from hneurons.dvc_lock import find_producer
    from hneurons.workspace_state import md5_of

    md5 = md5_of(root / path)
    found = find_producer(lock, path) if lock else None
    if found is None:
        return {"path": path, "md5": md5, "stage": None, "lock_output": None, "lock_hash": None,
                "lock_status": "not in dvc.lock"}
    stage, out = found
    if out.path != path:
        status = f"inside {out.path}"
    else:
        status = "matches" if out.hash == md5 else "differs"
    return {"path": path, "md5": md5, "stage": stage.name, "lock_output": out.path, "lock_hash": out.hash,
            "lock_status": status}


def source_line(prov: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown 'Source:' line naming each artifact, its stage, md5 and lock status."""
    parts = []
    for p in prov:
        stage = f"stage `{p['stage']}`" if p["stage"] else "no stage in dvc.lock"
        if p["lock_status"] == "matches":
            lock = "= dvc.lock"
        elif p["lock_status"].startswith("inside"):
            lock = f"in locked output `{p['lock_output']}` ({p['lock_hash']})"
        elif p["lock_status"] == "differs":
            lock = f"**differs from dvc.lock {p['lock_hash']}**"
        else:
            lock = "not in dvc.lock"
        parts.append(f"`{p['path']}` ({stage}, md5 `{p['md5']}` {lock})")
    return "Source: " + "; ".join(parts) + "."


def sources_markdown(read: Mapping[str, Mapping[str, Any]]) -> str:
    """Every artifact the report read: path, producing stage, md5, dvc.lock status."""
    rows = [[f"`{p['path']}`", f"`{p['stage']}`" if p["stage"] else "—", f"`{p['md5']}`",
             p["lock_status"] + (f" (`{p['lock_hash']}`)" if p["lock_status"].startswith("inside") else "")]
            for p in sorted(read.values(), key=lambda p: p["path"])]
    return ("Audit any of them with `python -m hneurons.lineage PATH` (params, dependency hashes up to the raw "
            "data and the model fingerprint, git state).\n\n"
            + md_table(["artifact", "stage", "md5", "dvc.lock"], rows))
