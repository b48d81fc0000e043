"""The one HTTP client for OpenAI-compatible servers (the LLM judge, the ``openai`` generation backend).

Retries unreachable servers, HTTP 429 and 5xx with exponential backoff; any other failure is one
line naming the params key (``where``). The key comes from the constructor or the environment
variable ``api_key_env`` and is only ever sent in the Authorization header, never recorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hneurons.errors import HNeuronsError

T = TypeVar("T")


class OpenAIEndpoint:
    """``base_url`` such as ``http://127.0.0.1:8000/v1``; ``post("/completions", body, read)``."""

    def __init__(self, base_url: str, api_key: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, retries: int = 3, backoff: float = 1.0, where: str = "endpoint"):
        if not base_url:
            raise HNeuronsError(f"{where}.base_url: required")
        self.base_url = base_url.rstrip("/")
        self._key = api_key if api_key is not None else os.environ.get(api_key_env, "")
        self.key_source = "the api_key given" if api_key is not None else (
            f"${api_key_env}" if self._key else f"${api_key_env}, which is not set")
        self.timeout, self.retries, self.backoff, self.where = timeout, max(1, retries), backoff, where

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    def post(self, path: str, body: dict[str, Any], read: Callable[[Any], T], malformed: str) -> T:
        """``read(reply JSON)``; a ``read`` that raises KeyError/IndexError/TypeError/ValueError is a
        malformed reply (retried, then one line ending in ``malformed``); an HNeuronsError from ``read``
        stops at once."""
        import httpx

        url = f"{self.base_url}{path}"
        problem = ""
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                reply = httpx.post(url, json=body, headers=self._headers(), timeout=self.timeout)
            except httpx.HTTPError as exc:
                problem = f"unreachable ({type(exc).__name__})"
                continue
            if reply.status_code == 429 or reply.status_code >= 500:
                problem = f"HTTP {reply.status_code}"
                continue
            if reply.status_code in (401, 403):
                raise HNeuronsError(f"{self.where}.api_key_env: HTTP {reply.status_code} from {url}: the key "
                                    f"({self.key_source}) was refused")
            if reply.status_code != 200:
                raise HNeuronsError(f"{self.where}.base_url={self.base_url}: HTTP {reply.status_code} "
                                    f"from {url} (check {self.where}.model and the API key, {self.key_source})")
            try:
                return read(reply.json())
            except (ValueError, KeyError, IndexError, TypeError):
                problem = malformed
        raise HNeuronsError(f"{self.where}.base_url={self.base_url}: {problem} after {self.retries} tries")

    def get_json(self, url: str) -> Any:
        """GET ``url`` (absolute) once; the parsed JSON, or None on any failure (best-effort facts)."""
        import httpx

        try:
            reply = httpx.get(url, headers=self._headers(), timeout=self.timeout)
            return reply.json() if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None
