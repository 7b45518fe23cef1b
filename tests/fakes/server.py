"""What the HTTPS fakes (graph.py, drive.py, aps.py) share: the server on 127.0.0.1 with a throwaway CA
(tls.py), the request handler, injected faults, request counters, and serving one fake in a process of
its own for benchmarks.

A fake subclasses FakeServer and implements handle(method, path?query, headers, body) -> (status, extra
headers, payload), where payload is bytes (sent as they are), RawJSON (JSON text, sent as it is) or
anything json.dumps takes; fake_bug(message) is the body of the 500 a bug in handle() answers with, and
content_type(payload) the Content-Type of a payload (unless handle() set one).
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from .tls import FakeTLS, make_tls


class RawJSON(str):
    """A response body that is already JSON text; the handler sends it as it is."""


@dataclass
class Fault:
    """Answer `count` requests whose path contains `match` with `status` (after letting `skip` of them
    through); `code` is the provider's error code (Graph code, Google reason), `retry_after` a header."""

    status: int
    match: str = ""
    count: int = 1
    skip: int = 0
    retry_after: str | None = None
    code: str | None = None


class FakeServer:
    """One fake on one HTTPS port. Use as a context manager, or start()/stop()."""

    thread_name = "fake"

    def __init__(self, tls: FakeTLS | None = None, port: int = 0):
        self.tls = tls or make_tls()
        self.port = port
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self.counts: Counter[str] = Counter()  # route -> requests
        self.server: ThreadingHTTPServer | None = None
        self.revoke_after: int | None = None  # revoke_tokens_after(n)

    # -- what a fake implements --------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError

    def fake_bug(self, message: str) -> Any:
        return {"error": {"code": "fakeBug", "message": message}}

    def content_type(self, payload: Any) -> str:
        return "application/json"

    def http_date(self) -> str | None:
        """The Date header of every response (None: the machine's clock)."""
        return None

    # -- faults and counters ---------------------------------------------------------------------------
    def add_fault(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, path: str) -> Fault | None:
        """The fault this request meets, if any (used up by one). Each fault counts the matching requests
        it lets through by itself, so faults with staggered `skip` make bursts at chosen places."""
        with self.lock:
            for fault in self.faults:
                if fault.count > 0 and fault.match in path:
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.count -= 1
                    self.counts[f"fault{fault.status}"] += 1
                    return fault
        return None

    def count(self, route: str) -> int:
        return self.counts[route]

    def revoke_tokens_after(self, requests: int) -> None:
        """After this many more API requests, every access token issued so far is rejected (401)."""
        self.revoke_after = requests

    def revocation_due(self) -> bool:
        """Count one API request against revoke_tokens_after(); True when the tokens go now (call under lock)."""
        if self.revoke_after is None:
            return False
        if self.revoke_after <= 0:
            self.revoke_after = None
            return True
        self.revoke_after -= 1
        return False

    # -- the server -----------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self.server is not None
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Any:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.server.socket = self.tls.server_context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, name=self.thread_name, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; with Nagle on, the body waits for the client's delayed ACK
    # (~10 ms a request, most of a 100k-item listing's time)
    disable_nagle_algorithm = True
    fake: FakeServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        return self.fake.http_date() or super().date_time_string(timestamp)

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            if self.path.split("?", 1)[0] == "/_fake/counts":  # for a benchmark driving the fake in another process
                with self.fake.lock:
                    status, extra, payload = 200, {}, {"counts": dict(self.fake.counts),
                                                       "requests": sum(self.fake.counts.values())}
            else:
                status, extra, payload = self.fake.handle(method, self.path, headers, body)
        except Exception as exc:  # a bug in the fake: answer 500 so the test sees it
            status, extra, payload = 500, {}, self.fake.fake_bug(f"{type(exc).__name__}: {exc}")
        if isinstance(payload, bytes):
            data = payload
        else:
            data = payload.encode() if isinstance(payload, RawJSON) else json.dumps(payload).encode()
        self.send_response(status)
        if "Content-Type" not in extra:
            self.send_header("Content-Type", self.fake.content_type(payload))
        self.send_header("Content-Length", str(len(data)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


def serve_until_killed(prefix: str, make: Callable[[str], tuple[FakeServer, Callable[[], dict[str, Any]]]]) -> None:
    """For benchmarks: build a fake in a temporary folder (make(folder) -> (fake, its connection details)),
    serve it, print the details as one JSON line, and serve until killed (SIGTERM removes the folder)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        fake, details = make(tmp)
        with fake:
            print(json.dumps(details()), flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
