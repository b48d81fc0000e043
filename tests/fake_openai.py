"""Local OpenAI-compatible endpoints (127.0.0.1, a free port, no network): chat for judge tests, completions
with token ids for the openai generation backend."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer


class FakeEndpoint:
    """Serves ``POST <url>/chat/completions``: the reply is ``reply(prompt)`` for the first user
    message, with HTTP ``status``; every request is recorded in ``seen`` as {path, auth, body}. Use as a context manager."""

    def __init__(self, reply: Callable[[str], str], status: int = 200):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                content = reply(body["messages"][0]["content"])
                payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeEndpoint:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def prompts(self) -> list[str]:
        return [request["body"]["messages"][0]["content"] for request in self.seen]


class FakeCompletions:
    """A vLLM-like ``/v1/completions`` server on 127.0.0.1 backed by an in-process generation backend.

    Answers like vLLM 0.30.0 with ``return_token_ids``: ``choices[0].token_ids`` are the generated ids
    *including* the stop token that ended the row (as vLLM reports it); ``token_ids=False`` leaves them
    out (a server that ignores return_token_ids). Also ``GET /version`` and ``GET /v1/models``. Every
    completion body is recorded in ``bodies``. Requests are served on threads, generation one at a time.
    """

    def __init__(self, backend, stop_id: int, served: str = "tiny", token_ids: bool = True):
        from http.server import ThreadingHTTPServer

        from hneurons.generate import DecodingSettings

        bodies = self.bodies = []
        lock = threading.Lock()

        def complete(body: dict) -> dict:
            settings = DecodingSettings(n_samples=1, temperature=body["temperature"], top_k=max(body["top_k"], 0),
                                        top_p=body["top_p"], max_new_tokens=body["max_tokens"])
            seeds = None if body["seed"] is None else [body["seed"]]
            with lock:
                ids = backend.generate([body["prompt"]], settings, seeds, 1)[0]
            stopped = len(ids) < body["max_tokens"]
            choice = {"index": 0, "text": "", "finish_reason": "stop" if stopped else "length"}
            if token_ids and body.get("return_token_ids"):
                choice["token_ids"] = ids + [stop_id] if stopped else ids
            return {"id": "cmpl-1", "object": "text_completion", "model": body["model"], "choices": [choice]}

        class Handler(BaseHTTPRequestHandler):
            def _send(self, payload: dict, status: int = 200) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/version":
                    self._send({"version": "stub-0.30.0"})
                elif self.path == "/v1/models":
                    self._send({"object": "list", "data": [{"id": served, "object": "model"}]})
                else:
                    self._send({"error": "not found"}, 404)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                bodies.append(body)
                if self.path != "/v1/completions" or body.get("model") != served:
                    self._send({"error": "not found"}, 404)
                    return
                self._send(complete(body))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeCompletions:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
