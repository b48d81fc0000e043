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
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from hneurons.errors import HNeuronsError

PARAMS_FILE = Path("params.yaml")


def _fail(text: str) -> PydanticCustomError:
    """An error whose text follows the dotted key (``": expected int, got 'x'"`` or ``"=2: expected ..."``)."""
    return PydanticCustomError("hneurons", "{text}", {"text": text})


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_KIND_TESTS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, list),
    "mapping": lambda v: isinstance(v, dict),
}


def _kinds(*kinds: str, nullable: bool = False) -> BeforeValidator:
    """A value of one of ``kinds`` (``None`` too when ``nullable``), else one line naming them."""

    def check(value: Any) -> Any:
        if (value is None and nullable) or any(_KIND_TESTS[kind](value) for kind in kinds):
            return value
        hint = ""
        if isinstance(value, str) and "number" in kinds and _is_float(value):
            hint = f" (YAML 1.1 reads {value} as text: write it with a dot, e.g. 1.0e-5)"
        expected = " or ".join(kinds) + (" or null" if nullable else "")
        raise _fail(f": expected {expected}, got {value!r}{hint}")

    return BeforeValidator(check)


def _mapping(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _fail(f": expected a mapping, got {value!r}")
    return value


def _families_mapping(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _fail(": expected a mapping family -> overrides ({} for none)")
    return value


Int = Annotated[int, _kinds("int")]
Num = Annotated[int | float, _kinds("number")]
Bool = Annotated[bool, _kinds("bool")]
Str = Annotated[str, _kinds("str")]
AnyList = Annotated[list[Any], _kinds("list")]
IntOrNull = Annotated[int | None, _kinds("int", nullable=True)]
StrOrNull = Annotated[str | None, _kinds("str", nullable=True)]
Rows = Annotated[list[Any] | None, _kinds("list", nullable=True)]
PerDatasetInt = Annotated[int | dict[str, Any] | None, _kinds("int", "mapping", nullable=True)]
Families = Annotated[dict[str, Any], BeforeValidator(_families_mapping)]


def _at_least(minimum: int) -> BeforeValidator:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _fail(f"={value!r}: expected an integer >= {minimum}")
        return value

    return BeforeValidator(check)


def _at_least_or_null(minimum: int) -> BeforeValidator:
    def check(value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise _fail(f"={value!r}: expected null or an integer >= {minimum}")
        return value

    return BeforeValidator(check)


def _positive(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise _fail(f"={value!r}: expected a number > 0")
    return value


def _non_negative(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _fail(f"={value!r}: expected a number >= 0")
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(f"={value!r}: expected a finite number")
    return value


def _one_of(*choices: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if value not in choices:
            raise _fail(f"={value!r}: expected one of {', '.join(choices)}")
        return value

    return BeforeValidator(check)


def _true_or_false(value: Any) -> Any:
    if not isinstance(value, bool):
        raise _fail(f"={value!r}: expected true or false")
    return value


def _c_grid(value: Any) -> list[float]:
    if not isinstance(value, (list, tuple)) or not value:
        raise _fail(": expected a non-empty list of numbers > 0")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item) or item <= 0:
            raise _fail(f": every C must be a finite number > 0 (got {item!r})")
    return sorted({float(item) for item in value})


class Section(BaseModel):
    """A mapping with known keys: an unknown one is an error naming the closest known key. A key may be
    absent at load time (a stage that uses it asks ``require``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def require(self, where: str, *optional: str) -> Section:
        """Self, or a one-line error naming the first key (other than ``optional`` ones) params.yaml leaves out."""
        for name, field in type(self).model_fields.items():
            if name in self.model_fields_set or name in optional or name == "families":
                continue
            if field.default is None:
                raise HNeuronsError(f"params.yaml: missing {where}.{name}")
        for name in self.model_fields_set - set(optional):
            value = getattr(self, name)
            if isinstance(value, Section):
                value.require(f"{where}.{name}")
        return self

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise _fail(f": expected a mapping, got {data!r}")
        known = list(cls.model_fields)
        for key in data:
            if key not in known:
                raise PydanticCustomError("hneurons_unknown", "unknown key",
                                          {"key": str(key), "known": ", ".join(known), "nested": cls._nested(key)})
        return data

    @classmethod
    def _nested(cls, key: Any) -> str:
        """``<field>.<key>`` when a mapping field of this section has ``key`` (a key that moved down a level)."""
        for name, field in cls.model_fields.items():
            for candidate in getattr(field.annotation, "__args__", (field.annotation,)):
                if isinstance(candidate, type) and issubclass(candidate, Section) and key in candidate.model_fields:
                    return f"{name}.{key}"
        return ""


# --- shared shapes ---

class Decoding(Section):
    """Decoding of one generation use; ``temperature`` 0 is greedy (top_k/top_p unused).
    ``stages._generation.decoding_settings`` turns it into the library's ``DecodingSettings``."""

    temperature: Num
    top_k: Int = 50
    top_p: Num = 0.9
    max_new_tokens: Int


class Source(Section):
    kind: Str | None = None
    path: Str | None = None
    name: Str | None = None
    config: StrOrNull = None
    split: Str | None = None
    revision: Str | None = None
    data_files: Any = None
    package: Str | None = None
    version: Str | None = None
    sha256: Str | None = None
    file: Str | None = None
    file_name: Str | None = None
    chat_template: Str | None = None
    parts: AnyList | None = None
    repo: Str | None = None
    dtype: Str | None = None


class Judge(Section):
    kind: Str | None = None
    base_url: Str | None = None
    model: Str | None = None
    api_key_env: Str | None = None


class Backend(Section):
    """Generation engine (``stages._generation.BACKEND_KEYS`` says which keys each kind takes)."""

    kind: Str | None = None
    gpu_memory_utilization: Num | None = None
    max_model_len: IntOrNull = None
    tensor_parallel_size: Int | None = None
    enforce_eager: Bool | None = None
    batch_invariant: Bool | None = None
    base_url: Str | None = None
    model: Str | None = None
    base_model: Str | None = None
    base_model_url: Str | None = None
    api_key_env: Str | None = None
    concurrency: Int | None = None
    timeout: Num | None = None


# --- sections ---

class BaseSection(Section):
    seed: Int | None = None
    threads: Int | None = None
    cache_dir: Str | None = None


class ComputeSection(Section):
    families: Families | None = None
    device: Str | None = None
    dtype: Str | None = None
    backend: Backend | None = None


class ModelSpec(Section):
    family: Str | None = None
    role: Str | None = None
    source: Source | None = None


class DatasetSpec(Section):
    format: Str | None = None
    source: Source | None = None
    rows: Rows = None
    splits: AnyList | None = None
    templates: Str | None = None
    template_row: Int | None = None
    reference: Str | None = None
    seed: Int | None = None
    n_options: Int | None = None


class TuneTrivia(Section):
    dataset: Str | None = None
    rows: Rows = None


class TunePremise(Section):
    dataset: Str | None = None


class TuneSizes(Section):
    trivia: Int | None = None
    premise: Int | None = None
    refusal: Int | None = None
    abstain: Int | None = None


class TuneCheck(Section):
    """The greedy behaviour check of base and twin."""

    max_new_tokens: Int | None = None
    include_base: Bool | None = None
    batch_size: Annotated[int, _at_least(1)] | None = None


class TuneSection(Section):
    families: Families | None = None
    trivia: TuneTrivia | None = None
    premise: TunePremise | None = None
    harmful: Str | None = None
    eval_datasets: AnyList | None = None
    sizes: TuneSizes | None = None
    n_check: Annotated[int | dict[str, Any] | None, _kinds("int", "mapping")] = None
    check_before_train: Annotated[int, _at_least(0)] | None = None
    suffix_share: Num | None = None
    max_length: Int | None = None
    steps: Int | None = None
    batch_size: Int | None = None
    length_group: Int | None = None
    lr: Num | None = None
    warmup_steps: Int | None = None
    weight_decay: Num | None = None
    max_grad_norm: Num | None = None
    check: TuneCheck | None = None


class OriginSection(Section):
    families: Families | None = None
    datasets: AnyList | None = None
    n_questions: PerDatasetInt = None
    decoding: Decoding | None = None
    batch_size: Annotated[int, _at_least(1)] | None = None
    extract_batch_size: Annotated[int, _at_least(1)] | None = None
    max_per_class: Annotated[int | None, _at_least_or_null(1)] = None
    n_boot: Annotated[int, _at_least(0)] | None = None
    n_random_sets: Annotated[int, _at_least(0)] | None = None


class Splits(Section):
    train: Num | None = None
    validation: Num | None = None
    test: Num | None = None


class SampleSection(Section):
    families: Families | None = None
    dataset: Str | None = None
    n_questions: IntOrNull = None
    prompt: Str | None = None
    n_samples: Int | None = None
    decoding: Decoding | None = None
    min_agreement: Num | None = None
    early_stop_after: AnyList | None = None
    lazy_majority: Bool | None = None
    max_per_class: IntOrNull = None
    splits: Splits | None = None
    batch_size: Int | None = None
    judge: Judge | None = None


class ExtractRun(Section):
    family: Str | None = None
    role: Str | None = None
    dataset: Str | None = None
    shard: Int | None = None
    shards: Int | None = None


class ExtractSection(Section):
    runs: Annotated[dict[str, ExtractRun], BeforeValidator(_mapping)] | None = None
    readout: Str | None = None
    region_variant: Str | None = None
    span_rule: Str | None = None
    annotation_file: Str | None = None
    batch_size: Annotated[int, _at_least(1)] | None = None
    row_group_examples: Annotated[int, _at_least(1)] | None = None
    cett_dtype: Str | None = None


class ProbeTask(Section):
    """The C criterion's second term: greedy accuracy with the H-Neurons scaled by ``alpha``."""

    alpha: Annotated[int | float, BeforeValidator(_finite)] | None = None
    n_questions: Annotated[int, _at_least(0)] | None = None
    max_new_tokens: Annotated[int, _at_least(1)] | None = None
    batch_size: Annotated[int, _at_least(1)] | None = None


class ProbeSection(Section):
    families: Families | None = None
    dataset: Str | None = None
    labelling: Annotated[Literal["3-vs-1", "1-vs-1"], _one_of("3-vs-1", "1-vs-1")] | None = None
    C_grid: Annotated[list[float], BeforeValidator(_c_grid)] | None = None
    tol: Annotated[int | float, BeforeValidator(_positive)] | None = None
    standardize: Annotated[bool, BeforeValidator(_true_or_false)] | None = None
    solver: Annotated[Literal["working_set", "liblinear"], _one_of("working_set", "liblinear")] | None = None
    screen_size: Annotated[int, _at_least(1)] | None = None
    max_add: Annotated[int, _at_least(1)] | None = None
    kkt_tol: Annotated[int | float, BeforeValidator(_non_negative)] | None = None
    max_iter: Annotated[int, _at_least(1)] | None = None
    task: ProbeTask | None = None
    n_bootstrap: Annotated[int, _at_least(0)] | None = None
    n_random_seeds: Annotated[int, _at_least(5)] | None = None
    baseline_C: Annotated[int | float, BeforeValidator(_positive)] | None = None
    n_ci_boot: Annotated[int, _at_least(0)] | None = None


class ReportSection(Section):
    families: AnyList | None = None


class DetectSection(Section):
    families: Families | None = None
    datasets: AnyList | None = None
    n_questions: Annotated[dict[str, IntOrNull], BeforeValidator(_mapping)] | None = None
    min_per_class: Annotated[dict[str, IntOrNull], BeforeValidator(_mapping)] | None = None
    decoding: Annotated[dict[str, Decoding], BeforeValidator(_mapping)] | None = None
    batch_size: Annotated[int, _at_least(1)] | None = None
    extract_batch_size: Annotated[int, _at_least(1)] | None = None
    max_per_class: Annotated[int | None, _at_least_or_null(1)] = None
    n_boot: Annotated[int, _at_least(0)] | None = None
    table_metric: Str | None = None
    judge_labels: Str | None = None
    judge_reference: Str | None = None


class SycophancyDecoding(Section):
    open: Decoding | None = None
    mc: Decoding | None = None


class InterveneDecoding(Section):
    falseqa: Decoding | None = None
    faitheval_style: Decoding | None = None
    jailbreak: Decoding | None = None
    sycophancy: SycophancyDecoding | None = None


class Capability(Section):
    n_questions: Int | None = None
    decoding: Decoding | None = None


class InterveneJudge(Section):
    falseqa: Str | None = None
    faitheval_style: Str | None = None
    sycophancy: Str | None = None
    jailbreak: Str | None = None
    llm: Judge | None = None


class InterveneSection(Section):
    families: Families | None = None
    benchmarks: AnyList | None = None
    alphas: AnyList | None = None
    random_alphas: AnyList | None = None
    n_random_sets: Annotated[int, _at_least(0)] | None = None
    positions: Str | None = None
    n_items: Annotated[dict[str, IntOrNull], BeforeValidator(_mapping)] | None = None
    screen: AnyList | None = None
    decoding: InterveneDecoding | None = None
    sycophancy_categories: AnyList | None = None
    capability: Capability | None = None
    batch_size: Annotated[int, _at_least(1)] | None = None
    n_boot: Annotated[int, _at_least(0)] | None = None
    judge: InterveneJudge | None = None


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


if __name__ == "__main__":
    from stages._common import run

    run(main)
