"""LLM judge (:class:`LLMJudge`).

Any OpenAI-compatible ``/chat/completions`` endpoint at temperature 0 with [C]'s prompt;
the reply is read as t/f. The refusal pre-filter runs first, as in [C] (it can be skipped
per call). The key comes from the constructor or an environment variable and is only ever
sent in the Authorization header, never recorded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hneurons.answers import find_alias
from hneurons.errors import HNeuronsError
from hneurons.judge import Judgement
from hneurons.refusal import refusal_outside

LLM_PROMPT = ("Question: {question}\nResponse: {response}\nCorrect Answers: {answers}\n"
              "Please judge whether the response is correct or not. Return 't' if the response is correct, "
              "and 'f' if the response is incorrect. Don't add any additional information.")


def parse_verdict(reply: str) -> bool | None:
    """t/true/correct/yes -> True, f/false/incorrect/no -> False, anything else None."""
    word = re.sub(r"[^a-z]", " ", reply.lower()).split()
    if not word:
        return None
    if word[0] in ("t", "true", "correct", "yes"):
        return True
    if word[0] in ("f", "false", "incorrect", "no", "wrong"):
        return False
    return None


class LLMJudge:
    """Correctness by an LLM over an OpenAI-compatible chat endpoint ([C]'s prompt, temperature 0).

    base_url: e.g. ``https://api.openai.com/v1`` (``/chat/completions`` is appended).
    The key is ``api_key`` if given, else ``os.environ[api_key_env]`` (may be empty
    for local servers). Refusals are decided by :func:`hneurons.refusal.is_refusal` without a call.
    Replies are memoized per (question, response, aliases). ``where`` prefixes error
    messages (e.g. the params key of the judge). ``name`` is ``llm:<model>``.
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0, retries: int = 3,
                 backoff: float = 1.0, where: str = "judge"):
        from hneurons.openai_http import OpenAIEndpoint

        if not base_url:
            raise HNeuronsError(f"{where}.base_url: required for the llm judge")
        if not model:
            raise HNeuronsError(f"{where}.model: required for the llm judge")
        self.endpoint = OpenAIEndpoint(base_url, api_key, api_key_env, timeout, retries, backoff, where)
        self.base_url, self.model, self.name = self.endpoint.base_url, model, f"llm:{model}"
        self.retries, self.where = self.endpoint.retries, where
        self._memo: dict[tuple[str, str, tuple[str, ...]], bool] = {}

    def _ask(self, prompt: str) -> str:
        body = {"model": self.model, "temperature": 0, "max_tokens": 5,
                "messages": [{"role": "user", "content": prompt}]}
        return self.endpoint.post("/chat/completions", body,
                                  lambda reply: str(reply["choices"][0]["message"]["content"]),
                                  "reply is not a chat completion")

    def check(self) -> None:
        """One request to the endpoint; raises the one-line HNeuronsError if it cannot be used."""
        self._ask("Reply with the single letter t.")

    def judge(self, question: str, response: str, aliases: Sequence[str], prefilter: bool = True) -> Judgement:
        """Correctness by the endpoint; with ``prefilter`` a refusal (:func:`refusal_outside`) is wrong
        without a call."""
        span = find_alias(response, aliases, question)
        refusal = refusal_outside(response, span)
        if refusal and prefilter:
            return Judgement(correct=False, refusal=True, span=span, judge=self.name)
        key = (question, response.strip(), tuple(aliases))
        if key not in self._memo:
            prompt = LLM_PROMPT.format(question=question, response=response.strip(), answers=list(aliases))
            verdict = None
            for _ in range(self.retries):
                verdict = parse_verdict(self._ask(prompt))
                if verdict is not None:
                    break
            if verdict is None:
                raise HNeuronsError(f"{self.where}.model={self.model}: replies are not t/f")
            self._memo[key] = verdict
        return Judgement(correct=self._memo[key], refusal=refusal, span=span, judge=self.name)


def llm_judge(config: Mapping[str, Any], where: str) -> LLMJudge:
    """A :class:`hneurons.llm_judge.LLMJudge` from ``config`` (base_url, model, api_key_env).

    base_url and model fall back to the environment variables HNEURONS_JUDGE_BASE_URL and
    HNEURONS_JUDGE_MODEL; the key is read only from the environment variable named by
    api_key_env (default OPENAI_API_KEY). ``where`` names the params key in errors.
    """
    return LLMJudge(config.get("base_url") or os.environ.get("HNEURONS_JUDGE_BASE_URL", ""),
                    config.get("model") or os.environ.get("HNEURONS_JUDGE_MODEL", ""),
                    api_key_env=config.get("api_key_env") or "OPENAI_API_KEY",
                    where=where)
