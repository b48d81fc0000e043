"""The 'Deviations from the paper' table: the params a run used against :data:`~hneurons.report.paper.PAPER_SETTINGS`.

Rows are plain dicts ``{key, value, paper, where, what, status}``; the model specs
and dataset stand-ins get rows of their own, and so does each per-family override
of a compared setting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hneurons.report.markdown import md_table, value_text
from hneurons.report.paper import FAMILY_SECTIONS, PAPER_MODEL_IDS, PAPER_SETTINGS


def _dotted(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (leaves only)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def family_override_values(values: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """Per-family overrides of compared settings: ``{"sample.families.<f>.n_samples": ("sample.n_samples", 3)}``.

    values: as for :func:`deviations`; each ``<section>.families`` mapping is read for
    overrides whose dotted key is a compared setting (nested mappings are flattened).
    """
    compared = {s.key for s in PAPER_SETTINGS}
    out: dict[str, tuple[str, Any]] = {}
    for section in FAMILY_SECTIONS:
        families = values.get(f"{section}.families")
        if not isinstance(families, Mapping):
            continue
        for family, overrides in families.items():
            for key, value in _dotted(overrides or {}).items():
                if f"{section}.{key}" in compared:
                    out[f"{section}.families.{family}.{key}"] = (f"{section}.{key}", value)
    return out


def _same(a: Any, b: Any) -> bool:
    """Equality with numbers compared as floats (1 == 1.0), recursively through lists and dicts."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b and type(a) is type(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def model_deviation(models: Mapping[str, Any]) -> dict[str, Any] | None:
    """A deviations row for the model specs (``params.models``) when no instruct spec is a paper model."""
    sources = {}
    for name, spec in sorted((models or {}).items()):
        source = (spec or {}).get("source") or {}
        sources[name] = source.get("repo") or source.get("file") or source.get("file_name") or source.get("path")
    if any(value in PAPER_MODEL_IDS for value in sources.values()):
        return None
    return {"key": "models", "value": sources, "paper": list(PAPER_MODEL_IDS), "where": "§1 [P]",
            "what": "six 4B-70B instruct models", "status": "differs"}


def dataset_deviations(datasets: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows for datasets configured as stand-ins for the paper's (today: the FaithEval-style set)."""
    rows = []
    spec = (datasets or {}).get("faitheval_style")
    if spec is not None and "faitheval" not in (datasets or {}):
        rows.append({"key": "datasets.faitheval_style",
                     "value": {k: spec.get(k) for k in ("format", "rows", "n_options") if k in spec},
                     "paper": "FaithEval counterfactual subset (1,000 MC items with context)", "where": "§6.2 [P]",
                     "what": "FaithEval (Ming et al. 2024)", "status": "differs"})
    return rows


def deviations(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Compare the params actually used with the paper's settings.

    values: ``{dotted key: value}`` for the keys of :data:`setting_keys` present in
    the params, plus optionally ``models`` and ``datasets`` (whole sections). A family's
    override of a compared key (``sample.families.<family>.n_samples``) gets its own row.
    Returns rows ``{key, value, paper, where, what, status}`` with status
    ``differs`` / ``differs (paper unstated)`` / ``same`` / ``same (paper unstated)``,
    differences first, in table order otherwise.
    """
    by_key = {setting.key: setting for setting in PAPER_SETTINGS}
    compared = [(key, by_key[key], values[key]) for key in by_key if key in values]
    compared += [(key, by_key[target], value) for key, (target, value) in family_override_values(values).items()]
    rows = []
    for key, setting, value in compared:
        same = _same(value, setting.paper)
        status = ("same" if same else "differs") + (" (paper unstated)" if setting.presumed else "")
        rows.append({"key": key, "value": value, "paper": setting.paper, "where": setting.where,
                     "what": setting.what, "status": status})
    if "models" in values:
        row = model_deviation(values["models"])
        rows += [row] if row else []
    if "datasets" in values:
        rows += dataset_deviations(values["datasets"])
    return sorted(rows, key=lambda r: not r["status"].startswith("differs"))


def deviations_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The 'Deviations from the paper' section from :func:`deviations` rows."""
    n = sum(r["status"].startswith("differs") for r in rows)
    table = md_table(["setting", "this run", "paper", "paper says", "where (paper.md)", "status"],
                     [[f"`{r['key']}`", value_text(r["value"]), value_text(r["paper"]), r["what"], r["where"],
                       f"**{r['status']}**" if r["status"].startswith("differs") else r["status"]] for r in rows])
    return (f"{n} of {len(rows)} compared settings differ from the paper (generated from the params this run "
            f"used; 'paper unstated' = the paper leaves it open and the paper column is the suggested reading; "
            f"the reasons for each choice are in docs/params.md).\n\n{table}")
