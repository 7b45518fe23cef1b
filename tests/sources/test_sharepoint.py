"""The SharePoint source end to end: real msal + requests against the HTTPS Graph fake, the real
stores (SQLite; PostgreSQL and MongoDB-wire too for the tests marked ALL_STORES), driven by
engine.sync_container."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from file_connector_dagster.config import parse_config
from file_connector_dagster.engine import commit_changes, open_changes, sync_container
from file_connector_dagster.errors import ConfigError, SourceError
from file_connector_dagster.sources.sharepoint import SharePointDetails, SharePointSource
from file_connector_dagster.stores.base import Store
from file_connector_dagster.stores.sqlite import SQLiteStore
from tests.fakes.graph import FakeDrive, FakeGraph, validate_drive_item
from tests.fakes.tls import FakeTLS, make_tls

SECRET_ENV = "FC_TEST_GRAPH_SECRET"
ENDPOINT = "sp"


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> FakeTLS:
    return make_tls(tmp_path_factory.mktemp("tls"))


ALL_STORES = pytest.mark.parametrize("store", ["sqlite", "postgres", "mongo"], indirect=True)


@pytest.fixture
def fake(tls: FakeTLS, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    """Three libraries, 5,000 items (1,500 against the slow MongoDB-wire test server, with the same 100,
    60 and 40 folders)."""
    callspec = getattr(request.node, "callspec", None)
    small = callspec is not None and callspec.params.get("store") == "mongo"
    graph = FakeGraph(tls=tls)
    site = graph.add_site("sites/eng", "Engineering")
    graph.add_drive(site, "Documents", items=1000 if small else 2500, folders_every=10 if small else 25)
    graph.add_drive(site, "Drawings", items=300 if small else 1500, folders_every=5 if small else 25)
    graph.add_drive(site, "Site Assets", items=200 if small else 1000, folders_every=5 if small else 25)
    monkeypatch.setenv(SECRET_ENV, graph.client_secret)
    with graph:
        yield graph


def details(fake: FakeGraph, **overrides: Any) -> SharePointDetails:
    raw = dict(tenant_id=fake.tenant, client_id=fake.client_id, client_secret="${" + SECRET_ENV + "}",
               site_url=f"https://{fake.sharepoint_host}/sites/eng", authority_host=fake.authority_host,
               graph_url=fake.graph_url, ca_bundle=fake.tls.ca_path, page_size=200,
               backoff_base_s=0.01, max_wait_s=2, throttle_budget_s=5, requests_per_second=0)
    raw.update(overrides)
    return SharePointDetails.model_validate({k: v for k, v in raw.items() if v is not None})


def make_source(fake: FakeGraph, **overrides: Any) -> SharePointSource:
    return SharePointSource(ENDPOINT, details(fake, **overrides), project_id="p1", user_id="u1")


@pytest.fixture
def store(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """SQLite, or the store named by an indirect parametrization (ALL_STORES)."""
    kind = getattr(request, "param", "sqlite")
    if kind != "sqlite":
        db = request.getfixturevalue("store_factory")(kind)  # closed by the factory
        db.migrate()
        yield db
        return
    db = SQLiteStore(tmp_path / "x.db")
    db.migrate()
    yield db
    db.close()


def stored(store: Store, drive: FakeDrive, include_deleted: bool = False) -> dict[str, Any]:
    rows = [r for page in store.iter_files(ENDPOINT, drive.id, include_deleted=include_deleted) for r in page]
    assert len({r.external_id for r in rows}) == len(rows)
    return {r.external_id: r for r in rows}


def assert_in_step(store: Store, drive: FakeDrive) -> None:
    """The store's live files are exactly the fake's live files, with their paths and change keys."""
    expected = drive.live_files()
    live = stored(store, drive)
    assert set(live) == set(expected), (f"missing {sorted(set(expected) - set(live))[:5]}, "
                                        f"extra {sorted(set(live) - set(expected))[:5]}")
    wrong = [(i, live[i].path, e["path"]) for i, e in expected.items()
             if (live[i].path, live[i].change_key, live[i].title) != (e["path"], e["ctag"], e["name"])]
    assert not wrong, wrong[:5]
    paths = [r.path for r in live.values()]
    assert len(paths) == len(set(paths)), "two live files share a path"


def drive_named(fake: FakeGraph, name: str) -> FakeDrive:
    return next(d for d in fake.drives.values() if d.name == name)


# -- first sync ----------------------------------------------------------------------------------------

@ALL_STORES
def test_first_sync_lists_every_library_page_by_page(fake: FakeGraph, store: Store) -> None:
    source = make_source(fake)
    containers = source.containers()
    assert [c.name for c in containers] == ["Documents", "Drawings", "Site Assets"]
    for container in containers:
        drive = fake.drives[container.key]
        stats = sync_container(source, store, container.key)
        assert stats.status == "success" and stats.full_listing
        assert stats.pages == -(-drive.generated // 200)  # every nextLink followed, not just the first 200
        assert_in_step(store, drive)
    total = sum(len(d.live_files()) for d in fake.drives.values())
    assert total == sum(d.generated - 1 - d.n_folders for d in fake.drives.values())  # every file, no folder
    assert store.count_files(ENDPOINT) == total
    assert fake.count("token") == 1  # one token for the whole run (msal's cache)

    docs = drive_named(fake, "Documents")
    deep = max(stored(store, docs).values(), key=lambda r: r.path.count("/"))
    assert deep.path.count("/") >= 2  # nested folders
    item = docs.item_json(docs.state(deep.external_id))
    assert deep.file_link == item["webUrl"] and deep.mime_type == item["file"]["mimeType"]
    assert deep.size == item["size"] and deep.date_updated is not None and deep.date_created is not None
    assert deep.project_id == "p1" and deep.user_id == "u1"
    assert deep.metadata == {
        "etag": item["eTag"], "ctag": item["cTag"], "web_url": item["webUrl"],
        "hashes": {"quickXorHash": item["file"]["hashes"]["quickXorHash"]}, "drive_id": docs.id,
        "library": "Documents", "parent_path": deep.path.rsplit("/", 1)[0]}
    assert deep.change_key == item["cTag"]


def test_no_change_resync_is_one_delta_call(fake: FakeGraph, store: Store) -> None:
    source = make_source(fake)
    docs = drive_named(fake, "Documents")
    sync_container(source, store, docs.id)
    before = fake.count("delta")
    stats = sync_container(source, store, docs.id)
    assert fake.count("delta") - before == 1
    assert not stats.full_listing and stats.listed <= 1 and stats.deleted == 0
    assert_in_step(store, docs)


# -- delta rounds --------------------------------------------------------------------------------------

@ALL_STORES
def test_delta_rounds_keep_the_store_in_step(fake: FakeGraph, store: Store) -> None:
    source = make_source(fake)
    docs = drive_named(fake, "Documents")
    sync_container(source, store, docs.id)
    files = stored(store, docs)
    by_path = {r.path: r for r in files.values()}
    folder_1 = docs._base_id(1)  # folder-1 holds folder-11..20, which hold more
    assert any(p.startswith("folder-1/folder-11/") for p in by_path)

    def round_trip() -> Any:
        stats = sync_container(source, store, docs.id)
        assert stats.status == "success" and not stats.full_listing
        assert_in_step(store, docs)
        return stats

    # round 1: adds, edits, a file rename
    new_folder = docs.add_folder(docs.root_id, "Projects 2025")
    new_sub = docs.add_folder(new_folder, "Specs & Drawings")
    added = [docs.add_file(new_sub, f"spec-{i}.pdf") for i in range(30)]
    some = list(files)[:20]
    for item_id in some[:10]:
        docs.edit(item_id)
    docs.rename(some[10], "renamed.docx")
    stats = round_trip()
    assert stats.added == 30 and stats.updated == 11 and stats.pages == 1

    # round 2: rename a folder with nested children, move another folder (with children) under it
    docs.rename(folder_1, "Folder One")
    docs.move(docs._base_id(2), folder_1)
    round_trip()
    live = stored(store, docs)
    assert any(r.path.startswith("Folder One/folder-11/") for r in live.values())
    assert any(r.path.startswith("Folder One/folder-2/folder-21/") for r in live.values())
    assert not any(r.path.startswith("folder-1/") or r.path.startswith("folder-2/") for r in live.values())

    # round 3: delete a file, a folder reported alone (children implied) and a folder with its children
    docs.delete(added[0])
    gone_alone = docs._base_id(3)
    under_alone = docs.descendants(gone_alone)
    docs.delete(gone_alone, report_children=False)
    docs.delete(new_sub)
    stats = round_trip()
    tombstones = stored(store, docs, include_deleted=True)
    under_files = [i for i in under_alone if i in tombstones]
    assert under_files and all(tombstones[i].is_deleted for i in under_files + added)
    assert stats.deleted >= len(under_files) + len(added)

    # round 4: restore the folder deleted alone; everything under it comes back at its old path
    docs.restore(gone_alone)
    stats = round_trip()
    assert stats.added >= len(under_files)
    everything = stored(store, docs, include_deleted=True)
    assert all(not everything[i].is_deleted for i in under_files)

    # round 5: move a folder back to the root under a new name, move a file across folders, restore a file
    docs.move(docs._base_id(2), docs.root_id, name="Archive")
    docs.move(some[11], new_folder, name="moved.pdf")
    docs.restore(added[0])  # its folder is gone: the file is restored at ... its deleted parent
    docs.move(added[0], new_folder)
    round_trip()

    # round 6: many changes over several pages, plus a folder created then renamed (child before parent)
    late = docs.add_folder(docs.root_id, "late")
    late_files = [docs.add_file(late, f"l{i}.txt") for i in range(450)]
    docs.rename(late, "late-renamed")
    stats = round_trip()
    assert stats.pages == 3 and stats.added == 450
    live = stored(store, docs)
    assert all(live[i].path.startswith("late-renamed/") for i in late_files)
    assert store.folders(ENDPOINT, docs.id)[late].name == "late-renamed"


def test_item_repeated_across_pages_is_stored_once(fake: FakeGraph, store: Store) -> None:
    docs = drive_named(fake, "Documents")
    docs.repeat_across_pages = 5
    stats = sync_container(make_source(fake), store, docs.id)
    assert docs.repeat_across_pages == 0 and stats.listed == len(docs.live_files()) + 5
    assert_in_step(store, docs)


def test_children_before_parents_in_a_fresh_listing(fake: FakeGraph, store: Store) -> None:
    """After changes, a fresh enumeration lists a file before its (later renamed) folder, possibly pages
    apart; items inside each page come shuffled."""
    docs = drive_named(fake, "Drawings")
    outer = docs.add_folder(docs.root_id, "outer")
    inner = docs.add_folder(outer, "inner")
    ids = [docs.add_file(inner, f"f{i}.txt") for i in range(300)]
    docs.rename(inner, "inner2")
    docs.rename(outer, "outer2")
    docs.shuffle_pages = True
    sync_container(make_source(fake), store, docs.id)
    assert_in_step(store, docs)
    assert stored(store, docs)[ids[0]].path == "outer2/inner2/f0.txt"
    assert fake.count("item") <= 2  # each unknown parent fetched once, not once per file


# -- 410, throttling, token expiry ---------------------------------------------------------------------

@ALL_STORES
def test_expired_delta_token_resyncs_without_duplicates(fake: FakeGraph, store: Store) -> None:
    source = make_source(fake)
    docs = drive_named(fake, "Site Assets")
    sync_container(source, store, docs.id)
    victims = list(docs.live_files())[:25]
    for item_id in victims:
        docs.delete(item_id)
    docs.rename(docs._base_id(1), "renamed folder")
    added = docs.add_file(docs.root_id, "new.txt")
    docs.expire_delta_tokens()
    stats = sync_container(source, store, docs.id)
    assert fake.count("410") == 1 and stats.full_listing and stats.status == "success"
    assert_in_step(store, docs)
    everything = stored(store, docs, include_deleted=True)
    assert all(everything[i].is_deleted for i in victims) and not everything[added].is_deleted
    assert len(everything) == len(docs.live_files()) + len(victims)
    # and the next sync is a plain delta again
    before = fake.count("delta")
    assert not sync_container(source, store, docs.id).full_listing and fake.count("delta") - before == 1


@pytest.mark.parametrize("status, retry_after", [(429, "1"), (429, None), (503, None), (503, "0")])
def test_throttling_is_waited_out(fake: FakeGraph, store: Store, status: int, retry_after: str | None) -> None:
    docs = drive_named(fake, "Site Assets")
    fake.inject(status, match="/root/delta", count=2, skip=1, retry_after=retry_after)
    started = time.monotonic()
    stats = sync_container(make_source(fake), store, docs.id)
    assert stats.status == "success" and fake.count(f"fault{status}") == 2
    assert_in_step(store, docs)
    if retry_after == "1":
        assert time.monotonic() - started >= 2  # both Retry-After waits honoured
    assert stats.api_calls == stats.pages + 2 + 2  # the drive lookup, the watermark, the pages, two refusals


def test_throttling_beyond_the_budget_fails_clearly_and_resumes(fake: FakeGraph, store: Store) -> None:
    docs = drive_named(fake, "Documents")
    fake.inject(429, match="/root/delta", count=100, skip=5)  # the watermark and four pages answer
    source = make_source(fake, throttle_budget_s=0.05)
    with pytest.raises(SourceError) as failure:
        sync_container(source, store, docs.id)
    message = str(failure.value)
    assert "\n" not in message and "HTTP 429 activityLimitReached" in message and "budget" in message
    assert f"GET /drives/{docs.id}/root/delta" in message and "token=" not in message
    assert store.sync_logs(ENDPOINT)[0].status == "failed"
    assert store.count_files(ENDPOINT, docs.id) == 4 * 200 - 1 - docs.n_folders  # four pages stayed committed
    fake.faults.clear()
    before = fake.count("delta")
    stats = sync_container(make_source(fake), store, docs.id)
    assert fake.count("delta") - before == stats.pages == -(-docs.generated // 200) - 4
    assert_in_step(store, docs)


def test_retry_after_longer_than_max_wait_fails_at_once(fake: FakeGraph, store: Store) -> None:
    docs = drive_named(fake, "Site Assets")
    fake.inject(429, match="/root/delta", retry_after="3600")
    started = time.monotonic()
    with pytest.raises(SourceError, match="retry after 3600s, more than max_wait_s=2"):
        sync_container(make_source(fake), store, docs.id)
    assert time.monotonic() - started < 2


def test_access_token_expiring_mid_sync_is_renewed_once(fake: FakeGraph, store: Store) -> None:
    docs = drive_named(fake, "Documents")
    fake.revoke_tokens_after(5)
    stats = sync_container(make_source(fake), store, docs.id)
    assert stats.status == "success" and fake.count("401") == 1 and fake.tokens_issued == 2
    assert_in_step(store, docs)


def test_other_errors_name_the_request_without_secrets(fake: FakeGraph, store: Store) -> None:
    docs = drive_named(fake, "Documents")
    fake.inject(403, match="/root/delta", skip=2, code="accessDenied")
    with pytest.raises(SourceError) as failure:
        sync_container(make_source(fake), store, docs.id)
    message = str(failure.value)
    assert message.startswith(f"endpoint 'sp', container '{docs.id}' (Documents): GET /drives/{docs.id}/root/delta: "
                              "HTTP 403 accessDenied")
    assert "skiptoken" not in message and "Bearer" not in message and not failure.value.retryable


# -- killed runs ---------------------------------------------------------------------------------------

@ALL_STORES
def test_killed_run_resumes_from_the_last_committed_page(fake: FakeGraph, store: Store) -> None:
    docs = drive_named(fake, "Documents")
    source = make_source(fake)

    class Killed(Exception):
        pass

    def kill_after_three(page: Any, stats: Any) -> None:
        if stats.pages == 3:
            raise Killed

    with pytest.raises(Killed):
        commit_changes(store, open_changes(source, docs.id), on_page=kill_after_three)
    assert json.loads(store.sync_state(ENDPOINT, docs.id).cursor)["full"] is True
    before = fake.count("delta")
    stats = sync_container(make_source(fake), store, docs.id)
    total_pages = -(-docs.generated // 200)
    assert fake.count("delta") - before == total_pages - 3  # no re-listing from the start
    assert stats.full_listing
    assert_in_step(store, docs)
    # a file deleted while the run was down is still tombstoned by the resumed listing's end
    victim = next(iter(docs.live_files()))
    docs.delete(victim)
    sync_container(make_source(fake), store, docs.id)
    assert stored(store, docs, include_deleted=True)[victim].is_deleted


def test_killed_delta_round_resumes(fake: FakeGraph, store: Store) -> None:
    docs = drive_named(fake, "Site Assets")
    source = make_source(fake, page_size=50)
    sync_container(source, store, docs.id)
    new = [docs.add_file(docs.root_id, f"n{i}.txt") for i in range(120)]
    pages = source.sync(docs.id, store.sync_state(ENDPOINT, docs.id).cursor, store.folders(ENDPOINT, docs.id))
    store.apply_page(ENDPOINT, docs.id, next(pages))  # one page committed, then the process dies
    pages.close()
    before = fake.count("delta")
    stats = sync_container(make_source(fake, page_size=50), store, docs.id)
    assert fake.count("delta") - before == 2 and not stats.full_listing
    live = stored(store, docs)
    assert all(i in live for i in new)
    assert_in_step(store, docs)


@pytest.mark.parametrize("how", ["fresh", "resumed", "after_410"])
def test_a_file_deleted_during_a_full_listing_is_tombstoned_by_the_next_sync(fake: FakeGraph, store: Store,
                                                                             how: str) -> None:
    """Graph does not promise that an enumeration reports a file deleted after its page was delivered
    (the fake never does), so a full listing resumes from the watermark taken before it: the next sync
    replays the deletion. Before the watermark such a file stayed live until the next full listing."""
    docs = drive_named(fake, "Site Assets")
    source = make_source(fake)
    if how == "after_410":
        sync_container(source, store, docs.id)
        docs.expire_delta_tokens()
    pages = source.sync(docs.id, store.sync_state(ENDPOINT, docs.id).cursor, store.folders(ENDPOINT, docs.id))
    first = next(pages)
    store.apply_page(ENDPOINT, docs.id, first)
    victim = first.upserts[0].external_id
    docs.delete(victim)  # after its page was delivered
    if how == "resumed":  # the process dies after page 1; the next run resumes the listing
        pages.close()
        assert sync_container(make_source(fake), store, docs.id).full_listing
    else:
        for page in pages:
            store.apply_page(ENDPOINT, docs.id, page)
    assert victim not in docs.live_files()
    assert json.loads(store.sync_state(ENDPOINT, docs.id).cursor)["delta"]
    stats = sync_container(make_source(fake), store, docs.id)  # a plain delta from the watermark
    assert not stats.full_listing and stats.deleted == 1
    assert stored(store, docs, include_deleted=True)[victim].is_deleted
    assert_in_step(store, docs)
    before = fake.count("delta")  # and after it, a no-change sync is one delta call again
    assert sync_container(make_source(fake), store, docs.id).listed == 0 and fake.count("delta") - before == 1


# -- configuration and credentials ---------------------------------------------------------------------

def test_bad_secret_is_one_clear_line_without_the_secret(fake: FakeGraph, monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(SECRET_ENV, "wrong-secret-value-123")
    with pytest.raises(SourceError) as failure:
        make_source(fake).containers()
    message = str(failure.value)
    assert "\n" not in message and "invalid_client: AADSTS7000215: Invalid client secret provided" in message
    assert "wrong-secret-value-123" not in message and "wrong-secret-value-123" not in caplog.text
    assert fake.client_secret not in message and not failure.value.retryable
    health = make_source(fake).health()
    assert not health.ok and "AADSTS7000215" in health.checks["token"]
    assert "wrong-secret-value-123" not in json.dumps(health.as_dict())


def test_unknown_client_and_tenant(fake: FakeGraph) -> None:
    with pytest.raises(SourceError, match="unauthorized_client: AADSTS700016"):
        make_source(fake, client_id="nobody").containers()
    with pytest.raises(SourceError, match="tenant 'nope' not found"):
        make_source(fake, tenant_id="nope").containers()


def test_wrong_site_and_library(fake: FakeGraph) -> None:
    with pytest.raises(SourceError) as failure:
        make_source(fake, site_url=f"https://{fake.sharepoint_host}/sites/nope").containers()
    assert str(failure.value) == (f"endpoint 'sp': site_url: site https://{fake.sharepoint_host}/sites/nope not found "
                                  f"(GET /sites/{fake.sharepoint_host}:/sites/nope answered 404)")
    with pytest.raises(SourceError, match=r"document_library: no library named 'Nope' .*Documents, Drawings, Site Assets"):
        make_source(fake, document_library="Nope").containers()
    assert [c.name for c in make_source(fake, document_library="drawings").containers()] == ["Drawings"]
    health = make_source(fake, site_url=f"https://{fake.sharepoint_host}/sites/nope").health()
    assert health.checks["token"] == "ok" and "not found" in health.checks["site"] and not health.ok


def test_drive_id_and_onedrive_user(fake: FakeGraph, store: Store) -> None:
    docs = drive_named(fake, "Drawings")
    one_drive = fake.add_drive(None, "OneDrive", items=300, user="alex@contoso.com")
    assert [c.key for c in make_source(fake, site_url=None, drive_id=docs.id).containers()] == [docs.id]
    source = make_source(fake, site_url=None, user="alex@contoso.com")
    assert [c.key for c in source.containers()] == [one_drive.id]
    sync_container(source, store, one_drive.id)
    assert_in_step(store, one_drive)
    with pytest.raises(SourceError, match="user: no OneDrive for user 'bob'"):
        make_source(fake, site_url=None, user="bob").containers()


def test_details_validation_names_the_field(fake: FakeGraph) -> None:
    def parse(**endpoint_details: Any) -> None:
        base = {"tenant_id": "t", "client_id": "c", "client_secret": "${X}"}
        parse_config({"endpoints": [{"name": "sp", "type": "sharepoint", "endpoint_details": {**base, **endpoint_details}}]})

    with pytest.raises(ConfigError, match=r"endpoint 'sp': endpoint_details.site_url: 'https://contoso.sharepoint.com/x' "
                                          "is not a SharePoint site URL"):
        parse(site_url="https://contoso.sharepoint.com/x")
    with pytest.raises(ConfigError, match="site_url, drive_id, user: set exactly one"):
        parse()
    with pytest.raises(ConfigError, match="client_secret: secrets must be environment references"):
        parse(site_url="https://contoso.sharepoint.com/sites/a", client_secret="inline!")
    parse(site_url="https://contoso.sharepoint.com/teams/a/")


def test_no_secret_or_token_in_logs_errors_or_store(fake: FakeGraph, store: Store,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    docs = drive_named(fake, "Site Assets")
    fake.inject(429, match="/root/delta", skip=1)
    fake.revoke_tokens_after(3)
    fake.inject(500, match="/root/delta", skip=3, count=20)
    source = make_source(fake, throttle_budget_s=0.1)
    with pytest.raises(SourceError) as failure:
        sync_container(source, store, docs.id)
    outputs = [caplog.text, str(failure.value), json.dumps([dataclasses.asdict(log) for log in store.sync_logs()], default=str),
               str(source.details.model_dump(mode="json")), repr(source.details)]
    for text in outputs:
        assert fake.client_secret not in text
        assert "fake-access-" not in text  # no access token either
    assert "retrying" in caplog.text  # the throttling was logged, without secrets


def test_fake_answers_in_graph_wire_format(fake: FakeGraph) -> None:
    """The fake's driveItems carry the documented fields (deleted ones the deleted facet)."""
    docs = drive_named(fake, "Drawings")
    docs.delete(docs._base_id(1400))  # a file
    session = requests.Session()
    token = session.post(f"{fake.base_url}/{fake.tenant}/oauth2/v2.0/token", verify=fake.tls.ca_path, data={
        "grant_type": "client_credentials", "client_id": fake.client_id, "client_secret": fake.client_secret,
        "scope": f"{fake.base_url}/.default"}).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    url: str | None = f"{fake.graph_url}/drives/{docs.id}/root/delta?$top=500"
    problems, seen = [], 0
    while url:
        body = session.get(url, headers=headers, verify=fake.tls.ca_path).json()
        for item in body["value"]:
            problems += validate_drive_item(item)
            seen += 1
        url = body.get("@odata.nextLink")
    assert not problems and seen == 1500 - 1 and "@odata.deltaLink" in body
    changes = session.get(body["@odata.deltaLink"], headers=headers, verify=fake.tls.ca_path).json()
    docs.delete(docs._base_id(1401))
    changes = session.get(body["@odata.deltaLink"], headers=headers, verify=fake.tls.ca_path).json()
    assert [i.get("deleted") for i in changes["value"]] == [{"state": "deleted"}]
    assert not validate_drive_item(changes["value"][0]) and "name" not in changes["value"][0]
    item = session.get(f"{fake.graph_url}/drives/{docs.id}/items/{docs._base_id(30)}", headers=headers,
                       verify=fake.tls.ca_path).json()
    assert not validate_drive_item(item) and item["parentReference"]["path"].startswith(f"/drives/{docs.id}/root:")
    throttled = fake.inject(429, retry_after="7")
    response = session.get(f"{fake.graph_url}/drives/{docs.id}", headers=headers, verify=fake.tls.ca_path)
    assert response.status_code == 429 and response.headers["Retry-After"] == "7" and throttled.count == 0
    assert response.json()["error"]["code"] == "activityLimitReached"


def test_requests_ca_bundle_in_the_environment_does_not_override_ca_bundle(
        fake: FakeGraph, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(tmp_path / "missing.pem"))
    assert make_source(fake).health().ok


# -- through the CLI (which materializes the Dagster assets in process) --------------------------------

def test_cli_sync_and_health_through_dagster(fake: FakeGraph, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from file_connector_dagster import cli

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = tmp_path / "connector.yaml"
    config.write_text(f"""
store: {{type: sqlite, path: inventory.db}}
endpoints:
  - name: sp
    type: sharepoint
    endpoint_details:
      tenant_id: {fake.tenant}
      client_id: {fake.client_id}
      client_secret: ${{{SECRET_ENV}}}
      site_url: https://{fake.sharepoint_host}/sites/eng
      document_library: [Drawings, Site Assets]
      authority_host: "{fake.authority_host}"
      graph_url: {fake.graph_url}
      ca_bundle: {fake.tls.ca_path}
      requests_per_second: 0
""")
    assert cli.main(["health", "--config", str(config)]) == 0
    assert cli.main(["sync", "--config", str(config)]) == 0
    drawings = drive_named(fake, "Drawings")
    drawings.rename(drawings._base_id(1), "renamed")
    drawings.delete(drawings._base_id(900))
    assert cli.main(["sync", "--config", str(config)]) == 0
    out = capsys.readouterr()
    assert fake.client_secret not in out.out + out.err and "fake-access-" not in out.out + out.err
    with SQLiteStore(tmp_path / "inventory.db") as db:
        assert_in_step(db, drawings)
        assert_in_step(db, drive_named(fake, "Site Assets"))
    monkeypatch.setenv(SECRET_ENV, "not-the-secret")
    assert cli.main(["sync", "--config", str(config)]) == 1
    out = capsys.readouterr()
    assert "AADSTS7000215" in out.out + out.err and "not-the-secret" not in out.out + out.err
