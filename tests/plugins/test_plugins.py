"""Plugins against real local servers: an SMTP server (aiosmtpd, with STARTTLS and AUTH), a dead port,
and an HTTP server that checks the webhook's HMAC signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import sys
import textwrap
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from file_connector_dagster.config import parse_config
from file_connector_dagster.plugins import PluginManager, SyncEvent
from tests.fakes.tls import make_tls
from tests.test_registry import fresh_registry, install_plugin  # noqa: F401  (fixture)

SECRET = "hook-s3cret-value"
SMTP_PASSWORD = "smtp-pa55-value"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(tmp_path):
    """A real SMTP server with STARTTLS and AUTH LOGIN/PLAIN; only user 'ops' with SMTP_PASSWORD gets in."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    tls = make_tls(tmp_path)
    received: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"ops" and auth_data.password == SMTP_PASSWORD.encode()
        return AuthResult(success=ok, handled=False)

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=tls.server_context,
                            require_starttls=True, authenticator=authenticator, auth_require_tls=True)
    controller.start()
    yield {"port": port, "ca": tls.ca_path, "received": received}
    controller.stop()


@pytest.fixture
def hook_server():
    """Accepts POSTs whose signature matches SECRET; answers 503 to the first `fail_first` requests."""
    state = {"bodies": [], "bad_signatures": 0, "fail_first": 0, "requests": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            state["requests"] += 1
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if state["requests"] <= state["fail_first"]:
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.end_headers()
                return
            expected = "sha256=" + hmac.new(SECRET.encode(), self.headers["X-File-Connector-Timestamp"].encode()
                                            + b"." + body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, self.headers.get("X-File-Connector-Signature", "")):
                state["bad_signatures"] += 1
                self.send_response(401)
                self.end_headers()
                return
            state["bodies"].append((self.path, json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/hooks/T0001/B0001/{SECRET[:4]}tok"
    yield state
    server.shutdown()


def manager(tmp_path, plugins: list | dict, log=None) -> PluginManager:
    raw = {"plugins": plugins, "endpoints": []}
    return PluginManager.from_config(parse_config(raw, base_dir=tmp_path), log=log)


def event(kind="failure", **kw) -> SyncEvent:
    base = dict(event=kind, endpoint="docs", container="contracts", status="failed" if kind == "failure" else "success",
                counts={"listed": 12, "added": 3, "deleted": 1, "errors": 0}, duration_s=1.5,
                error="sharepoint docs/contracts: GET /delta: HTTP 503" if kind == "failure" else None,
                run_id="abc123", run_url="http://dagster.local/runs/abc123")
    base.update(kw)
    return SyncEvent(**base)


def test_email_starttls_auth_sends_text_and_html(smtp, tmp_path, monkeypatch):
    monkeypatch.setenv("SMTP_PW", SMTP_PASSWORD)
    m = manager(tmp_path, [{"type": "email", "host": "127.0.0.1", "port": smtp["port"], "ca_bundle": smtp["ca"],
                            "username": "ops", "password": "${SMTP_PW}", "from": "fc@example.com",
                            "to": ["ops@example.com"], "cc": ["lead@example.com"]}])
    with m:
        outcomes = m.dispatch(event())
    assert m.problems == []
    assert [o.ok for o in outcomes] == [True], outcomes
    (rcpts, msg), = smtp["received"]
    assert sorted(rcpts) == ["lead@example.com", "ops@example.com"]
    assert msg["Subject"] == "[File Connector] docs/contracts: failed"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "HTTP 503" in text and "listed: 12" in text and "http://dagster.local/runs/abc123" in text
    assert "<table>" in html and "HTTP 503" in html
    assert SMTP_PASSWORD not in msg.as_string()


def test_email_refused_auth_and_dead_server_are_reported_not_raised(smtp, tmp_path, monkeypatch):
    monkeypatch.setenv("SMTP_PW", "wrong-password-x")
    logged: list[str] = []
    dead = free_port()
    m = manager(tmp_path, [
        {"type": "email", "name": "bad-auth", "host": "127.0.0.1", "port": smtp["port"], "ca_bundle": smtp["ca"],
         "username": "ops", "password": "${SMTP_PW}", "to": ["ops@example.com"]},
        {"type": "email", "name": "down", "host": "127.0.0.1", "port": dead, "security": "none",
         "to": ["ops@example.com"], "timeout_s": 3},
    ], log=logged.append)
    with m:
        outcomes = m.dispatch(event("success"))
    assert [(o.plugin, o.ok) for o in outcomes] == [("bad-auth", False), ("down", False)]
    assert "login as 'ops' refused (535)" in outcomes[0].detail
    assert f"SMTP 127.0.0.1:{dead}: cannot connect" in outcomes[1].detail
    assert all("\n" not in o.detail and "wrong-password-x" not in o.detail for o in outcomes)
    assert len(logged) == 2 and smtp["received"] == []


@pytest.mark.parametrize("fmt", ["generic", "slack", "teams"])
def test_webhook_signed_payload_formats(hook_server, tmp_path, monkeypatch, fmt):
    monkeypatch.setenv("HOOK_URL", hook_server["url"])
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    m = manager(tmp_path, [{"type": "webhook", "url": "${HOOK_URL}", "secret": {"env": "HOOK_SECRET"},
                            "format": fmt}])
    with m:
        outcomes = m.dispatch(event())
    assert outcomes[0].ok, outcomes
    assert hook_server["bad_signatures"] == 0
    (path, body), = hook_server["bodies"]
    if fmt == "generic":
        assert body["endpoint"] == "docs" and body["counts"]["listed"] == 12 and body["event"] == "failure"
        assert body["error"].endswith("HTTP 503") and body["run_url"] == "http://dagster.local/runs/abc123"
    elif fmt == "slack":
        assert body["text"] == "File Connector: docs/contracts sync FAILED"
        assert body["blocks"][0]["type"] == "section" and "HTTP 503" in body["blocks"][0]["text"]["text"]
        assert "|Dagster run>" in body["blocks"][1]["elements"][0]["text"]
    else:
        assert body["@type"] == "MessageCard" and body["themeColor"] == "D00000"
        assert {"name": "listed", "value": "12"} in body["sections"][0]["facts"]
        assert body["potentialAction"][0]["targets"][0]["uri"] == "http://dagster.local/runs/abc123"
    assert SECRET not in json.dumps(body)


def test_webhook_retries_then_succeeds_and_gives_up_without_leaking_the_url(hook_server, tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_URL", hook_server["url"])
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    hook_server["fail_first"] = 2
    entry = {"type": "webhook", "url": "${HOOK_URL}", "secret": "${HOOK_SECRET}", "retries": 3, "backoff_s": 0.01}
    with manager(tmp_path, [entry]) as m:
        assert m.dispatch(event())[0].ok
    assert hook_server["requests"] == 3 and len(hook_server["bodies"]) == 1

    hook_server.update(requests=0, fail_first=100)
    with manager(tmp_path, [{**entry, "retries": 2}]) as m:
        outcome, = m.dispatch(event())
    assert not outcome.ok and hook_server["requests"] == 3
    assert "answered HTTP 503 after 3 attempts" in outcome.detail
    assert "/hooks/" not in outcome.detail and SECRET[:4] + "tok" not in outcome.detail


def test_filters_by_endpoint_and_event(hook_server, tmp_path, monkeypatch):
    monkeypatch.setenv("HOOK_URL", hook_server["url"])
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    raw_yaml = textwrap.dedent("""
        plugins:
          - {type: webhook, url: "${HOOK_URL}", secret: "${HOOK_SECRET}", endpoints: [docs], on: [failure]}
        endpoints: []
    """)
    import yaml

    m = PluginManager.from_config(parse_config(yaml.safe_load(raw_yaml), base_dir=tmp_path))
    with m:
        assert m.dispatch(event("success")) == []
        assert m.dispatch(event("failure", endpoint="other")) == []
        assert [o.ok for o in m.dispatch(event("failure"))] == [True]
    assert len(hook_server["bodies"]) == 1


PLUGIN_DIR_CODE = '''
from file_connector_dagster.plugins import BasePlugin, PluginMetadata
from pydantic import BaseModel

class Opts(BaseModel):
    target: str

class Recorder(BasePlugin):
    type_name = "recorder"
    metadata = PluginMetadata("recorder", "0.1")
    Options = Opts
    seen = []

    def execute(self, context):
        Recorder.seen.append((self.options.target, context.event, context.container))
        return {"recorded": 1}
'''


def test_directory_plugin_broken_plugin_and_bad_options(tmp_path):
    plugin_dir = tmp_path / "my_plugins"
    plugin_dir.mkdir()
    (plugin_dir / "recorder.py").write_text(PLUGIN_DIR_CODE)
    (plugin_dir / "broken.py").write_text("import not_a_module_anywhere\n")
    (tmp_path / "cwd_plugin.py").write_text(PLUGIN_DIR_CODE.replace('"recorder"', '"cwd"'))
    logged: list[str] = []
    m = manager(tmp_path, {"directories": ["my_plugins"], "use": [
        {"type": "recorder", "target": "t1"},
        {"type": "recorder", "name": "no-target"},
        {"type": "cwd"},
        {"type": "email"},
    ]}, log=logged.append)
    with m:
        outcomes = m.dispatch(event("container_added", status="added"))
    assert [(o.plugin, o.ok, o.detail) for o in outcomes] == [("recorder", True, "recorded=1")]
    problems = "\n".join(m.problems)
    assert "broken.py: cannot import: ModuleNotFoundError: No module named 'not_a_module_anywhere'" in problems
    assert "plugins[1] (no-target): target: Field required" in problems
    assert "plugins[2] (cwd): unknown plugin type 'cwd'" in problems  # the working directory is never searched
    assert "plugins[3] (email): host: Field required" in problems
    assert logged == m.problems


class Exploding:
    pass


def test_plugin_that_raises_in_initialize_or_execute_is_skipped(tmp_path):
    from file_connector_dagster.plugins import BasePlugin, PluginMetadata, register_plugin

    class Boom(BasePlugin):
        type_name = "boom"
        metadata = PluginMetadata("boom")

        def initialize(self):
            if self.name == "bad-init":
                raise RuntimeError("cannot start")

        def execute(self, context):
            raise ValueError("kaboom")

    register_plugin("boom", Boom)
    m = manager(tmp_path, [{"type": "boom", "name": "bad-init"}, {"type": "boom", "name": "bad-run"}])
    with m:
        outcome, = m.dispatch(event())
    assert m.problems == ["plugins[0] (bad-init): initialize failed: RuntimeError: cannot start"]
    assert outcome.detail == "plugin bad-run: failure for docs/contracts: ValueError: kaboom"


ENTRY_POINT_PLUGIN = '''
from file_connector_dagster.plugins import BasePlugin, PluginMetadata

class Pager(BasePlugin):
    type_name = "pager"
    metadata = PluginMetadata("pager", "2.0", "pages the on-call", "ops team")
    calls = []

    def on_sync_failure(self, context):
        Pager.calls.append(context.container)
        return {"paged": 1}

    def execute(self, context):
        return {}
'''


def test_entry_point_plugin_and_broken_entry_point(tmp_path, monkeypatch, fresh_registry):
    from file_connector_dagster.plugins.manager import PLUGINS

    fresh_registry(PLUGINS)
    install_plugin(tmp_path, monkeypatch, "fc_pager", ENTRY_POINT_PLUGIN,
                   "[file_connector.plugins]\npager = fc_pager:Pager\nbroken = fc_no_such_module:Thing\n")
    m = manager(tmp_path, [{"type": "pager", "on": ["failure"]}])
    with m:
        assert [o.detail for o in m.dispatch(event("failure"))] == ["paged=1"]
        assert m.dispatch(event("success")) == []
    assert sys.modules["fc_pager"].Pager.calls == ["contracts"]
    assert m.plugins == [] and len(m.problems) == 1  # closed; the broken entry point is one problem
    assert "plugin type 'broken': entry point 'fc_no_such_module:Thing'" in m.problems[0]
