"""A fake of VirusTotal API v3 file lookups, a real HTTP server on 127.0.0.1.

GET /api/v3/files/{sha256|sha1|md5} with header x-apikey, answering in v3's wire format (see
../shared/api-specs/README.md): 200 a file object, 404 NotFoundError, 429 QuotaExceededError once
`quota` lookups were answered, 401 WrongCredentialsError for another key. Records every request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ENGINES = 70


def file_object(content: bytes, malicious: int = 0, suspicious: int = 0) -> dict[str, Any]:
    """The v3 file object of `content` as GET /files/{id} returns it."""
    sha256 = hashlib.sha256(content).hexdigest()
    undetected = ENGINES - malicious - suspicious
    return {"data": {
        "type": "file", "id": sha256, "links": {"self": f"https://www.virustotal.com/api/v3/files/{sha256}"},
        "attributes": {
            "md5": hashlib.md5(content).hexdigest(), "sha1": hashlib.sha1(content).hexdigest(), "sha256": sha256,
            "size": len(content), "type_description": "Text", "meaningful_name": "file.txt", "reputation": -malicious,
            "last_analysis_date": 1735689600,
            "last_analysis_stats": {"harmless": 0, "malicious": malicious, "suspicious": suspicious,
                                    "undetected": undetected, "timeout": 0, "type-unsupported": 0,
                                    "confirmed-timeout": 0, "failure": 0},
            "last_analysis_results": {f"Engine{i}": {"category": "malicious" if i < malicious else "undetected",
                                                     "engine_name": f"Engine{i}", "result": None}
                                      for i in range(ENGINES)},
        }}}


class FakeVirusTotal:
    """Known files by any of their hashes; `quota` lookups before 429 (None: unlimited)."""

    def __init__(self, api_key: str = "vt-key-0123456789abcdef", quota: int | None = None):
        self.api_key = api_key
        self.quota = quota
        self.files: dict[str, dict[str, Any]] = {}
        self.lookups: Counter[str] = Counter()  # hash -> lookups answered 200/404
        self.requests: list[tuple[float, str, dict[str, str]]] = []  # (time, path, headers)
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def add(self, content: bytes, malicious: int = 0, suspicious: int = 0) -> str:
        body = file_object(content, malicious, suspicious)
        attributes = body["data"]["attributes"]
        for algorithm in ("md5", "sha1", "sha256"):
            self.files[attributes[algorithm]] = body
        return attributes["sha256"]

    @property
    def api_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/v3"

    def handle(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.requests.append((time.monotonic(), path, headers))
            if headers.get("x-apikey") != self.api_key:
                return 401, _error("WrongCredentialsError", "Wrong API key")
            if not path.startswith("/api/v3/files/"):
                return 404, _error("NotFoundError", f"Resource {path} not found")
            if self.quota is not None and sum(self.lookups.values()) >= self.quota:
                return 429, _error("QuotaExceededError", "Quota exceeded")
            digest = path.rsplit("/", 1)[-1].lower()
            self.lookups[digest] += 1
            if digest in self.files:
                return 200, self.files[digest]
            return 404, _error("NotFoundError", f'File "{digest}" not found')

    def start(self) -> "FakeVirusTotal":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, body = fake.handle(self.path, {k.lower(): v for k, v in self.headers.items()})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="fake-virustotal", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> "FakeVirusTotal":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
