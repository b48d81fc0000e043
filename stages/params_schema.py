"""The known keys of params.yaml and their types; ``validate`` checks a whole params mapping.

Every stage validates the full file when it loads it (``stages._common.load_params``), so a typo anywhere
stops the pipeline with one line naming the key and the closest known one. Without loading a model:

    python -m stages.params_schema [params.yaml]

Spec grammar: a ``dict`` lists a mapping's known keys; ``NAMED(spec)`` is a mapping of free names (models,
datasets, runs) whose values follow ``spec``; ``FAMILIES`` is a section's per-family overrides (each a
partial mapping of that section's other keys); a ``Leaf`` checks a value's type.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hneurons.errors import HNeuronsError


@dataclass(frozen=True)
class Leaf:
    """A value of one of ``kinds``: int, number, bool, str, list, mapping, any (``None`` also when nullable)."""

    kinds: tuple[str, ...]
    nullable: bool = False

    def check(self, value: Any) -> str | None:
        """None when ``value`` fits, else the expected kinds in words."""
        if value is None and self.nullable:
            return None
        for kind in self.kinds:
            if kind == "any" or _KIND_TESTS[kind](value):
                return None
        return " or ".join(self.kinds) + (" or null" if self.nullable else "")


_KIND_TESTS = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, list),
    "mapping": lambda v: isinstance(v, dict),
}


@dataclass(frozen=True)
class NAMED:
    """A mapping of free names to values following ``spec``."""

    spec: Any


FAMILIES = "families"   # marker: per-family overrides of the enclosing section

INT, NUM, BOOL, STR, LIST, MAP, ANY = (Leaf((k,)) for k in ("int", "number", "bool", "str", "list", "mapping", "any"))
INT_OR_NULL, NUM_OR_NULL, STR_OR_NULL = Leaf(("int",), True), Leaf(("number",), True), Leaf(("str",), True)
ROWS = Leaf(("list",), True)
PER_DATASET_INT = Leaf(("int", "mapping"), True)    # one count or {dataset: count}
DECODING = {"temperature": NUM, "top_k": INT, "top_p": NUM, "max_new_tokens": INT}

SOURCE = {"kind": STR, "path": STR, "name": STR, "config": STR_OR_NULL, "split": STR, "revision": STR,
          "data_files": ANY, "package": STR, "version": STR, "sha256": STR, "file": STR, "file_name": STR,
          "chat_template": STR, "parts": LIST, "repo": STR, "dtype": STR}
JUDGE = {"kind": STR, "base_url": STR, "model": STR, "api_key_env": STR}
# Generation backend (stages._common.BACKEND_KEYS says which keys each kind takes).
BACKEND = {"kind": STR, "gpu_memory_utilization": NUM, "max_model_len": INT_OR_NULL, "tensor_parallel_size": INT,
           "enforce_eager": BOOL, "batch_invariant": BOOL, "base_url": STR, "model": STR, "base_model": STR,
           "base_model_url": STR, "api_key_env": STR, "concurrency": INT, "timeout": NUM}

SCHEMA: dict[str, Any] = {
    "base": {"seed": INT, "threads": INT, "cache_dir": STR},
    "compute": {"families": FAMILIES, "device": STR, "dtype": STR, "backend": BACKEND},
    "models": NAMED({"family": STR, "role": STR, "source": SOURCE}),
    "datasets": NAMED({"format": STR, "source": SOURCE, "rows": ROWS, "splits": LIST, "templates": STR,
                       "template_row": INT, "reference": STR, "seed": INT, "n_options": INT}),
    "tune": {"families": FAMILIES, "trivia": {"dataset": STR, "rows": ROWS}, "premise": {"dataset": STR},
             "harmful": STR, "eval_datasets": LIST,
             "sizes": {"trivia": INT, "premise": INT, "refusal": INT, "abstain": INT},
             "n_check": Leaf(("int", "mapping")), "check_before_train": INT, "suffix_share": NUM,
             "max_length": INT, "steps": INT,
             "batch_size": INT, "length_group": INT, "lr": NUM, "warmup_steps": INT, "weight_decay": NUM,
             "max_grad_norm": NUM, "check": {"max_new_tokens": INT, "include_base": BOOL, "batch_size": INT}},
    "origin": {"families": FAMILIES, "datasets": LIST, "n_questions": PER_DATASET_INT, "decoding": DECODING,
               "batch_size": INT, "extract_batch_size": INT, "max_per_class": INT_OR_NULL, "n_boot": INT,
               "n_random_sets": INT},
    "sample": {"families": FAMILIES, "dataset": STR, "n_questions": INT_OR_NULL, "prompt": STR, "n_samples": INT,
               "temperature": NUM, "top_k": INT, "top_p": NUM, "max_new_tokens": INT, "min_agreement": NUM,
               "early_stop_after": LIST, "lazy_majority": BOOL, "max_per_class": INT_OR_NULL,
               "splits": {"train": NUM, "validation": NUM, "test": NUM}, "batch_size": INT, "judge": JUDGE},
    "extract": {"runs": NAMED({"family": STR, "role": STR, "dataset": STR, "shard": INT, "shards": INT}),
                "readout": STR,
                "region_variant": STR, "span_rule": STR, "annotation_file": STR, "batch_size": INT,
                "row_group_examples": INT, "cett_dtype": STR},
    "probe": {"families": FAMILIES, "dataset": STR, "labelling": STR, "C_grid": LIST, "tol": NUM,
              "standardize": BOOL, "solver": STR, "screen_size": INT, "max_add": INT, "kkt_tol": NUM,
              "max_iter": INT, "task": {"alpha": NUM, "n_questions": INT, "max_new_tokens": INT, "batch_size": INT},
              "n_bootstrap": INT, "n_random_seeds": INT, "baseline_C": NUM, "n_ci_boot": INT},
    "report": {"families": LIST},
    "detect": {"families": FAMILIES, "datasets": LIST, "n_questions": NAMED(INT_OR_NULL),
               "min_per_class": NAMED(INT_OR_NULL), "decoding": NAMED(DECODING), "batch_size": INT,
               "extract_batch_size": INT, "max_per_class": INT_OR_NULL, "n_boot": INT, "table_metric": STR,
               "judge_labels": STR, "judge_reference": STR},
    "intervene": {"families": FAMILIES, "benchmarks": LIST, "alphas": LIST, "random_alphas": LIST,
                  "n_random_sets": INT, "positions": STR, "n_items": NAMED(INT_OR_NULL), "screen": LIST,
                  "decoding": {"falseqa": DECODING, "faitheval_style": DECODING, "jailbreak": DECODING,
                               "sycophancy": {"open": DECODING, "mc": DECODING}},
                  "sycophancy_categories": LIST,
                  "capability": {"n_questions": INT, "decoding": DECODING},
                  "batch_size": INT, "n_boot": INT,
                  "judge": {"falseqa": STR, "faitheval_style": STR, "sycophancy": STR, "jailbreak": STR,
                            "llm": JUDGE}},
}


def validate(params: Any, source: str = "params.yaml") -> None:
    """Raise a one-line HNeuronsError at the first unknown key or mistyped value of ``params``."""
    if not isinstance(params, dict):
        raise HNeuronsError(f"{source}: expected a mapping of sections, got {type(params).__name__}")
    _check(params, SCHEMA, "", source)


def _check(value: Any, spec: Any, where: str, source: str) -> None:
    if isinstance(spec, Leaf):
        expected = spec.check(value)
        if expected is not None:
            hint = ""
            if isinstance(value, str) and "number" in spec.kinds and _is_float(value):
                hint = f" (YAML 1.1 reads {value} as text: write it with a dot, e.g. 1.0e-5)"
            raise HNeuronsError(f"{source}: {where}: expected {expected}, got {value!r}{hint}")
        return
    if not isinstance(value, dict):
        raise HNeuronsError(f"{source}: {where}: expected a mapping, got {value!r}")
    if isinstance(spec, NAMED):
        for name, item in value.items():
            _check(item, spec.spec, f"{where}.{name}", source)
        return
    for key, item in value.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in spec:
            raise HNeuronsError(f"{source}: {path}: unknown key{_closest(str(key), spec, where)}")
        if spec[key] == FAMILIES:
            _check_families(item, spec, path, source)
        else:
            _check(item, spec[key], path, source)


def _check_families(value: Any, section: dict[str, Any], where: str, source: str) -> None:
    if not isinstance(value, dict):
        raise HNeuronsError(f"{source}: {where}: expected a mapping family -> overrides ({{}} for none)")
    own = {key: spec for key, spec in section.items() if spec != FAMILIES}
    for family, overrides in value.items():
        _check(overrides or {}, own, f"{where}.{family}", source)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _closest(key: str, spec: dict[str, Any], where: str) -> str:
    match = difflib.get_close_matches(key, [str(k) for k in spec], n=1, cutoff=0.6)
    if not match:
        return f" (known: {', '.join(map(str, spec))})"
    return f" (did you mean {where + '.' if where else ''}{match[0]}?)"


def main(argv: list[str]) -> None:
    from stages._common import load_params

    path = Path(argv[0]) if argv else Path("params.yaml")
    params = load_params(path)
    print(f"{path}: ok ({len(params)} sections)")


if __name__ == "__main__":
    from stages._common import run

    run(main)
