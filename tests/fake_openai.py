"""A local OpenAI-compatible chat endpoint for judge tests (127.0.0.1, a free port, no network)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable


class FakeEndpoint:
    """Serves ``POST <url>/chat/completions``: the reply is ``reply(prompt)`` for the first user
    message, with HTTP ``status``; every request is recorded in ``seen`` as {path, auth, body}. Use as a context manager."""

    def __init__(self, reply: Callable[[str], str], status: int = 200):
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
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

    def __enter__(self) -> "FakeEndpoint":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def prompts(self) -> list[str]:
        return [request["body"]["messages"][0]["content"] for request in self.seen]
