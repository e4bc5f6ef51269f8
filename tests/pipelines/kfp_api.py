"""A local HTTP server that speaks the few KFP REST API (v2beta1) calls ``submit`` and
``schedule`` make, with scripted responses, recording every request for the tests to inspect.

It is not a KFP backend: it checks what the client sends (paths, methods, bodies) and answers
with the smallest valid responses the KFP SDK's generated client parses.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

EXPERIMENT = {
    "experiment_id": "exp-1",
    "display_name": "query-rewrite",
    "created_at": "2026-11-26T00:00:00Z",
}


class KfpApi:
    def __init__(self, fail_with: int | None = None, run_ends: str = "SUCCEEDED") -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_with = fail_with
        self.run_ends = run_ends
        self.experiments: list[dict[str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                api.requests.append(
                    {"method": method, "path": url.path, "query": parse_qs(url.query), "body": body}
                )
                if api.fail_with and method == "POST":
                    self._reply(api.fail_with, {"error": "scripted failure", "code": 16})
                    return
                self._reply(200, api.answer(method, url.path, body))

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, method: str, path: str, body: Any) -> dict[str, Any]:
        if path.endswith("/experiments") and method == "GET":
            return {"experiments": self.experiments, "total_size": len(self.experiments)}
        if path.endswith("/experiments") and method == "POST":
            self.experiments = [{**EXPERIMENT, "display_name": body["display_name"]}]
            return self.experiments[0]
        if path.endswith("/runs") and method == "POST":
            return {
                "run_id": "run-1",
                "display_name": body.get("display_name", ""),
                "state": "PENDING",
            }
        if path.endswith("/runs/run-1") and method == "GET":  # --wait polls the run
            return {"run_id": "run-1", "state": self.run_ends}
        if path.endswith("/recurringruns") and method == "POST":
            return {
                "recurring_run_id": "rr-1",
                "display_name": body["display_name"],
                "status": "ENABLED",
            }
        return {}

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> KfpApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
