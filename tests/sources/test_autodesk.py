"""The Autodesk source end to end: the real requests client against the HTTPS APS fake, driven by
engine.sync_container into SQLite (and, for the store-dependent parts, PostgreSQL and MongoDB)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from file_connector_dagster.config import parse_config
from file_connector_dagster import engine
from file_connector_dagster.engine import sync_container
from file_connector_dagster.errors import ConfigError, SourceError, SyncInterrupted
from file_connector_dagster.sources.autodesk import AutodeskDetails, AutodeskSource
from file_connector_dagster.stores.base import Store
from file_connector_dagster.stores.sqlite import SQLiteStore
from tests.fakes.aps import FakeAPS, FakeProject
from tests.fakes.tls import FakeTLS, make_tls

SECRET_ENV = "FC_TEST_APS_SECRET"
ENDPOINT = "acc"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> FakeTLS:
    return make_tls(tmp_path_factory.mktemp("aps-tls"))


@pytest.fixture
def fake(tls: FakeTLS, monkeypatch: pytest.MonkeyPatch) -> Any:
    aps = FakeAPS(tls=tls)
    aps.add_project("Tower A", items=3000, folders=120)  # 122 folders, up to four levels deep
    aps.add_project("Bridge B", items=60, folders=4)
    monkeypatch.setenv(SECRET_ENV, aps.client_secret)
    with aps:
        yield aps


def details(fake: FakeAPS, **overrides: Any) -> AutodeskDetails:
    raw = dict(client_id=fake.client_id, client_secret="${" + SECRET_ENV + "}", hub=fake.hub_id, api_url=fake.api_url,
               ca_bundle=fake.tls.ca_path, backoff_base_s=0.01, max_wait_s=3, throttle_budget_s=10, slow_down_gap_s=0,
               projects_requests_per_minute=0, contents_requests_per_minute=0)
    raw.update(overrides)
    return AutodeskDetails.model_validate({k: v for k, v in raw.items() if v is not None})


def make_source(fake: FakeAPS, **overrides: Any) -> AutodeskSource:
    return AutodeskSource(ENDPOINT, details(fake, **overrides), project_id="p1", user_id="u1")


@pytest.fixture
def sqlite(tmp_path: Path) -> Any:
    db = SQLiteStore(tmp_path / "inventory.db")
    db.migrate()
    yield db
    db.close()


def project(fake: FakeAPS, name: str) -> FakeProject:
    return next(p for p in fake.projects.values() if p.name == name)


def stored(store: Store, proj: FakeProject, include_deleted: bool = False) -> dict[str, Any]:
    rows = [r for page in store.iter_files(ENDPOINT, proj.id, include_deleted=include_deleted) for r in page]
    assert len({r.external_id for r in rows}) == len(rows)
    return {r.external_id: r for r in rows}


def assert_in_step(store: Store, proj: FakeProject) -> None:
    """The store's live files are exactly the project's visible items, with their paths and versions."""
    expected = proj.live_items()
    live = stored(store, proj)
    assert set(live) == set(expected), (f"missing {sorted(set(expected) - set(live))[:3]}, "
                                        f"extra {[live[i].path for i in sorted(set(live) - set(expected))[:3]]}")
    wrong = [(live[i].path, e["path"]) for i, e in expected.items()
             if (live[i].path, live[i].change_key, live[i].title) != (e["path"], str(e["version"]), e["name"])]
    assert not wrong, wrong[:5]


def counting(fake: FakeAPS) -> Any:
    """Requests per route since now."""
    before = dict(fake.counts)
    return lambda: {k: v - before.get(k, 0) for k, v in fake.counts.items() if v - before.get(k, 0)}


def items_in(proj: FakeProject, folder: str) -> list[str]:
    return [c for c in proj.nodes[folder].children if proj.nodes[c].kind == "item"]


def subfolders(proj: FakeProject, folder: str) -> list[str]:
    return [c for c in proj.nodes[folder].children if proj.nodes[c].kind == "folder"]


# -- first sync, no-change re-sync ---------------------------------------------------------------------

def test_first_sync_lists_every_project_and_folder(fake: FakeAPS, sqlite: SQLiteStore) -> None:
    source = make_source(fake)
    containers = source.containers()
    assert [c.name for c in containers] == ["Tower A", "Bridge B"]
    for container in containers:
        proj = fake.projects[container.key]
        stats = sync_container(source, sqlite, container.key)
        assert stats.status == "success" and stats.full_listing and stats.errors == 0
        assert_in_step(sqlite, proj)
    tower = project(fake, "Tower A")
    assert sqlite.count_files(ENDPOINT, tower.id) == 3000 and fake.count("token") == 1
    assert fake.count("contents") == len(tower.folder_ids()) + len(project(fake, "Bridge B").folder_ids())
    deep = max(stored(sqlite, tower).values(), key=lambda r: r.path.count("/"))
    assert deep.path.count("/") >= 3  # nested folders
    node = tower.nodes[deep.external_id]
    assert deep.file_link == tower.web_view(node) and deep.size == node.size and deep.mime_type == node.mime
    assert deep.change_key == "1" and deep.project_id == "p1" and deep.user_id == "u1"
    assert deep.date_created is not None and deep.date_updated is not None
    assert deep.metadata == {
        "hub_id": fake.hub_id, "project_id": tower.id, "project_name": "Tower A", "folder_id": node.parent,
        "parent_path": deep.path.rsplit("/", 1)[0], "version_id": tower.version_id(node), "version_number": 1,
        "file_type": node.ext, "web_url": deep.file_link, "created_by": "Ada Lovelace",
        "modified_by": ["Ada Lovelace", "Grace Hopper", "Alan Turing"][node.user]}
    # the region goes with every Data Management request
    assert {h.get("x-ads-region") for m, p, h in fake.requests if p.startswith("/data/")} == {"US"}


def test_no_change_resync_costs_two_requests(fake: FakeAPS, sqlite: SQLiteStore) -> None:
    tower = project(fake, "Tower A")
    first = sync_container(make_source(fake), sqlite, tower.id)
    requests_since = counting(fake)
    stats = sync_container(make_source(fake), sqlite, tower.id)  # a new source, as a scheduled run starts
    assert requests_since() == {"token": 1, "project": 1, "topFolders": 1}
    assert stats.api_calls == 2 and stats.api_calls <= 0.05 * first.api_calls
    assert not stats.full_listing and stats.listed == 0 and stats.deleted == 0
    assert_in_step(sqlite, tower)


# -- changes -------------------------------------------------------------------------------------------

def test_changes_list_only_the_folders_whose_rollup_changed(fake: FakeAPS, sqlite: SQLiteStore) -> None:
    tower = project(fake, "Tower A")
    source = make_source(fake)
    sync_container(source, sqlite, tower.id)
    project_files = tower.top[0]
    level1 = subfolders(tower, project_files) + subfolders(tower, tower.top[1])  # 4 under each top folder
    level2 = subfolders(tower, level1[0])
    deep_folder = subfolders(tower, level2[0])[0]  # Project Files/Folder 0000/Folder 0008/Folder 0040
    assert tower.path(deep_folder).count("/") == 3

    def round_trip(**expect: int) -> Any:
        since = counting(fake)
        stats = sync_container(source, sqlite, tower.id)
        assert stats.status == "success" and not stats.full_listing and stats.errors == 0
        assert_in_step(sqlite, tower)
        for key, value in expect.items():
            assert getattr(stats, key) == value, (key, getattr(stats, key), stats)
        return stats, since()

    # round 1: version bumps deep down, one with a new name, and new files in a new folder
    bumped = items_in(tower, deep_folder)[:3]
    for item in bumped:
        tower.new_version(item)
    tower.new_version(items_in(tower, deep_folder)[3], name="renamed-S-101.pdf")
    fresh = tower.add_folder(level2[1], "New Issue")
    new_items = [tower.add_item(fresh, f"N-{i}.pdf") for i in range(5)]
    stats, requests = round_trip(updated=4, added=5, deleted=0)
    # only the chains down to the changes: Project Files, Folder 0000, its two changed children, Folder 0128, New Issue
    assert requests["contents"] == 6 and stats.listed == sum(len(items_in(tower, f)) for f in
                                                             (project_files, level1[0], level2[0], level2[1], deep_folder, fresh))
    assert stored(sqlite, tower)[bumped[0]].change_key == "2"

    # round 2: hidden (deleted) items are tombstones; a restored one comes back
    hidden = items_in(tower, level1[1])[:4]
    for item in hidden:
        tower.delete(item)
    round_trip(deleted=4)
    everything = stored(sqlite, tower, include_deleted=True)
    assert all(everything[i].is_deleted for i in hidden)
    tower.restore(hidden[0])
    round_trip(added=1, deleted=0)

    # round 3: files moved between folders, in both walk orders: a move is an update, never a tombstone
    a, b = level1[2], level1[5]
    out_of_a = items_in(tower, a)[0]
    out_of_b = items_in(tower, b)[0]
    tower.move(out_of_a, b)
    tower.move(out_of_b, a)
    round_trip(updated=2, deleted=0, added=0)
    assert stored(sqlite, tower)[out_of_a].path.startswith(tower.path(b) + "/")

    # round 4: a folder (with subfolders) moved, another renamed: every path below follows
    moving = level2[2]
    under = [i for i in tower.live_items() if tower.path(i).startswith(tower.path(moving) + "/")]
    tower.move(moving, tower.top[1])
    tower.rename_folder(level1[3], "Renamed Folder ✓")
    stats, _ = round_trip(deleted=0, added=0)
    live = stored(sqlite, tower)
    assert all(live[i].path.startswith(f"Plans/{tower.nodes[moving].name}/") for i in under) and under

    # round 5: a folder deleted in Docs (hidden, with its contents) and one that vanished
    deleted_folder, vanished = level1[4], level1[6]
    gone = [i for i in tower.live_items() if tower.path(i).startswith((tower.path(deleted_folder) + "/",
                                                                        tower.path(vanished) + "/"))]
    tower.delete(deleted_folder)
    tower.purge(vanished)
    round_trip(deleted=len(gone), added=0)
    everything = stored(sqlite, tower, include_deleted=True)
    assert all(everything[i].is_deleted for i in gone)
    assert deleted_folder not in sqlite.folders(ENDPOINT, tower.id) and vanished not in sqlite.folders(ENDPOINT, tower.id)

    # round 6: a folder moved away and a new one with the same name made in its place
    old_place = level1[7]
    name, parent = tower.nodes[old_place].name, tower.nodes[old_place].parent
    tower.move(old_place, fresh)
    twin = tower.add_folder(parent, name)
    twin_items = [tower.add_item(twin, f"T-{i}.dwg") for i in range(3)]
    round_trip(deleted=0, added=3)
    assert all(stored(sqlite, tower)[i].path.startswith(tower.path(twin) + "/") for i in twin_items)


def test_a_missed_rollup_is_caught_by_the_periodic_full_listing(fake: FakeAPS, sqlite: SQLiteStore) -> None:
    tower = project(fake, "Tower A")
    sync_container(make_source(fake), sqlite, tower.id)
    item = items_in(tower, tower.top[1])[0]
    tower.new_version(item, rollup=False)  # no folder shows the change
    stats = sync_container(make_source(fake), sqlite, tower.id)
    assert not stats.full_listing and stored(sqlite, tower)[item].change_key == "1"
    stats = sync_container(make_source(fake, full_listing_days=1e-9), sqlite, tower.id)
    assert stats.full_listing and stats.updated == 1 and stats.deleted == 0 and stats.unchanged == 2999
    assert_in_step(sqlite, tower)
    state = json.loads(sqlite.sync_state(ENDPOINT, tower.id).cursor)
    # a finished walk keeps only when the last full listing began, and the newest top-folder roll-up
    # when it began (what the conditional schedules' probe compares with)
    assert set(state) == {"v", "full_at", "since"}
    assert state["since"] == max(f["attributes"]["lastModifiedTimeRollup"]
                                 for f in (tower.folder_json(tower.nodes[t]) for t in tower.top))
    assert not sync_container(make_source(fake), sqlite, tower.id).full_listing  # the default: weekly


def test_a_change_in_the_second_of_the_last_listing_is_not_missed(fake: FakeAPS, sqlite: SQLiteStore) -> None:
    """APS roll-ups have whole seconds: a change made after a folder was listed, within the second of its
    roll-up, leaves the roll-up as it was. The walk keeps such a recent roll-up as unknown, so the next
    sync lists the folder again (found by the fault suite's same-second schedules)."""
    bridge = project(fake, "Bridge B")
    sync_container(make_source(fake), sqlite, bridge.id)
    folder = next(f for f in bridge.folder_ids() if items_in(bridge, f) and bridge.nodes[f].parent)
    first, second = items_in(bridge, folder)[:2]
    fake.same_second = True  # the clock stands still: everything below happens within one second
    bridge.new_version(first)
    sync_container(make_source(fake), sqlite, bridge.id)  # lists the folder: its roll-up is that second's
    bridge.new_version(second)  # same second: no roll-up on the way up moves
    rollups = {n.id: n.rollup for n in bridge.nodes.values() if n.kind == "folder"}
    assert rollups[folder] == bridge.nodes[second].modified
    fake.same_second = False
    stats = sync_container(make_source(fake), sqlite, bridge.id)
    assert stats.updated == 1
    assert_in_step(sqlite, bridge)
    requests_since = counting(fake)  # settled now: a no-change sync is two requests again
    sync_container(make_source(fake), sqlite, bridge.id)
    assert requests_since() == {"token": 1, "project": 1, "topFolders": 1}


def test_a_new_project_appears_as_a_container(fake: FakeAPS, sqlite: SQLiteStore) -> None:
    source = make_source(fake)
    assert len(source.containers()) == 2
    tunnel = fake.add_project("Tunnel C", items=25, folders=2)
    assert [c.name for c in make_source(fake).containers()] == ["Tower A", "Bridge B", "Tunnel C"]
    sync_container(make_source(fake), sqlite, tunnel.id)
    assert_in_step(sqlite, tunnel)
    only = make_source(fake, projects=["tunnel c", project(fake, "Bridge B").id])
    assert [c.name for c in only.containers()] == ["Tunnel C", "Bridge B"]


# -- throttling, tokens, failures ----------------------------------------------------------------------

def test_a_429_storm_is_waited_out(fake: FakeAPS, sqlite: SQLiteStore) -> None:
    tower = project(fake, "Tower A")
    for burst in range(4):  # bursts of 9 refusals in a row (a 10th would end the request's attempts)
        fake.inject(429, match="/contents", count=9, skip=5 + 10 * burst, retry_after="0")
    fake.inject(503, match="/contents", count=3, skip=60)
    fake.inject(429, match="/topFolders", count=2, retry_after="1")
    started = time.monotonic()
    stats = sync_container(make_source(fake), sqlite, tower.id)
    assert stats.status == "success" and fake.count("fault429") == 38 and fake.count("fault503") == 3
    assert time.monotonic() - started >= 2  # the two Retry-After: 1 honoured
    assert stats.api_calls == 1 + 1 + fake.count("contents") + 38 + 3  # project, topFolders, pages, refusals
    assert_in_step(sqlite, tower)


def test_pacing_keeps_a_sync_under_the_rate_limit(fake: FakeAPS, sqlite: SQLiteStore) -> None:
    bridge = project(fake, "Bridge B")
    fake.limit("contents", 10, 1.0)  # the fake refuses an 11th folder-contents request within a second
    fake.relative_links = True  # links.next as a path: followed on the API host
    stats = sync_container(make_source(fake, page_size=5, contents_requests_per_minute=270), sqlite, bridge.id)
    assert stats.status == "success" and fake.count("429") == 0 and fake.count("contents") >= 12
    assert_in_step(sqlite, bridge)
    unpaced = SQLiteStore(Path(sqlite.path).with_name("unpaced.db"))
    unpaced.migrate()
    stats = sync_container(make_source(fake, page_size=5), unpaced, bridge.id)
    assert stats.status == "success" and fake.count("429") > 0  # without pacing the limit is hit, then waited out
    assert_in_step(unpaced, bridge)
    unpaced.close()


def test_a_token_expiring_mid_sync_is_renewed_once(fake: FakeAPS, sqlite: SQLiteStore) -> None:
    tower = project(fake, "Tower A")
    fake.revoke_tokens_after(30)
    stats = sync_container(make_source(fake), sqlite, tower.id)
    assert stats.status == "success" and fake.count("401") == 1 and fake.tokens_issued == 2
    assert_in_step(sqlite, tower)


def test_ctrl_c_stops_the_fetchers_retry_after_wait_at_once(fake: FakeAPS, sqlite: SQLiteStore) -> None:
    """Ctrl-C (engine.STOP, as the CLI's SIGINT handler sets it) while the fetch thread waits out a
    Retry-After of 100 s: the sync stops at once, the thread with it, and nothing more is requested."""
    tower = project(fake, "Tower A")
    fault = fake.inject(429, match="/contents", count=1000, skip=20, retry_after="100")
    source = make_source(fake, max_wait_s=150, throttle_budget_s=300)

    def press_ctrl_c() -> None:
        while fake.count("fault429") == 0:
            time.sleep(0.02)
        time.sleep(0.3)  # the fetcher is waiting out Retry-After: 100 now
        engine.STOP.set()

    pressing = threading.Thread(target=press_ctrl_c)
    pressing.start()
    started = time.monotonic()
    try:
        with pytest.raises(SyncInterrupted):
            sync_container(source, sqlite, tower.id)
    finally:
        pressing.join()
        engine.STOP.clear()
    assert time.monotonic() - started < 10
    assert not [t for t in threading.enumerate() if t.name == "page-prefetch"]
    requests = sum(fake.counts.values())
    time.sleep(0.5)
    assert sum(fake.counts.values()) == requests and fake.count("fault429") == 1
    log = sqlite.sync_logs(ENDPOINT)[0]
    assert log.status == "interrupted" and sqlite.sync_state(ENDPOINT, tower.id).running_sync is None

    fault.count = 0  # the provider is fine again: the same source resumes and finishes
    assert sync_container(source, sqlite, tower.id).status == "success"
    assert_in_step(sqlite, tower)


def test_throttling_beyond_the_budget_fails_in_one_line_and_resumes(fake: FakeAPS, sqlite: SQLiteStore) -> None:
    tower = project(fake, "Tower A")
    fake.inject(429, match="/contents", count=1000, skip=40)
    with pytest.raises(SourceError) as failure:
        sync_container(make_source(fake, throttle_budget_s=0.05), sqlite, tower.id)
    message = str(failure.value)
    assert "\n" not in message and "HTTP 429 TOO_MANY_REQUESTS: Rate limit exceeded" in message and "budget" in message
    assert message.startswith(f"endpoint 'acc', container '{tower.id}' (Tower A): GET /data/v1/projects/")
    assert "includeHidden" not in message and "Bearer" not in message
    committed = sqlite.count_files(ENDPOINT, tower.id)
    assert 0 < committed < 3000 and sqlite.sync_logs(ENDPOINT)[0].status == "failed"
    fake.faults.clear()
    since = counting(fake)
    stats = sync_container(make_source(fake), sqlite, tower.id)
    # resumed at the last committed page (a page holds about eight folders' files), not restarted
    assert stats.full_listing and since()["contents"] <= len(tower.folder_ids()) - 40 + 10
    assert_in_step(sqlite, tower)


def test_a_folder_that_cannot_be_listed_tombstones_nothing(fake: FakeAPS, sqlite: SQLiteStore) -> None:
    tower = project(fake, "Tower A")
    source = make_source(fake)
    sync_container(source, sqlite, tower.id)
    locked = subfolders(tower, subfolders(tower, tower.top[0])[1])[0]
    tower.delete(items_in(tower, locked)[0])
    fake.inject(403, match=f"/folders/{locked}/contents")
    stats = sync_container(source, sqlite, tower.id)
    assert stats.status == "success" and stats.errors == 1 and stats.deleted == 0
    assert "FORBIDDEN: Injected fault" in stats.error_samples[0] and tower.path(locked) in stats.error_samples[0]
    stats = sync_container(source, sqlite, tower.id)  # the folder lost its roll-up: listed again, now it works
    assert stats.deleted == 1 and stats.errors == 0
    assert_in_step(sqlite, tower)


def test_killed_process_resumes_from_the_last_committed_page(fake: FakeAPS, tmp_path: Path) -> None:
    """kill -9 of a syncing process; the next run continues from its cursor and lists no folder twice."""
    tower = project(fake, "Tower A")
    db = tmp_path / "killed.db"
    config = {k: v for k, v in details(fake, contents_requests_per_minute=1200).model_dump(mode="json").items()}
    child = subprocess.Popen(
        [sys.executable, "-c", (
            "import json, sys\n"
            "from file_connector_dagster.engine import sync_container\n"
            "from file_connector_dagster.sources.autodesk import AutodeskDetails, AutodeskSource\n"
            "from file_connector_dagster.stores.sqlite import SQLiteStore\n"
            "store = SQLiteStore(sys.argv[1]); store.migrate()\n"
            "source = AutodeskSource('acc', AutodeskDetails.model_validate(json.loads(sys.argv[2])))\n"
            "sync_container(source, store, sys.argv[3])\n"), str(db), json.dumps(config), tower.id],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    try:
        while True:
            assert child.poll() is None, "the sync finished before it could be killed"
            assert time.monotonic() < deadline
            try:
                with SQLiteStore(db) as peek:
                    if peek.count_files(ENDPOINT, tower.id) >= 1000:
                        break
            except Exception:  # not created or migrated yet
                pass
            time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    listed_before = fake.count("contents")
    with SQLiteStore(db) as store:
        cursor = json.loads(store.sync_state(ENDPOINT, tower.id).cursor)
        assert cursor["stack"] and cursor["full"]
        stats = sync_container(make_source(fake), store, tower.id)
        assert stats.status == "success" and stats.full_listing and store.sync_logs(ENDPOINT)[-1].status == "interrupted"
        # both runs together listed each folder about once: the second began where the first's last commit left off
        assert fake.count("contents") <= len(tower.folder_ids()) + 10 and fake.count("contents") > listed_before
        assert_in_step(store, tower)
        assert store.count_files(ENDPOINT, tower.id, include_deleted=True) == 3000  # nothing duplicated or lost


# -- configuration, credentials, secrets ---------------------------------------------------------------

def test_bad_secret_is_one_clear_line_without_the_secret(fake: FakeAPS, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(SECRET_ENV, "wrong-secret-value-123")
    with pytest.raises(SourceError) as failure:
        make_source(fake).containers()
    message = str(failure.value)
    assert message.startswith("endpoint 'acc': authentication: POST /authentication/v2/token: HTTP 401 AUTH-001: ")
    assert "\n" not in message and not failure.value.retryable
    for text in (message, caplog.text):
        assert "wrong-secret-value-123" not in text and fake.client_secret not in text
    health = make_source(fake).health()
    assert not health.ok and "AUTH-001" in health.checks["token"]
    assert "wrong-secret-value-123" not in json.dumps(health.as_dict())


def test_hub_and_projects_that_do_not_exist(fake: FakeAPS) -> None:
    with pytest.raises(SourceError) as failure:
        make_source(fake, hub="b.00000000-0000-0000-0000-000000000000").containers()
    assert str(failure.value).startswith("endpoint 'acc': hub: hub 'b.00000000-0000-0000-0000-000000000000' not found")
    assert "NOT_FOUND" in str(failure.value)
    assert [c.name for c in make_source(fake, hub="contoso construction").containers()] == ["Tower A", "Bridge B"]
    with pytest.raises(SourceError, match=r"hub: no hub named 'Nope' visible to this app \(hubs: Contoso Construction\)"):
        make_source(fake, hub="Nope").containers()
    with pytest.raises(SourceError, match=r"projects: no project 'Nope' in hub .*\(projects: Bridge B, Tower A\)"):
        make_source(fake, projects=["Tower A", "Nope"]).containers()
    health = make_source(fake, projects=["Nope"]).health()
    assert health.checks["token"] == "ok" and health.checks["hub"] == "ok" and "Nope" in health.checks["projects"]
    with pytest.raises(SourceError, match="container 'b.gone': project not found in the hub"):
        list(make_source(fake).sync("b.gone", None, {}))


def test_details_validation_names_the_field() -> None:
    def parse(**endpoint_details: Any) -> None:
        base = {"client_id": "c", "client_secret": "${X}", "hub": "b.123456789"}
        parse_config({"endpoints": [{"name": "acc", "type": "autodesk", "endpoint_details": {**base, **endpoint_details}}]})

    with pytest.raises(ConfigError, match="client_secret: secrets must be environment references"):
        parse(client_secret="inline!")
    with pytest.raises(ConfigError, match=r"endpoint 'acc': endpoint_details.region: Input should be 'US', 'EMEA'"):
        parse(region="MARS")
    with pytest.raises(ConfigError, match=r"endpoint_details.api_url: 'http://x' is not an https URL"):
        parse(api_url="http://x")
    with pytest.raises(ConfigError, match=r"endpoint_details.page_size: Input should be less than or equal to 200"):
        parse(page_size=500)
    parse(projects="Tower A", region="EMEA")


def test_no_secret_or_token_in_logs_errors_or_store(fake: FakeAPS, sqlite: SQLiteStore,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bridge = project(fake, "Bridge B")
    fake.inject(429, match="/contents", skip=1)
    fake.revoke_tokens_after(3)
    fake.inject(500, match="/contents", skip=3, count=50)
    source = make_source(fake, throttle_budget_s=0.1)
    with pytest.raises(SourceError) as failure:
        sync_container(source, sqlite, bridge.id)
    outputs = [caplog.text, str(failure.value), json.dumps([dataclasses.asdict(log) for log in sqlite.sync_logs()], default=str),
               str(source.details.model_dump(mode="json")), repr(source.details), sqlite.sync_state(ENDPOINT, bridge.id).cursor or ""]
    for text in outputs:
        assert fake.client_secret not in text and "fake-aps-" not in text  # neither the secret nor a token
    assert "retrying" in caplog.text


# -- every store ---------------------------------------------------------------------------------------

def test_sync_rounds_through_every_store(fake: FakeAPS, store: Store) -> None:
    """First sync, a round of changes and a no-change re-sync, in SQLite, PostgreSQL and MongoDB."""
    bridge = fake.add_project("Depot D", items=400, folders=20)
    source = make_source(fake)
    first = sync_container(source, store, bridge.id)
    assert first.added == 400
    assert_in_step(store, bridge)
    folder = subfolders(bridge, bridge.top[0])[0]
    bridge.new_version(items_in(bridge, folder)[0])
    bridge.delete(items_in(bridge, folder)[1])
    bridge.move(items_in(bridge, folder)[2], bridge.top[1])
    bridge.delete(subfolders(bridge, bridge.top[1])[0])
    stats = sync_container(source, store, bridge.id)
    assert stats.updated == 2 and stats.deleted >= 2 and not stats.full_listing
    assert_in_step(store, bridge)
    since = counting(fake)
    stats = sync_container(source, store, bridge.id)
    assert since().get("contents", 0) == 0 and stats.listed == 0  # folder roll-ups survived in this store
    assert_in_step(store, bridge)


# -- through the CLI (which materializes the Dagster assets in process) --------------------------------

def test_cli_sync_and_health_through_dagster(fake: FakeAPS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from file_connector_dagster import cli

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = tmp_path / "connector.yaml"
    config.write_text(f"""
store: {{type: sqlite, path: inventory.db}}
endpoints:
  - name: acc
    type: autodesk
    endpoint_details:
      client_id: {fake.client_id}
      client_secret: ${{{SECRET_ENV}}}
      hub: {fake.hub_name}
      projects: [Bridge B]
      api_url: {fake.api_url}
      ca_bundle: {fake.tls.ca_path}
""")
    assert cli.main(["health", "--config", str(config)]) == 0
    assert cli.main(["sync", "--config", str(config)]) == 0
    bridge = project(fake, "Bridge B")
    bridge.new_version(items_in(bridge, bridge.top[0])[0])
    assert cli.main(["sync", "--config", str(config)]) == 0
    out = capsys.readouterr()
    assert fake.client_secret not in out.out + out.err and "fake-aps-" not in out.out + out.err
    with SQLiteStore(tmp_path / "inventory.db") as db:
        assert_in_step(db, bridge)
    monkeypatch.setenv(SECRET_ENV, "not-the-secret")
    assert cli.main(["sync", "--config", str(config)]) == 1
    out = capsys.readouterr()
    assert "AUTH-001" in out.out + out.err and "not-the-secret" not in out.out + out.err
