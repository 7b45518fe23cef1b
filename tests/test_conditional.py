"""Conditional schedules as Dagster sensors: pending-change probes against the Graph fake and a
local folder, failing probes, an external trigger URL and a trigger file."""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from dagster import SensorResult, build_sensor_context, instance_for_test

from file_connector_dagster.config import load_config, parse_config
from file_connector_dagster.defs import build_definitions
from file_connector_dagster.engine import sync_container
from file_connector_dagster.errors import ConfigError
from file_connector_dagster.sources import build_source
from file_connector_dagster.stores import open_store
from tests.fakes.graph import FakeGraph
from tests.fakes.tls import make_tls

SECRET_ENV = "FC_TEST_GRAPH_SECRET"


def write_config(path: Path, *endpoints: dict) -> Path:
    path.mkdir(exist_ok=True)
    (path / "connector.yaml").write_text(yaml.safe_dump({"store": {"type": "sqlite", "path": "inv.db"},
                                                        "endpoints": list(endpoints)}))
    return path / "connector.yaml"


def sync_all(config_path: Path, endpoint: str) -> list[str]:
    """Sync every container of the endpoint the plain-Python way; returns the container keys."""
    config = load_config(config_path)
    source = build_source(config, config.endpoint(endpoint))
    store = open_store(config)
    try:
        keys = [c.key for c in source.containers()]
        for key in keys:
            sync_container(source, store, key)
        return keys
    finally:
        source.close()
        store.close()


def listing_started(config_path: Path, container: str) -> str:
    with open_store(load_config(config_path)) as store:
        return json.loads(store.sync_state("share", container).cursor)["started"]


def evaluate(defs, instance, name: str, cursor: str | None = None) -> SensorResult:
    sensor = defs.resolve_sensor_def(name)
    with build_sensor_context(instance_ref=instance.get_ref(), resources=defs.resources, cursor=cursor) as context:
        result = sensor(context)
    assert isinstance(result, SensorResult)
    return result


def requested(result: SensorResult, known: list[str] | None = None) -> dict[str, str]:
    """container -> run key, partition ranges expanded (in the instance's order, `known`)."""
    found = {}
    for r in result.run_requests or []:
        if r.partition_key:
            found[r.partition_key] = r.run_key
        else:
            start, end = r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]
            for key in known[known.index(start):known.index(end) + 1]:
                found[key] = r.run_key
    return found


def skip_message(result: SensorResult) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


# -- check_file_count: local folders --------------------------------------------------------------------
def test_local_folder_pending_changes(tmp_path):
    share = tmp_path / "share"
    for name in ("alpha/sub", "beta"):
        (share / name).mkdir(parents=True)
    for name in ("alpha/a.txt", "alpha/sub/b.txt", "beta/c.txt", "beta/skip.tmp"):
        (share / name).write_text("x")
    long_ago = time.time() - 3600
    for path in [share / p for p in ("alpha", "alpha/sub", "beta", "alpha/a.txt", "alpha/sub/b.txt", "beta/c.txt")]:
        os.utime(path, (long_ago, long_ago))
    config = write_config(tmp_path, {
        "name": "share", "type": "local",
        "endpoint_details": {"roots": "share", "containers": "subfolders", "exclude": ["*.tmp"]},
        "schedule": {"type": "conditional", "condition": "check_file_count", "file_count_threshold": 3}})
    sync_all(config, "share")
    (share / "gamma").mkdir()  # a new container, not synced yet: discovery's job, not the probe's
    defs = build_definitions(config)
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("share_containers", ["alpha", "beta", "gamma"])
        result = evaluate(defs, instance, "sync_share_schedule")
        assert not result.run_requests
        assert skip_message(result) == "no container has 3 pending changes (alpha: 0, beta: 0, gamma: not synced yet)"

        (share / "alpha/new1.txt").write_text("n")  # alpha: the folder itself and two files changed
        (share / "alpha/sub/b.txt").write_text("edited")
        (share / "beta/c.txt").write_text("edited")  # beta: one file (and the excluded one) is below 3
        first = evaluate(defs, instance, "sync_share_schedule")
        assert list(requested(first)) == ["alpha"]
        again = evaluate(defs, instance, "sync_share_schedule", cursor=first.cursor)
        assert requested(again) == requested(first)  # same pending changes, same run key: no second run

        # the probe allows 1 s for coarse file-system clocks: changes made well before the next listing
        # (each listing counts from its own start, not the first one's)
        earlier = time.time() - 5
        for path in ("alpha", "alpha/new1.txt", "alpha/sub/b.txt", "beta/c.txt"):
            os.utime(share / path, (earlier, earlier))
        started_before = listing_started(config, "alpha")
        sync_all(config, "share")
        assert listing_started(config, "alpha") > started_before
        result = evaluate(defs, instance, "sync_share_schedule")
        assert not result.run_requests and "alpha: 0" in skip_message(result)

        # a probe that fails: the folder is gone
        os.rename(share, tmp_path / "moved")
        result = evaluate(defs, instance, "sync_share_schedule")
        assert not result.run_requests
        assert skip_message(result) == (f"probe failed: endpoint 'share': root folder {share} does not exist or is "
                                        "not a folder (and 2 more)")


def test_a_failed_run_is_requested_again_with_the_same_pending_changes(tmp_path):
    share = tmp_path / "share"
    (share / "alpha").mkdir(parents=True)
    (share / "alpha/a.txt").write_text("x")
    config = write_config(tmp_path, {
        "name": "share", "type": "local", "endpoint_details": {"roots": "share", "containers": "subfolders"},
        "schedule": {"type": "conditional", "condition": "check_file_count", "file_count_threshold": 2}})
    sync_all(config, "share")
    time.sleep(1.1)  # past the probe's 1 s clock tolerance
    for name in ("b.txt", "c.txt"):
        (share / "alpha" / name).write_text("new")
    defs = build_definitions(config, retries=False)  # a vanished folder is retryable: no waiting here
    job = defs.resolve_job_def("Sync_share")

    def run(request, instance, fail: bool) -> bool:
        """Launch the request as the daemon does (its tags and run key); `fail`: the folder is gone meanwhile."""
        if fail:
            os.rename(share / "alpha", tmp_path / "alpha-away")
        try:
            return job.execute_in_process(partition_key=request.partition_key, instance=instance,
                                          raise_on_error=False,
                                          tags={**request.tags, "dagster/run_key": request.run_key}).success
        finally:
            if fail:
                os.rename(tmp_path / "alpha-away", share / "alpha")

    with instance_for_test() as instance:
        instance.add_dynamic_partitions("share_containers", ["alpha"])
        first = evaluate(defs, instance, "sync_share_schedule")
        [request] = first.run_requests
        assert request.partition_key == "alpha" and request.run_key.startswith("share:changes:")
        basis = request.run_key
        assert not run(request, instance, fail=True)

        # the same pending changes (nothing was stored): requested again under a new key, stable across ticks
        [again] = evaluate(defs, instance, "sync_share_schedule", cursor=first.cursor).run_requests
        assert again.run_key == f"{basis}:retry-1"
        assert evaluate(defs, instance, "sync_share_schedule").run_requests[0].run_key == again.run_key
        assert not run(again, instance, fail=True)
        [third] = evaluate(defs, instance, "sync_share_schedule").run_requests
        assert third.run_key == f"{basis}:retry-2"

        # it succeeds: the changes are synced, nothing is pending
        assert run(third, instance, fail=False)
        result = evaluate(defs, instance, "sync_share_schedule")
        assert not result.run_requests and skip_message(result) == "no container has 2 pending changes (alpha: 0)"


# -- check_file_count: SharePoint through the Graph fake ----------------------------------------------------
@pytest.fixture
def graph(monkeypatch):
    fake = FakeGraph(tls=make_tls())
    site = fake.add_site("sites/eng", "Engineering")
    fake.add_drive(site, "Documents", items=40, folders_every=10)
    fake.add_drive(site, "Drawings", items=40, folders_every=10)
    monkeypatch.setenv(SECRET_ENV, fake.client_secret)
    with fake:
        yield fake


def test_graph_delta_probe(tmp_path, graph):
    config = write_config(tmp_path, {
        "name": "sp", "type": "sharepoint",
        "endpoint_details": {"tenant_id": graph.tenant, "client_id": graph.client_id,
                             "client_secret": "${" + SECRET_ENV + "}",
                             "site_url": f"https://{graph.sharepoint_host}/sites/eng",
                             "authority_host": graph.authority_host, "graph_url": graph.graph_url,
                             "ca_bundle": graph.tls.ca_path, "backoff_base_s": 0.05, "requests_per_second": 0},
        "schedule": {"type": "conditional", "condition": "check_file_count", "file_count_threshold": 3,
                     "check_interval_minutes": 5}})
    keys = sync_all(config, "sp")
    documents, drawings = (graph.drives[k] for k in keys)
    defs = build_definitions(config)
    assert defs.resolve_sensor_def("sync_sp_schedule").minimum_interval_seconds == 300
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("sp_containers", keys)
        result = evaluate(defs, instance, "sync_sp_schedule")
        assert skip_message(result) == f"no container has 3 pending changes ({documents.id}: 0, {drawings.id}: 0)"

        for item_id in list(documents.live_files())[:3]:
            documents.edit(item_id)
        drawings.edit(next(iter(drawings.live_files())))
        store = open_store(load_config(config))
        cursor_before = store.sync_state("sp", documents.id).cursor
        result = evaluate(defs, instance, "sync_sp_schedule")
        assert list(requested(result)) == [documents.id]
        assert store.sync_state("sp", documents.id).cursor == cursor_before  # the probe stores nothing
        store.close()

        # Graph failing: a skipped tick naming the endpoint and the request, within the short budget
        graph.inject(503, match="/root/delta", count=100)
        started = time.monotonic()
        result = evaluate(defs, instance, "sync_sp_schedule")
        assert not result.run_requests
        message = skip_message(result)
        assert message.startswith("probe failed: endpoint 'sp', container ") and "HTTP 503" in message
        assert "gave up after 3 attempts" in message and "(and 1 more)" in message
        assert time.monotonic() - started < 30
        graph.faults.clear()

        # after the sync, nothing is pending any more
        sync_all(config, "sp")
        assert not evaluate(defs, instance, "sync_sp_schedule").run_requests


# -- check_file_count: Google Drive through the Drive fake -------------------------------------------------
@pytest.fixture
def drive(tmp_path, monkeypatch):
    from tests.fakes.drive import FakeDriveService

    fake = FakeDriveService(tls=make_tls(), key_dir=tmp_path)
    fake.add_shared_drive("Engineering", files=60, folders_every=10)
    fake.user_drive(fake.subject, files=30, folders_every=10)
    with fake:
        monkeypatch.setenv(DRIVE_KEY_ENV, json.dumps(fake.key_info()))
        yield fake


DRIVE_KEY_ENV = "FC_TEST_DRIVE_PROBE_KEY"


def test_google_drive_changes_probe(tmp_path, drive):
    config = write_config(tmp_path, {
        "name": "gd", "type": "google_drive",
        "endpoint_details": {"service_account_key": "${" + DRIVE_KEY_ENV + "}", "subject": drive.subject,
                             "shared_drives": "all", "my_drive": True, "api_url": drive.api_url,
                             "ca_bundle": drive.tls.ca_path, "page_size": 2, "backoff_base_s": 0.05},
        "schedule": {"type": "conditional", "condition": "check_file_count", "file_count_threshold": 3}})
    keys = sync_all(config, "gd")
    engineering = next(c for c in drive.corpora.values() if c.shared)
    my_drive = drive.users[drive.subject]
    assert keys == [engineering.id, "my-drive"]
    defs = build_definitions(config)
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("gd_containers", keys)
        result = evaluate(defs, instance, "sync_gd_schedule")
        assert skip_message(result) == f"no container has 3 pending changes ({engineering.id}: 0, my-drive: 0)"

        # below the threshold in My Drive (two changes), above it in the shared drive: a rename, a
        # trashed file, a new one and edits, 12 changes on 6 pages (page_size 2)
        files = list(engineering.live_files())
        engineering.rename(files[0], "renamed.pdf")
        engineering.trash(files[1])
        engineering.add_file(engineering.base_id(0), "new.pdf")
        for item_id in files[2:11]:
            engineering.edit(item_id)
        mine = list(my_drive.live_files())
        my_drive.edit(mine[0])
        my_drive.edit(mine[1])
        store = open_store(load_config(config))
        cursor_before = store.sync_state("gd", engineering.id).cursor
        requests_before = drive.count("changes")
        result = evaluate(defs, instance, "sync_gd_schedule")
        assert list(requested(result, keys)) == [engineering.id]
        assert store.sync_state("gd", engineering.id).cursor == cursor_before  # the probe stores nothing
        assert drive.count("changes") - requests_before <= 2 + 2  # it stops counting at the threshold
        store.close()

        # Drive failing: a skipped tick naming the endpoint and the request, within the short budget
        drive.inject(503, match="/changes", count=100)
        started = time.monotonic()
        result = evaluate(defs, instance, "sync_gd_schedule")
        assert not result.run_requests
        message = skip_message(result)
        assert message.startswith(f"probe failed: endpoint 'gd', container '{engineering.id}'"), message
        assert "GET /changes" in message and "503" in message and "(and 1 more)" in message, message
        assert time.monotonic() - started < 30
        drive.faults.clear()

        # an expired page token: the next sync lists everything again, so it is due
        drive.expire_page_tokens()
        assert set(requested(evaluate(defs, instance, "sync_gd_schedule"), keys)) == set(keys)

        # after the sync (a fresh listing), nothing is pending any more
        sync_all(config, "gd")
        result = evaluate(defs, instance, "sync_gd_schedule")
        assert not result.run_requests, skip_message(result)


# -- check_file_count: Autodesk ACC through the APS fake (folder roll-ups) ---------------------------------
APS_SECRET_ENV = "FC_TEST_APS_PROBE_SECRET"


def test_autodesk_rollup_probe(tmp_path, monkeypatch):
    from tests.fakes.aps import FakeAPS

    aps = FakeAPS(tls=make_tls())
    tower = aps.add_project("Tower A", items=200, folders=12)
    bridge = aps.add_project("Bridge B", items=20, folders=2)
    monkeypatch.setenv(APS_SECRET_ENV, aps.client_secret)
    with aps:
        config = write_config(tmp_path, {
            "name": "acc", "type": "autodesk",
            "endpoint_details": {"client_id": aps.client_id, "client_secret": "${" + APS_SECRET_ENV + "}",
                                 "hub": aps.hub_id, "api_url": aps.api_url, "ca_bundle": aps.tls.ca_path,
                                 "page_size": 5, "backoff_base_s": 0.05, "slow_down_gap_s": 0,
                                 "projects_requests_per_minute": 0, "contents_requests_per_minute": 0},
            "schedule": {"type": "conditional", "condition": "check_file_count", "file_count_threshold": 3}})
        keys = sync_all(config, "acc")
        assert set(keys) == {tower.id, bridge.id}
        defs = build_definitions(config)
        with instance_for_test() as instance:
            instance.add_dynamic_partitions("acc_containers", keys)
            before = dict(aps.counts)
            result = evaluate(defs, instance, "sync_acc_schedule")
            assert not result.run_requests and "Tower A" not in skip_message(result)
            assert skip_message(result).startswith("no container has 3 pending changes (") and ": 0, " in skip_message(result)
            assert aps.counts["contents"] == before.get("contents", 0)  # nothing changed: topFolders only

            # Tower: a new version deep down, a new file, a deleted (hidden) one: 3; Bridge: one new version
            folders = tower.folder_ids()
            deep = max(folders, key=lambda f: tower.path(f).count("/"))
            items = [n.id for n in tower.nodes.values() if n.kind == "item" and not n.hidden]
            tower.new_version(items[0])
            tower.add_item(deep, "added.pdf")
            tower.delete(items[1])
            bridge.new_version(next(n.id for n in bridge.nodes.values() if n.kind == "item"))
            store = open_store(load_config(config))
            cursor_before = store.sync_state("acc", tower.id).cursor
            result = evaluate(defs, instance, "sync_acc_schedule")
            assert list(requested(result, keys)) == [tower.id], skip_message(result)
            assert store.sync_state("acc", tower.id).cursor == cursor_before  # the probe stores nothing
            store.close()

            # APS failing: a skipped tick naming the endpoint and the request, within the short budget
            aps.inject(503, match="/contents", count=100)
            started = time.monotonic()
            result = evaluate(defs, instance, "sync_acc_schedule")
            assert not result.run_requests
            message = skip_message(result)
            assert message.startswith(f"probe failed: endpoint 'acc', container '{tower.id}'"), message
            assert "folders/{folder}/contents" in message and "503" in message, message
            assert time.monotonic() - started < 30
            aps.faults.clear()

            # after the sync, nothing is pending any more
            sync_all(config, "acc")
            result = evaluate(defs, instance, "sync_acc_schedule")
            assert not result.run_requests, skip_message(result)

            # a walk that began within the second of the newest roll-up (Bridge's) cannot tell a later change
            # in that second (APS times have whole seconds): the probe says due, and the next walk settles it;
            # Tower's newest roll-up is older, so its change in that second is counted (1, below 3)
            aps.same_second = True
            bridge.new_version(next(n.id for n in bridge.nodes.values() if n.kind == "item"))
            sync_all(config, "acc")
            tower.new_version(items[2])
            assert list(requested(evaluate(defs, instance, "sync_acc_schedule"), keys)) == [bridge.id]
            aps.same_second = False
            sync_all(config, "acc")
            result = evaluate(defs, instance, "sync_acc_schedule")
            assert not result.run_requests, skip_message(result)


def test_source_that_cannot_probe_is_a_config_error(tmp_path, monkeypatch):
    from file_connector_dagster.sources import base
    from tests.test_registry import PLUGIN

    namespace: dict = {}
    exec(compile(PLUGIN, "plugin", "exec"), namespace)
    monkeypatch.setattr(base.SOURCES, "_classes", {**base.SOURCES.types(), "dropbox": namespace["DropboxSource"]})
    with pytest.raises(ConfigError) as error:
        parse_config({"endpoints": [{"name": "box", "type": "dropbox", "endpoint_details": {"folder": "x"},
                                     "schedule": {"type": "conditional", "condition": "check_file_count"}}]})
    assert str(error.value) == (
        "connector.yaml: endpoint 'box': schedule: condition check_file_count needs a source that can count "
        "pending changes; type 'dropbox' cannot (types that can: autodesk, google_drive, local, sharepoint)")


# -- check_external_trigger ------------------------------------------------------------------------------
class TriggerServer:
    """A CI system's "ready?" endpoint: answers what the test sets."""

    def __init__(self):
        self.status, self.body, self.hits = 200, "true", 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.hits += 1
                data = owner.body.encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ready"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trigger_server():
    server = TriggerServer()
    yield server
    server.stop()


def test_external_trigger_url_and_file(tmp_path, trigger_server, monkeypatch):
    (tmp_path / "share/alpha").mkdir(parents=True)
    (tmp_path / "share/beta").mkdir()
    monkeypatch.setenv("FC_TRIGGER_TOKEN", "tok-123456")
    config = write_config(
        tmp_path,
        {"name": "ci", "type": "local", "endpoint_details": {"roots": "share", "containers": "subfolders"},
         "schedule": {"type": "conditional", "condition": "check_external_trigger",
                      "trigger_url": trigger_server.url + "?token=${FC_TRIGGER_TOKEN}", "check_interval_minutes": 5}},
        {"name": "drop", "type": "local", "endpoint_details": {"roots": "share", "containers": "subfolders"},
         "schedule": {"type": "conditional", "condition": "check_external_trigger", "trigger_file": "drop/READY"}})
    defs = build_definitions(config)
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("ci_containers", ["alpha", "beta"])
        instance.add_dynamic_partitions("drop_containers", ["alpha", "beta"])

        for body in ("true", '{"run": true}'):
            trigger_server.body = body
            result = evaluate(defs, instance, "sync_ci_schedule")
            assert sorted(requested(result, ["alpha", "beta"])) == ["alpha", "beta"]
            assert {r.tags["file_connector/trigger"] for r in result.run_requests} == {"sync_ci_schedule"}
        shown = trigger_server.url + "?token=${FC_TRIGGER_TOKEN}"
        for status, body, reason in [(200, "false", "answered False"), (200, '{"run": false}', "answered {'run': False}"),
                                     (500, '{"error": "boom"}', "answered HTTP 500"),
                                     (200, "<html>", "answered something that is not JSON")]:
            trigger_server.status, trigger_server.body = status, body
            result = evaluate(defs, instance, "sync_ci_schedule")
            assert not result.run_requests
            assert skip_message(result) == f"endpoint 'ci': not triggered: trigger_url {shown} {reason}"
            assert "tok-123456" not in skip_message(result)
        assert trigger_server.hits == 6

        result = evaluate(defs, instance, "sync_drop_schedule")
        assert skip_message(result) == f"endpoint 'drop': not triggered: {tmp_path / 'drop/READY'} does not exist"
        (tmp_path / "drop").mkdir()
        (tmp_path / "drop/READY").write_text("")
        first = evaluate(defs, instance, "sync_drop_schedule")
        assert sorted(requested(first, ["alpha", "beta"])) == ["alpha", "beta"]
        assert not (tmp_path / "drop/READY").exists() and (tmp_path / "drop/READY.consumed").exists()
        second = evaluate(defs, instance, "sync_drop_schedule", cursor=first.cursor)
        assert not second.run_requests  # consumed once
        (tmp_path / "drop/READY").write_text("again")
        third = evaluate(defs, instance, "sync_drop_schedule", cursor=second.cursor)
        assert sorted(requested(third, ["alpha", "beta"])) == ["alpha", "beta"]
        assert requested(third, ["alpha", "beta"]) != requested(first, ["alpha", "beta"])
