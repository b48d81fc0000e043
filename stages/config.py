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
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, Union

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
Num = Annotated[Union[int, float], _kinds("number")]
Bool = Annotated[bool, _kinds("bool")]
Str = Annotated[str, _kinds("str")]
AnyList = Annotated[list[Any], _kinds("list")]
IntOrNull = Annotated[Optional[int], _kinds("int", nullable=True)]
StrOrNull = Annotated[Optional[str], _kinds("str", nullable=True)]
Rows = Annotated[Optional[list[Any]], _kinds("list", nullable=True)]
PerDatasetInt = Annotated[Union[int, dict[str, Any], None], _kinds("int", "mapping", nullable=True)]
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

    def require(self, where: str, *optional: str) -> "Section":
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
    kind: Optional[Str] = None
    path: Optional[Str] = None
    name: Optional[Str] = None
    config: StrOrNull = None
    split: Optional[Str] = None
    revision: Optional[Str] = None
    data_files: Any = None
    package: Optional[Str] = None
    version: Optional[Str] = None
    sha256: Optional[Str] = None
    file: Optional[Str] = None
    file_name: Optional[Str] = None
    chat_template: Optional[Str] = None
    parts: Optional[AnyList] = None
    repo: Optional[Str] = None
    dtype: Optional[Str] = None


class Judge(Section):
    kind: Optional[Str] = None
    base_url: Optional[Str] = None
    model: Optional[Str] = None
    api_key_env: Optional[Str] = None


class Backend(Section):
    """Generation engine (``stages._generation.BACKEND_KEYS`` says which keys each kind takes)."""

    kind: Optional[Str] = None
    gpu_memory_utilization: Optional[Num] = None
    max_model_len: IntOrNull = None
    tensor_parallel_size: Optional[Int] = None
    enforce_eager: Optional[Bool] = None
    batch_invariant: Optional[Bool] = None
    base_url: Optional[Str] = None
    model: Optional[Str] = None
    base_model: Optional[Str] = None
    base_model_url: Optional[Str] = None
    api_key_env: Optional[Str] = None
    concurrency: Optional[Int] = None
    timeout: Optional[Num] = None


# --- sections ---

class BaseSection(Section):
    seed: Optional[Int] = None
    threads: Optional[Int] = None
    cache_dir: Optional[Str] = None


class ComputeSection(Section):
    families: Optional[Families] = None
    device: Optional[Str] = None
    dtype: Optional[Str] = None
    backend: Optional[Backend] = None


class ModelSpec(Section):
    family: Optional[Str] = None
    role: Optional[Str] = None
    source: Optional[Source] = None


class DatasetSpec(Section):
    format: Optional[Str] = None
    source: Optional[Source] = None
    rows: Rows = None
    splits: Optional[AnyList] = None
    templates: Optional[Str] = None
    template_row: Optional[Int] = None
    reference: Optional[Str] = None
    seed: Optional[Int] = None
    n_options: Optional[Int] = None


class TuneTrivia(Section):
    dataset: Optional[Str] = None
    rows: Rows = None


class TunePremise(Section):
    dataset: Optional[Str] = None


class TuneSizes(Section):
    trivia: Optional[Int] = None
    premise: Optional[Int] = None
    refusal: Optional[Int] = None
    abstain: Optional[Int] = None


class TuneCheck(Section):
    """The greedy behaviour check of base and twin."""

    max_new_tokens: Optional[Int] = None
    include_base: Optional[Bool] = None
    batch_size: Optional[Annotated[int, _at_least(1)]] = None


class TuneSection(Section):
    families: Optional[Families] = None
    trivia: Optional[TuneTrivia] = None
    premise: Optional[TunePremise] = None
    harmful: Optional[Str] = None
    eval_datasets: Optional[AnyList] = None
    sizes: Optional[TuneSizes] = None
    n_check: Annotated[Union[int, dict[str, Any], None], _kinds("int", "mapping")] = None
    check_before_train: Optional[Annotated[int, _at_least(0)]] = None
    suffix_share: Optional[Num] = None
    max_length: Optional[Int] = None
    steps: Optional[Int] = None
    batch_size: Optional[Int] = None
    length_group: Optional[Int] = None
    lr: Optional[Num] = None
    warmup_steps: Optional[Int] = None
    weight_decay: Optional[Num] = None
    max_grad_norm: Optional[Num] = None
    check: Optional[TuneCheck] = None


class OriginSection(Section):
    families: Optional[Families] = None
    datasets: Optional[AnyList] = None
    n_questions: PerDatasetInt = None
    decoding: Optional[Decoding] = None
    batch_size: Optional[Annotated[int, _at_least(1)]] = None
    extract_batch_size: Optional[Annotated[int, _at_least(1)]] = None
    max_per_class: Annotated[Optional[int], _at_least_or_null(1)] = None
    n_boot: Optional[Annotated[int, _at_least(0)]] = None
    n_random_sets: Optional[Annotated[int, _at_least(0)]] = None


class Splits(Section):
    train: Optional[Num] = None
    validation: Optional[Num] = None
    test: Optional[Num] = None


class SampleSection(Section):
    families: Optional[Families] = None
    dataset: Optional[Str] = None
    n_questions: IntOrNull = None
    prompt: Optional[Str] = None
    n_samples: Optional[Int] = None
    decoding: Optional[Decoding] = None
    min_agreement: Optional[Num] = None
    early_stop_after: Optional[AnyList] = None
    lazy_majority: Optional[Bool] = None
    max_per_class: IntOrNull = None
    splits: Optional[Splits] = None
    batch_size: Optional[Int] = None
    judge: Optional[Judge] = None


class ExtractRun(Section):
    family: Optional[Str] = None
    role: Optional[Str] = None
    dataset: Optional[Str] = None
    shard: Optional[Int] = None
    shards: Optional[Int] = None


class ExtractSection(Section):
    runs: Optional[Annotated[dict[str, ExtractRun], BeforeValidator(_mapping)]] = None
    readout: Optional[Str] = None
    region_variant: Optional[Str] = None
    span_rule: Optional[Str] = None
    annotation_file: Optional[Str] = None
    batch_size: Optional[Annotated[int, _at_least(1)]] = None
    row_group_examples: Optional[Annotated[int, _at_least(1)]] = None
    cett_dtype: Optional[Str] = None


class ProbeTask(Section):
    """The C criterion's second term: greedy accuracy with the H-Neurons scaled by ``alpha``."""

    alpha: Optional[Annotated[Union[int, float], BeforeValidator(_finite)]] = None
    n_questions: Optional[Annotated[int, _at_least(0)]] = None
    max_new_tokens: Optional[Annotated[int, _at_least(1)]] = None
    batch_size: Optional[Annotated[int, _at_least(1)]] = None


class ProbeSection(Section):
    families: Optional[Families] = None
    dataset: Optional[Str] = None
    labelling: Optional[Annotated[Literal["3-vs-1", "1-vs-1"], _one_of("3-vs-1", "1-vs-1")]] = None
    C_grid: Optional[Annotated[list[float], BeforeValidator(_c_grid)]] = None
    tol: Optional[Annotated[Union[int, float], BeforeValidator(_positive)]] = None
    standardize: Optional[Annotated[bool, BeforeValidator(_true_or_false)]] = None
    solver: Optional[Annotated[Literal["working_set", "liblinear"], _one_of("working_set", "liblinear")]] = None
    screen_size: Optional[Annotated[int, _at_least(1)]] = None
    max_add: Optional[Annotated[int, _at_least(1)]] = None
    kkt_tol: Optional[Annotated[Union[int, float], BeforeValidator(_non_negative)]] = None
    max_iter: Optional[Annotated[int, _at_least(1)]] = None
    task: Optional[ProbeTask] = None
    n_bootstrap: Optional[Annotated[int, _at_least(0)]] = None
    n_random_seeds: Optional[Annotated[int, _at_least(5)]] = None
    baseline_C: Optional[Annotated[Union[int, float], BeforeValidator(_positive)]] = None
    n_ci_boot: Optional[Annotated[int, _at_least(0)]] = None


class ReportSection(Section):
    families: Optional[AnyList] = None


class DetectSection(Section):
    families: Optional[Families] = None
    datasets: Optional[AnyList] = None
    n_questions: Optional[Annotated[dict[str, IntOrNull], BeforeValidator(_mapping)]] = None
    min_per_class: Optional[Annotated[dict[str, IntOrNull], BeforeValidator(_mapping)]] = None
    decoding: Optional[Annotated[dict[str, Decoding], BeforeValidator(_mapping)]] = None
    batch_size: Optional[Annotated[int, _at_least(1)]] = None
    extract_batch_size: Optional[Annotated[int, _at_least(1)]] = None
    max_per_class: Annotated[Optional[int], _at_least_or_null(1)] = None
    n_boot: Optional[Annotated[int, _at_least(0)]] = None
    table_metric: Optional[Str] = None
    judge_labels: Optional[Str] = None
    judge_reference: Optional[Str] = None


class SycophancyDecoding(Section):
    open: Optional[Decoding] = None
    mc: Optional[Decoding] = None


class InterveneDecoding(Section):
    falseqa: Optional[Decoding] = None
    faitheval_style: Optional[Decoding] = None
    jailbreak: Optional[Decoding] = None
    sycophancy: Optional[SycophancyDecoding] = None


class Capability(Section):
    n_questions: Optional[Int] = None
    decoding: Optional[Decoding] = None


class InterveneJudge(Section):
    falseqa: Optional[Str] = None
    faitheval_style: Optional[Str] = None
    sycophancy: Optional[Str] = None
    jailbreak: Optional[Str] = None
    llm: Optional[Judge] = None


class InterveneSection(Section):
    families: Optional[Families] = None
    benchmarks: Optional[AnyList] = None
    alphas: Optional[AnyList] = None
    random_alphas: Optional[AnyList] = None
    n_random_sets: Optional[Annotated[int, _at_least(0)]] = None
    positions: Optional[Str] = None
    n_items: Optional[Annotated[dict[str, IntOrNull], BeforeValidator(_mapping)]] = None
    screen: Optional[AnyList] = None
    decoding: Optional[InterveneDecoding] = None
    sycophancy_categories: Optional[AnyList] = None
    capability: Optional[Capability] = None
    batch_size: Optional[Annotated[int, _at_least(1)]] = None
    n_boot: Optional[Annotated[int, _at_least(0)]] = None
    judge: Optional[InterveneJudge] = None


class Config(Section):
    """The whole params.yaml; ``raw`` keeps the values as written (lineage records them verbatim)."""

    base: Optional[BaseSection] = None
    compute: Optional[ComputeSection] = None
    models: Optional[Annotated[dict[str, ModelSpec], BeforeValidator(_mapping)]] = None
    datasets: Optional[Annotated[dict[str, DatasetSpec], BeforeValidator(_mapping)]] = None
    tune: Optional[TuneSection] = None
    origin: Optional[OriginSection] = None
    sample: Optional[SampleSection] = None
    extract: Optional[ExtractSection] = None
    probe: Optional[ProbeSection] = None
    report: Optional[ReportSection] = None
    detect: Optional[DetectSection] = None
    intervene: Optional[InterveneSection] = None

    _raw: dict[str, Any] = {}

    @property
    def raw(self) -> dict[str, Any]:
        """The params mapping this object was validated from (after family overrides)."""
        return self._raw

    def family(self, section: str, family: str) -> "Config":
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
