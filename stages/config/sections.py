"""One pydantic model per params.yaml section (unknown keys rejected, each field checked once)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from hneurons.errors import HNeuronsError
from stages.config.fields import (
    AnyList,
    Bool,
    Families,
    Int,
    IntOrNull,
    Num,
    PerDatasetInt,
    Rows,
    Str,
    StrOrNull,
    _at_least,
    _at_least_or_null,
    _c_grid,
    _fail,
    _finite,
    _kinds,
    _mapping,
    _non_negative,
    _one_of,
    _positive,
    _true_or_false,
)


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
