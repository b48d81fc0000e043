"""Judges named in params: an LLM judge's endpoint with environment fallbacks (:func:`llm_judge`) and
the intervene stage's judge per compliance benchmark (:func:`compliance_judges`)."""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from hneurons.errors import HNeuronsError


def llm_judge(config: Mapping[str, Any], where: str):
    """A :class:`hneurons.judge.LLMJudge` from ``config`` (base_url, model, api_key_env).

    base_url and model fall back to the environment variables HNEURONS_JUDGE_BASE_URL and
    HNEURONS_JUDGE_MODEL; the key is read only from the environment variable named by
    api_key_env (default OPENAI_API_KEY). ``where`` names the params key in errors.
    """
    from hneurons.judge import LLMJudge

    return LLMJudge(config.get("base_url") or os.environ.get("HNEURONS_JUDGE_BASE_URL", ""),
                    config.get("model") or os.environ.get("HNEURONS_JUDGE_MODEL", ""),
                    api_key_env=config.get("api_key_env") or "OPENAI_API_KEY",
                    where=where)


def compliance_judges(spec: Mapping[str, Any] | None, benchmarks: Sequence[str], section: str = "intervene"):
    """hneurons.compliance.Judges from ``<section>.judge``: {benchmark: rule | llm, llm: {base_url, model,
    api_key_env}} (a benchmark not named uses its rule judge)."""
    from hneurons import compliance as C

    spec = dict(spec or {})
    endpoint = spec.pop("llm", None) or {}
    unknown = sorted(set(spec) - set(C.BENCHMARKS))
    if unknown:
        raise HNeuronsError(f"{section}.judge: unknown benchmark {unknown[0]!r} (known: {', '.join(C.BENCHMARKS)}, llm)")
    llm = {}
    for bench in benchmarks:
        kind = spec.get(bench, "rule")
        if kind == "llm":
            llm[bench] = llm_judge(endpoint, f"{section}.judge.llm")
        elif kind != "rule":
            raise HNeuronsError(f"{section}.judge.{bench}={kind!r}: expected 'rule' or 'llm'")
    return C.Judges(llm)
