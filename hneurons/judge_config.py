"""The intervene stage's judge per compliance benchmark, as named in params (:func:`compliance_judges`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hneurons.errors import HNeuronsError
from hneurons.llm_judge import llm_judge


def compliance_judges(spec: Mapping[str, Any] | None, benchmarks: Sequence[str], section: str = "intervene"):
    """hneurons.compliance.Judges from ``<section>.judge``: {benchmark: rule | llm, llm: {base_url, model,
    api_key_env}} (a benchmark not named uses its rule judge)."""
    from hneurons import compliance as C

    spec = dict(spec or {})
    endpoint = spec.pop("llm", None) or {}
    unknown = sorted(set(spec) - set(C.BENCHMARKS))
    if unknown:
        known = ", ".join(C.BENCHMARKS)
        raise HNeuronsError(f"{section}.judge: unknown benchmark {unknown[0]!r} (known: {known}, llm)")
    llm = {}
    for bench in benchmarks:
        kind = spec.get(bench, "rule")
        if kind == "llm":
            llm[bench] = llm_judge(endpoint, f"{section}.judge.llm")
        elif kind != "rule":
            raise HNeuronsError(f"{section}.judge.{bench}={kind!r}: expected 'rule' or 'llm'")
    return C.Judges(llm)
