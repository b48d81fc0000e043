"""Typed params.yaml: one pydantic model per section; ``load_config`` reads and checks the whole file.

Every stage loads the full file, so a typo anywhere stops the pipeline with one line naming the dotted key
and the closest known one. Per-family overrides (``<section>.families.<family>``, a partial mapping of the
section's own keys; nested mappings merge key by key) are checked at load time and applied by
``Config.family``. Without loading a model:

    python -m stages.config [params.yaml]
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BeforeValidator, ValidationError

from hneurons.errors import HNeuronsError
from stages.config.fields import _mapping
from stages.config.sections import (
    BaseSection,
    ComputeSection,
    DatasetSpec,
    Decoding,
    DetectSection,
    ExtractRun,
    ExtractSection,
    InterveneSection,
    Judge,
    ModelSpec,
    OriginSection,
    ProbeSection,
    ReportSection,
    SampleSection,
    Section,
    SycophancyDecoding,
    TuneSection,
)

__all__ = ["PARAMS_FILE", "Config", "BaseSection", "ComputeSection", "DatasetSpec", "Decoding", "DetectSection",
           "ExtractRun", "ExtractSection", "InterveneSection", "Judge", "ModelSpec", "OriginSection", "ProbeSection",
           "ReportSection", "SampleSection", "Section", "SycophancyDecoding", "TuneSection", "family_params",
           "from_mapping", "load_config", "merge_overrides", "read_params"]

PARAMS_FILE = Path("params.yaml")


class Config(Section):
    """The whole params.yaml; ``raw`` keeps the values as written (lineage records them verbatim)."""

    base: BaseSection | None = None
    compute: ComputeSection | None = None
    models: Annotated[dict[str, ModelSpec], BeforeValidator(_mapping)] | None = None
    datasets: Annotated[dict[str, DatasetSpec], BeforeValidator(_mapping)] | None = None
    tune: TuneSection | None = None
    origin: OriginSection | None = None
    sample: SampleSection | None = None
    extract: ExtractSection | None = None
    probe: ProbeSection | None = None
    report: ReportSection | None = None
    detect: DetectSection | None = None
    intervene: InterveneSection | None = None

    _raw: dict[str, Any] = {}

    @property
    def raw(self) -> dict[str, Any]:
        """The params mapping this object was validated from (after family overrides)."""
        return self._raw

    def family(self, section: str, family: str) -> Config:
        """The config one family's ``section`` stage sees: ``<section>.families`` must list ``family``, and
        every section's ``families.<family>`` overrides replace that section's defaults."""
        return from_mapping(family_params(self._raw, section, family))


def _format(error: dict[str, Any], source: str) -> str:
    where = ".".join(str(part) for part in error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == "hneurons_unknown":
        key = ctx["key"]
        path = f"{where}.{key}" if where else key
        match = difflib.get_close_matches(key, ctx["known"].split(", "), n=1, cutoff=0.6) or (
            [ctx["nested"]] if ctx.get("nested") else [])
        hint = f" (did you mean {where + '.' if where else ''}{match[0]}?)" if match else f" (known: {ctx['known']})"
        return f"{source}: {path}: unknown key{hint}"
    if error["type"] == "hneurons":
        return f"{source}: {where}{ctx['text']}"
    return f"{source}: {where}: {error['msg']}"


def _validate(model: type[Section], data: Any, source: str, prefix: tuple[Any, ...] = ()) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = dict(exc.errors()[0])
        first["loc"] = prefix + tuple(first["loc"])
        raise HNeuronsError(_format(first, source)) from None


def from_mapping(params: Any, source: str = "params.yaml") -> Config:
    """``params`` checked (every section, every family's overrides) as a typed ``Config``."""
    if not isinstance(params, dict):
        raise HNeuronsError(f"{source}: expected a mapping of sections, got {type(params).__name__}")
    config = _validate(Config, params, source)
    for name, table in params.items():
        overrides = table.get("families") if isinstance(table, dict) else None
        if not isinstance(overrides, dict):
            continue
        model = Config.model_fields[name].annotation.__args__[0]   # Optional[<Section>]
        own = [key for key in model.model_fields if key != "families"]
        defaults = {key: value for key, value in table.items() if key != "families"}
        for family, override in overrides.items():
            where = (name, "families", family)
            if override is None:
                continue
            if not isinstance(override, dict):
                raise HNeuronsError(_format({"type": "hneurons", "loc": where,
                                             "ctx": {"text": f": expected a mapping, got {override!r}"}}, source))
            for key in override:
                if key not in own:
                    raise HNeuronsError(_format({"type": "hneurons_unknown", "loc": where,
                                                 "ctx": {"key": str(key), "known": ", ".join(own)}}, source))
            _validate(model, _merge(defaults, override), source, where)
    config._raw = params
    return config


def _merge(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml parsed (one-line error on a missing file or malformed YAML), not yet checked."""
    if not path.is_file():
        raise HNeuronsError(f"{path}: not found (run stages from the repository root)")
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HNeuronsError(f"{path}:{at}: malformed YAML ({problem})") from None


def load_config(path: Path = PARAMS_FILE) -> Config:
    """params.yaml read and checked as a typed ``Config`` (one-line error on a bad key or value)."""
    return from_mapping(read_params(path), str(path))


def family_params(params: dict[str, Any], section: str, family: str) -> dict[str, Any]:
    """``params`` as seen by one family's stage: ``<section>.families`` must list ``family``, and every
    section's ``families.<family>`` overrides (a mapping of that section's own top-level keys; nested
    mappings merge key by key) replace the section's defaults."""
    families = (params.get(section) or {}).get("families") if isinstance(params.get(section), dict) else None
    if families is None:
        raise HNeuronsError(f"params.yaml: missing {section}.families")
    if not isinstance(families, dict):
        raise HNeuronsError(f"{section}.families: expected a mapping family -> overrides ({{}} for none)")
    if family not in families:
        raise HNeuronsError(f"{section}.families: {family!r} is not listed ({', '.join(families) or 'none'})")
    resolved = dict(params)
    for name, table in params.items():
        overrides = table.get("families") if isinstance(table, dict) else None
        if not isinstance(overrides, dict) or family not in overrides:
            continue
        resolved[name] = merge_overrides(table, overrides[family] or {}, f"{name}.families.{family}")
    return resolved


def merge_overrides(defaults: dict[str, Any], overrides: Any, where: str, top: bool = True) -> dict[str, Any]:
    """``defaults`` with ``overrides`` over them key by key (nested mappings merged)."""
    if not isinstance(overrides, dict):
        raise HNeuronsError(f"{where}: expected a mapping of keys to override, got {overrides!r}")
    merged = dict(defaults)
    for key, value in overrides.items():
        if top and (key == "families" or key not in defaults):
            raise HNeuronsError(f"{where}.{key}: not an overridable key of this section")
        if isinstance(value, dict) and isinstance(defaults.get(key), dict):
            merged[key] = merge_overrides(defaults[key], value, f"{where}.{key}", top=False)
        else:
            merged[key] = value
    return merged


def main(argv: list[str]) -> None:
    path = Path(argv[0]) if argv else PARAMS_FILE
    config = load_config(path)
    print(f"{path}: ok ({len(config.raw)} sections)")
