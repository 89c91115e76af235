"""A small HTTP server that records every request it gets (method, path, headers) and answers
each with a SCIM 401: the stand-in for "a new origin" in the test that a saved token never
follows a changed base URL."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RecordingServer:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with recorder._lock:
                    recorder.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items())})
                body = json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "401",
                                   "detail": "recording server: no credentials are accepted here"}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/scim+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args) -> None:  # quiet: the test reads self.requests
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def authorization_headers(self) -> list[str]:
        with self._lock:
            return [v for r in self.requests for k, v in r["headers"].items() if k.lower() == "authorization"]

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
