"""The Google Drive source end to end: requests + PyJWT against the HTTPS Drive fake (token endpoint
and Drive v3), into the real stores (SQLite, PostgreSQL, MongoDB-wire where the test takes `store`),
driven by engine.sync_container."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from file_connector_dagster.config import parse_config
from file_connector_dagster.engine import commit_changes, open_changes, sync_container
from file_connector_dagster.errors import ConfigError, SourceError
from file_connector_dagster.sources.google_drive import GoogleDriveSource
from file_connector_dagster.sources.google_drive.settings import MY_DRIVE, GoogleDriveDetails
from file_connector_dagster.stores.base import Store
from file_connector_dagster.stores.sqlite import SQLiteStore
from tests.fakes.drive import FOLDER, NATIVE, SHORTCUT, Corpus, FakeDriveService
from tests.fakes.tls import FakeTLS, make_tls

KEY_ENV = "FC_TEST_DRIVE_KEY"
ENDPOINT = "gd"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> FakeTLS:
    return make_tls(tmp_path_factory.mktemp("drive-tls"))


@pytest.fixture
def fake(tls: FakeTLS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         request: pytest.FixtureRequest) -> Iterator[FakeDriveService]:
    """Two shared drives and the subject's My Drive: about 5,000 items (1,000 for the slow MongoDB-wire
    test server), with the same folder trees either way (100, 24 and 50 folders)."""
    small = "store_type" in request.fixturenames and request.getfixturevalue("store_type") == "mongo"
    service = FakeDriveService(tls=tls, key_dir=tmp_path)
    service.add_shared_drive("Engineering", files=500 if small else 2500, folders_every=5 if small else 25)
    service.add_shared_drive("Sales", files=240 if small else 1200, folders_every=10 if small else 50)
    service.user_drive(service.subject, files=200 if small else 1000, folders_every=4 if small else 20)
    for i in range(3):
        service.share_with_me(service.subject, f"from-partner-{i}.pdf")
    with service:
        monkeypatch.setenv(KEY_ENV, json.dumps(service.key_info()))
        yield service


def details(fake: FakeDriveService, **overrides: Any) -> GoogleDriveDetails:
    raw = dict(service_account_key="${" + KEY_ENV + "}", subject=fake.subject, shared_drives="all", my_drive=True,
               api_url=fake.api_url, ca_bundle=fake.tls.ca_path, page_size=200, backoff_base_s=0.01, max_wait_s=2,
               throttle_budget_s=5)
    raw.update(overrides)
    return GoogleDriveDetails.model_validate({k: v for k, v in raw.items() if v is not None})


def make_source(fake: FakeDriveService, **overrides: Any) -> GoogleDriveSource:
    return GoogleDriveSource(ENDPOINT, details(fake, **overrides), project_id="p1", user_id="u1")


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    db = SQLiteStore(tmp_path / "x.db")
    db.migrate()
    yield db
    db.close()


def named(fake: FakeDriveService, name: str) -> Corpus:
    return next(c for c in fake.corpora.values() if c.name == name and c.shared)


def key_of(corpus: Corpus) -> str:
    return corpus.id if corpus.shared else MY_DRIVE


def stored(store: Store, container: str, include_deleted: bool = False) -> dict[str, Any]:
    rows = [r for page in store.iter_files(ENDPOINT, container, include_deleted=include_deleted) for r in page]
    assert len({r.external_id for r in rows}) == len(rows)
    return {r.external_id: r for r in rows}


def expected_key(corpus: Corpus, item_id: str) -> str:
    item = corpus.file_json(corpus.state(item_id))
    return item.get("md5Checksum") or f"v{item['version']}"


def assert_in_step(store: Store, corpus: Corpus, container: str | None = None, under: str | None = None) -> None:
    """The store's live files are exactly the fake's, with their paths, names and change keys."""
    expected = corpus.live_files(under)
    live = stored(store, container or key_of(corpus))
    assert set(live) == set(expected), (f"missing {sorted(set(expected) - set(live))[:5]}, "
                                        f"extra {sorted(set(live) - set(expected))[:5]}")
    wrong = [(i, live[i].path, e["path"]) for i, e in expected.items()
             if (live[i].path, live[i].title, live[i].change_key) != (e["path"], e["name"], expected_key(corpus, i))]
    assert not wrong, wrong[:5]


# -- first sync ----------------------------------------------------------------------------------------

def test_first_sync_lists_two_shared_drives_and_my_drive(fake: FakeDriveService, store: Store, store_type: str) -> None:
    source = make_source(fake)
    containers = source.containers()
    assert [c.name for c in containers] == ["Engineering", "Sales", f"My Drive of {fake.subject}"]
    total = 0
    for container in containers:
        corpus = fake.users[fake.subject] if container.key == MY_DRIVE else fake.corpora[container.key]
        first = len(fake.requests)
        stats = sync_container(source, store, container.key)
        assert stats.status == "success" and stats.full_listing
        calls = [path for path, _ in list(fake.requests)[first:]]
        assert calls.index("/changes/startPageToken") < calls.index("/files")  # the start token comes FIRST
        listing = [q for path, q in list(fake.requests)[first:] if path == "/files"]
        assert all(q["q"].endswith("trashed = false") and q["pageSize"] == "200" for q in listing)
        assert all(q["corpora"] == "drive" and q["driveId"] == corpus.id and q["includeItemsFromAllDrives"] == "true"
                   and q["supportsAllDrives"] == "true" for q in listing) if corpus.shared else True
        assert "md5Checksum" in listing[-1]["fields"] and "permissions" not in listing[-1]["fields"]
        assert stats.pages == len(listing)  # every nextPageToken followed
        assert_in_step(store, corpus, container.key)
        total += len(corpus.live_files())
    assert store.count_files(ENDPOINT) == total and total == (
        sum(len(c.live_files()) for c in fake.corpora.values() if c.shared) + len(fake.users[fake.subject].live_files()))
    assert total > (900 if store_type == "mongo" else 4500)
    assert fake.count("token") == 1  # one access token for the whole run

    eng = named(fake, "Engineering")
    rows = stored(store, eng.id)
    by_mime = {}
    for row in rows.values():
        by_mime.setdefault(row.mime_type, row)
    assert FOLDER not in by_mime  # folders are not file records
    doc = by_mime[NATIVE[0]]
    item = eng.file_json(eng.state(doc.external_id))
    assert doc.size is None and doc.change_key == "v1" and doc.metadata["native"] and doc.metadata["hashes"] == {}
    assert doc.file_link == item["webViewLink"].replace("", "") and doc.file_link.startswith("https://docs.google.com/")
    shortcut = by_mime[SHORTCUT]
    target = eng.state(shortcut.external_id)["target"]
    assert shortcut.metadata["shortcut_target_id"] == target and shortcut.metadata["shortcut_target_mime_type"]
    pdf = by_mime["application/pdf"]
    item = eng.file_json(eng.state(pdf.external_id))
    assert pdf.size == int(item["size"]) and pdf.change_key == item["md5Checksum"]
    assert pdf.metadata["hashes"] == {"md5": item["md5Checksum"], "sha256": item["sha256Checksum"]}
    assert pdf.metadata["version"] == "1" and pdf.metadata["drive_id"] == eng.id
    assert pdf.date_created is not None and pdf.date_updated is not None and pdf.project_id == "p1"
    assert max(r.path.count("/") for r in rows.values()) >= 2  # nested folders
    mine = stored(store, MY_DRIVE)
    assert all(r.metadata["owners"] == [fake.subject] for r in mine.values())
    assert not any(r.title.startswith("from-partner") for r in mine.values())  # shared with me, not in My Drive


def test_no_change_resync_is_one_request(fake: FakeDriveService, sqlite_store: SQLiteStore) -> None:
    source = make_source(fake)
    for key in (named(fake, "Sales").id, MY_DRIVE):
        sync_container(source, sqlite_store, key)
        before = fake.count("requests")
        stats = sync_container(make_source(fake), sqlite_store, key)
        assert fake.count("requests") - before == 1  # changes.list, nothing else
        assert not stats.full_listing and stats.listed == 0 and stats.deleted == 0 and stats.api_calls == 1


def test_change_made_during_the_first_listing_is_seen_by_the_next_sync(fake: FakeDriveService, store: Store) -> None:
    eng = named(fake, "Engineering")
    source = make_source(fake)
    listed_file = eng.base_id(eng.n_folders + 1)
    late_file = eng.base_id(eng.generated - 1)
    made: dict[str, str] = {}

    def change_mid_listing(page: Any, stats: Any) -> None:
        if stats.pages == 3:  # the folders are listed, some files too
            eng.edit(listed_file)
            eng.trash(eng.base_id(eng.n_folders + 2))
            made["new"] = eng.add_file(eng.base_id(5), "added-during-listing.pdf")
            eng.rename(eng.base_id(1), "renamed during listing")
            eng.delete(late_file)

    commit_changes(store, open_changes(source, eng.id), on_page=change_mid_listing)
    stats = sync_container(source, store, eng.id)
    assert not stats.full_listing and stats.status == "success"
    assert_in_step(store, eng)
    everything = stored(store, eng.id, include_deleted=True)
    assert everything[made["new"]].path == "folder-5/added-during-listing.pdf"
    assert late_file not in everything or everything[late_file].is_deleted
    assert all(r.path.startswith("renamed during listing/") for r in everything.values()
               if r.metadata["parent_path"].split("/")[0] == "renamed during listing" and not r.is_deleted)


# -- change rounds -------------------------------------------------------------------------------------

def test_changes_keep_the_store_in_step(fake: FakeDriveService, store: Store) -> None:
    sales = named(fake, "Sales")  # 24 folders: folder-0..9 at the top, folder-10..19 in folder-0, 20..23 in folder-1
    source = make_source(fake)
    sync_container(source, store, sales.id)
    files = list(stored(store, sales.id))

    def round_trip() -> Any:
        stats = sync_container(source, store, sales.id)
        assert stats.status == "success" and not stats.full_listing
        assert_in_step(store, sales)
        return stats

    # round 1: adds in a new folder tree, edits, a rename, a native doc edited, a shortcut
    projects = sales.add_folder(sales.root_id, "Projects 2025")
    specs = sales.add_folder(projects, "Specs & Drawings")
    added = [sales.add_file(specs, f"spec-{i}.pdf") for i in range(30)]
    for item_id in files[:10]:
        sales.edit(item_id)
    sales.rename(files[10], "renamed.docx")
    doc = next(i for i in files[11:] if sales.state(i)["mime"] in NATIVE)
    sales.edit(doc)
    shortcut = sales.add_shortcut(projects, "link to spec", added[0])
    stats = round_trip()
    assert stats.added == 31 and stats.updated == 12
    assert stored(store, sales.id)[doc].change_key == "v2"
    assert stored(store, sales.id)[shortcut].metadata["shortcut_target_id"] == added[0]

    # round 2: a folder with children moved into another and renamed; its whole subtree re-pathed
    sales.move(sales.base_id(1), sales.base_id(0), name="Moved One")
    round_trip()
    live = stored(store, sales.id)
    assert any(r.path.startswith("folder-0/Moved One/folder-20/") for r in live.values())
    assert not any(r.path.startswith("folder-1/") for r in live.values())

    # round 3: trash a file and a folder (Drive reports the children), delete a file for good
    sales.trash(files[20])
    gone_folder = sales.base_id(2)
    under = [i for i in sales.descendants(gone_folder) if sales.state(i)["mime"] != FOLDER]
    sales.trash(gone_folder)
    sales.delete(files[21])
    stats = round_trip()
    everything = stored(store, sales.id, include_deleted=True)
    assert under and all(everything[i].is_deleted for i in under + [files[20], files[21]])
    assert stats.deleted == len(under) + 2

    # round 4: untrash the file, and the folder whose children Drive does not report again
    sales.untrash(files[20])
    sales.untrash(gone_folder, report_descendants=False)
    stats = round_trip()
    assert stats.added == len(under) + 1  # restored, from the listing of the folder that came back

    # round 5: trash a folder without reports for its children; they go with it
    quiet = sales.base_id(3)
    under_quiet = [i for i in sales.descendants(quiet) if sales.state(i)["mime"] != FOLDER]
    sales.trash(quiet, report_descendants=False)
    stats = round_trip()
    assert stats.deleted == len(under_quiet)

    # round 6: many changes over several pages, a folder created then renamed after its files
    late = sales.add_folder(sales.root_id, "late")
    late_files = [sales.add_file(late, f"l{i}.txt", mime="text/plain") for i in range(450)]
    sales.rename(late, "late-renamed")
    stats = round_trip()
    assert stats.pages == 3 and stats.added == 450  # 453 changes, 200 a page
    live = stored(store, sales.id)
    assert all(live[i].path.startswith("late-renamed/") for i in late_files)
    assert store.folders(ENDPOINT, sales.id)[late].name == "late-renamed"


def test_other_drives_changes_are_ignored(fake: FakeDriveService, sqlite_store: SQLiteStore) -> None:
    eng, sales = named(fake, "Engineering"), named(fake, "Sales")
    source = make_source(fake)
    sync_container(source, sqlite_store, eng.id)
    sync_container(source, sqlite_store, sales.id)
    fake.leak_other_drives = True  # Engineering's feed shows Sales's changes too
    victim = next(iter(sales.live_files()))
    sales.trash(victim)
    sales.add_file(sales.root_id, "sales-only.pdf")
    stats = sync_container(source, sqlite_store, eng.id)
    assert stats.listed == 0 and stats.deleted == 0
    assert_in_step(sqlite_store, eng)
    assert not stored(sqlite_store, sales.id, include_deleted=True)[victim].is_deleted  # Sales's own sync decides
    sync_container(source, sqlite_store, sales.id)
    assert_in_step(sqlite_store, sales)


def test_folder_container_follows_moves_in_and_out(fake: FakeDriveService, store: Store) -> None:
    eng = named(fake, "Engineering")
    top = eng.base_id(0)  # folder-0: folder-10..19 below it, and folders below those
    source = make_source(fake, shared_drives=None, my_drive=False, folder_id=top)
    assert [(c.key, c.name) for c in source.containers()] == [(top, "folder-0")]
    sync_container(source, store, top)
    assert_in_step(store, eng, top, under=top)
    assert all(not r.path.startswith("folder-0/") for r in stored(store, top).values())  # relative to the folder
    outside = eng.base_id(3)  # moved in from elsewhere in the drive: its subtree is listed
    inside = eng.base_id(10)  # moved out: its subtree leaves the container
    eng.move(outside, top)
    eng.move(inside, eng.root_id)
    eng.move(eng.base_id(eng.n_folders + 4 * 0), top)  # a file (folder-0's first) stays; one from outside comes in
    came_in = next(i for i, e in eng.live_files().items() if e["path"].count("/") == 0)
    eng.move(came_in, top)
    stats = sync_container(source, store, top)
    assert not stats.full_listing
    assert_in_step(store, eng, top, under=top)
    rows = stored(store, top, include_deleted=True)
    assert any(r.path.startswith("folder-3/") and not r.is_deleted for r in rows.values())
    assert all(r.is_deleted for r in rows.values() if r.path.startswith("folder-10/"))


# -- expired tokens, throttling, errors ----------------------------------------------------------------

def test_expired_page_token_starts_a_fresh_listing_that_sweeps(fake: FakeDriveService, store: Store) -> None:
    sales = named(fake, "Sales")
    source = make_source(fake)
    sync_container(source, store, sales.id)
    victims = list(sales.live_files())[:25]
    for item_id in victims:
        sales.delete(item_id)
    sales.rename(sales.base_id(1), "renamed folder")
    added = sales.add_file(sales.root_id, "new.txt", mime="text/plain")
    fake.expire_page_tokens()
    stats = sync_container(source, store, sales.id)
    assert stats.full_listing and stats.status == "success"
    assert_in_step(store, sales)
    everything = stored(store, sales.id, include_deleted=True)
    assert all(everything[i].is_deleted for i in victims) and not everything[added].is_deleted
    assert len(everything) == len(sales.live_files()) + len(victims)
    assert set(store.folders(ENDPOINT, sales.id)) == {s["id"] for s in sales.states() if s["mime"] == FOLDER}
    before = fake.count("requests")
    assert not sync_container(source, store, sales.id).full_listing and fake.count("requests") - before == 1


@pytest.mark.parametrize("status, reason, retry_after", [(403, "userRateLimitExceeded", None),
                                                        (403, "rateLimitExceeded", None), (429, None, "1"),
                                                        (503, None, None)])
def test_rate_limit_storms_are_waited_out(fake: FakeDriveService, sqlite_store: SQLiteStore, status: int,
                                          reason: str | None, retry_after: str | None) -> None:
    sales = named(fake, "Sales")
    fake.inject(status, reason, match="/files", count=6 if status == 403 else 2, skip=1, retry_after=retry_after)
    started = time.monotonic()
    stats = sync_container(make_source(fake), sqlite_store, sales.id)
    assert stats.status == "success" and fake.count(f"fault{status}") == (6 if status == 403 else 2)
    assert_in_step(sqlite_store, sales)
    if retry_after:
        assert time.monotonic() - started >= 2  # both Retry-After waits honoured
    assert stats.api_calls == stats.pages + 1 + fake.count(f"fault{status}")  # start token, pages, refused attempts


def test_rate_limit_beyond_the_budget_fails_clearly_and_resumes(fake: FakeDriveService, sqlite_store: SQLiteStore) -> None:
    eng = named(fake, "Engineering")
    fake.inject(403, match="/files", count=1000, skip=4)
    with pytest.raises(SourceError) as failure:
        sync_container(make_source(fake, throttle_budget_s=0.05), sqlite_store, eng.id)
    message = str(failure.value)
    assert "\n" not in message and "HTTP 403 userRateLimitExceeded: User Rate Limit Exceeded" in message
    assert "budget" in message and f"container '{eng.id}'" in message and "GET /files" in message
    assert "pageToken" not in message and failure.value.retryable
    assert sqlite_store.sync_logs(ENDPOINT)[0].status == "failed"
    fake.faults.clear()
    before = fake.count("files")
    stats = sync_container(make_source(fake), sqlite_store, eng.id)
    assert fake.count("files") - before == stats.pages  # resumed where it stopped, not from the start
    assert stats.pages < -(-eng.generated // 200)
    assert_in_step(sqlite_store, eng)


def test_a_failed_sync_stops_the_fetchers_retry_after_wait_at_once(fake: FakeDriveService, tmp_path: Path) -> None:
    """The store fails while the fetch thread waits out Google's Retry-After of 100 s: the sync ends at once and
    the thread sends nothing more (the source hands its cancel event to its HTTP client)."""
    sales = named(fake, "Sales")

    class Broken(SQLiteStore):
        def apply_page(self, endpoint: str, container: str, page: Any, **sync: Any) -> Any:
            time.sleep(0.5)  # meanwhile the fetcher gets its 429 and starts waiting
            raise RuntimeError("disk full")

    store = Broken(tmp_path / "broken.db")
    store.migrate()
    fake.inject(429, match="/files", count=1000, skip=1, retry_after="100")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="disk full"):
        sync_container(make_source(fake, max_wait_s=200, throttle_budget_s=300), store, sales.id)
    assert time.monotonic() - started < 5
    assert not [t for t in threading.enumerate() if t.name == "page-prefetch"]
    refused = fake.count("fault429")
    time.sleep(0.5)
    assert refused == 1 and fake.count("fault429") == refused


def test_other_403_and_404_fail_at_once(fake: FakeDriveService, sqlite_store: SQLiteStore) -> None:
    sales = named(fake, "Sales")
    source = make_source(fake)
    source.containers()
    fake.inject(403, "forbidden", match="/files", skip=1)
    with pytest.raises(SourceError) as failure:
        sync_container(source, sqlite_store, sales.id)
    assert str(failure.value).startswith(f"endpoint 'gd', container '{sales.id}' (Sales): GET /files: HTTP 403 "
                                         "forbidden: The user does not have sufficient permissions for this file.")
    assert not failure.value.retryable and fake.count("fault403") == 1  # not retried
    sales.members.discard(fake.client_email)  # the drive is no longer shared with the account
    sales.members.discard(fake.subject)
    with pytest.raises(SourceError) as gone:
        sync_container(make_source(fake), sqlite_store, sales.id)
    assert "was not found or is no longer shared with the service account" in str(gone.value)
    assert "404" in str(gone.value) and not gone.value.retryable
    assert [c.name for c in make_source(fake).containers()] == ["Engineering", f"My Drive of {fake.subject}"]


def test_access_token_is_cached_and_a_401_refreshes_it_once(fake: FakeDriveService, sqlite_store: SQLiteStore) -> None:
    eng = named(fake, "Engineering")
    source = make_source(fake)
    fake.inject(503, match="/files", skip=3)  # a retried request in between reuses the cached token

    def revoke(page: Any, stats: Any) -> None:
        if stats.pages == 4:
            fake.revoke_tokens()

    commit_changes(sqlite_store, open_changes(source, eng.id), on_page=revoke)
    assert fake.count("401") >= 1 and fake.count("token") == 2 and fake.tokens_issued == 2
    assert_in_step(sqlite_store, eng)


# -- killed runs ---------------------------------------------------------------------------------------

KILLED_SYNC = """
import json, sys
from file_connector_dagster.engine import sync_container
from file_connector_dagster.sources.google_drive import GoogleDriveSource
from file_connector_dagster.sources.google_drive.settings import GoogleDriveDetails
from file_connector_dagster.stores import open_store
from file_connector_dagster.config import parse_config
args = json.loads(sys.argv[1])
config = parse_config({"store": args["store"]})
store = open_store(config)
store.migrate()
source = GoogleDriveSource("gd", GoogleDriveDetails.model_validate(args["details"]))
sync_container(source, store, args["container"])
"""


class Reaper:
    """What mongod does in the background and the MongoDB-wire test server only when a transaction
    statement arrives: abort transactions idle past transactionLifetimeLimitSeconds (60 s). A trivial
    transaction every second gives the test server that chance, so a plain write blocked by the killed
    process's transaction (the lease) is released as it would be by mongod."""

    def __init__(self, uri: str, database: str):
        import pymongo

        self.client = pymongo.MongoClient(uri)
        self.collection = self.client[database]["reaper_nudge"]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                with self.client.start_session() as session, session.start_transaction():
                    self.collection.find_one({}, session=session)
            except Exception:  # noqa: BLE001 - a nudge that fails is retried a second later
                pass

    def __enter__(self) -> "Reaper":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.client.close()


@pytest.mark.parametrize("store_type", ["sqlite", "postgres", "mongo"])
def test_kill_9_mid_listing_resumes_without_listing_again(fake: FakeDriveService, store: Store, store_type: str,
                                                         tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A real SIGKILL of a process syncing into the same database, then a resume in this one.

    On MongoDB the kill lands inside a page's transaction: the server keeps that transaction's rows
    until it aborts it after transactionLifetimeLimitSeconds (60 s; measured on the test server: 60-61 s
    after the kill), so the resume's page waits out the write conflict within the store's retry budget."""
    eng = named(fake, "Engineering")
    page_size = 50 if store_type == "mongo" else 200  # the Mongo fake holds 600 items: still ~12 pages
    store_config: dict[str, Any] = {"type": "sqlite", "path": str(tmp_path / "inventory.db")}  # the `store` fixture's file
    if store_type == "postgres":
        store_config = {"type": "postgres", "dsn": store.dsn}
    elif store_type == "mongo":
        store_config = {"type": "mongo", "uri": request.getfixturevalue("mongo_uri"), "database": store.db.name}
    raw = details(fake, page_size=page_size).model_dump(mode="json")
    # Mongo: no delay, so a page is always waiting while one commits and the kill lands in a transaction
    fake.delay_s = 0.0 if store_type == "mongo" else 0.15
    process = subprocess.Popen([sys.executable, "-c", KILLED_SYNC, json.dumps(
        {"store": store_config, "details": raw, "container": eng.id})], cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            cursor = store.sync_state(ENDPOINT, eng.id).cursor
            if cursor and json.loads(cursor).get("listing") == "files" and json.loads(cursor).get("page"):
                files_pages = fake.count("files")
                if files_pages >= (3 if store_type == "mongo" else 5):
                    break
            assert process.poll() is None, process.stdout.read().decode()
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    killed_at = time.monotonic()
    fake.delay_s = 0.0
    killed_after = fake.count("files")
    total_pages = max(1, -(-eng.n_folders // page_size)) + -(-(eng.generated - eng.n_folders) // page_size)
    assert killed_after < total_pages, "the run finished before it was killed"
    committed_pages = store.count_files(ENDPOINT, eng.id) // page_size  # file pages only: folders are not files
    assert committed_pages >= 1
    victim = next(iter(eng.live_files()))
    eng.trash(victim)  # changed while the run was down
    with (Reaper(store_config["uri"], store_config["database"]) if store_type == "mongo"
          else contextlib.nullcontext()):
        stats = sync_container(make_source(fake, page_size=page_size), store, eng.id)
    resumed_s = time.monotonic() - killed_at
    assert stats.status == "success" and stats.full_listing
    # no listing again from the start: only what was not committed (the folders page, a partial last page)
    assert fake.count("files") - killed_after <= total_pages - committed_pages + 1
    assert stats.pages <= total_pages - committed_pages + 1
    sync_container(make_source(fake, page_size=page_size), store, eng.id)
    assert_in_step(store, eng)
    assert stored(store, eng.id, include_deleted=True)[victim].is_deleted
    assert store.sync_logs(ENDPOINT)[-1].status in ("interrupted", "running")  # the killed run's log row
    logging.getLogger(__name__).info("resumed %.1f s after the kill", resumed_s)
    print(f"resumed {resumed_s:.1f} s after the kill")


# -- configuration, credentials and secrets ------------------------------------------------------------

def test_key_and_tokens_never_appear_in_any_output(fake: FakeDriveService, sqlite_store: SQLiteStore,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    eng = named(fake, "Engineering")
    fake.inject(403, match="/files", skip=1)
    fake.inject(500, match="/files", skip=4, count=50)

    def revoke(page: Any, stats: Any) -> None:
        if stats.pages == 2:
            fake.revoke_tokens()

    source = make_source(fake, throttle_budget_s=0.1)
    with pytest.raises(SourceError) as failure:
        commit_changes(sqlite_store, open_changes(source, eng.id), on_page=revoke)
    fake.faults.clear()
    health = make_source(fake).health()
    outputs = [caplog.text, str(failure.value), repr(failure.value), json.dumps(health.as_dict()),
               json.dumps([dataclasses.asdict(log) for log in sqlite_store.sync_logs()], default=str),
               json.dumps(source.details.model_dump(mode="json")), repr(source.details), repr(source.auth.key)]
    secret_parts = [line for line in fake.private_key_pem.splitlines() if "PRIVATE KEY" not in line][:3]
    for text in outputs:
        assert not any(part in text for part in secret_parts)
        assert "ya29." not in text and "assertion" not in text.lower()
        assert fake.private_key_id not in text
    assert source.details.model_dump(mode="json")["service_account_key"] == "${" + KEY_ENV + "}"
    assert "retrying" in caplog.text and health.ok  # throttling was logged, without secrets


def test_auth_problems_are_one_clear_line(fake: FakeDriveService, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    monkeypatch.setenv(KEY_ENV, json.dumps({**fake.key_info(), "private_key": other}))
    with pytest.raises(SourceError) as wrong_key:
        make_source(fake).containers()
    message = str(wrong_key.value)
    assert message == f"endpoint 'gd': authentication at {fake.token_url} failed: invalid_grant: Invalid JWT Signature."
    assert not wrong_key.value.retryable
    monkeypatch.setenv(KEY_ENV, json.dumps(fake.key_info()))
    fake.delegation = False
    with pytest.raises(SourceError, match=r"unauthorized_client: Client is unauthorized .*\(domain-wide delegation "
                                          r"for client file-connector@.* is not enabled"):
        make_source(fake).containers()
    fake.delegation = True
    health = make_source(fake, subject="nobody@example.com").health()
    assert not health.ok and "unauthorized_client" in health.checks["token"]
    key_file = tmp_path / "key.json"
    with pytest.raises(ConfigError, match=f"service_account_key: file {key_file} not found"):
        make_source(fake, service_account_key=str(key_file)).containers()
    key_file.write_text("not json")
    with pytest.raises(ConfigError, match=r"service_account_key \(.*key.json\): not valid JSON"):
        make_source(fake, service_account_key=str(key_file)).containers()
    key_file.write_text(json.dumps({"type": "authorized_user", "client_id": "x"}))
    with pytest.raises(ConfigError, match="is a 'authorized_user' key, not a service account key"):
        make_source(fake, service_account_key=str(key_file)).containers()
    key_file.write_text(json.dumps(fake.key_info()))
    monkeypatch.setenv("FC_TEST_KEY_PATH", str(key_file))  # a variable holding the key file's path works too
    assert make_source(fake, service_account_key="${FC_TEST_KEY_PATH}").health().ok
    assert make_source(fake, service_account_key=str(key_file)).health().ok


def test_details_validation_names_the_field() -> None:
    def parse(**endpoint_details: Any) -> None:
        base = {"service_account_key": "${KEY}", "shared_drives": "all"}
        parse_config({"endpoints": [{"name": "gd", "type": "google_drive",
                                     "endpoint_details": {**base, **endpoint_details}}]})

    with pytest.raises(ConfigError, match="endpoint 'gd': endpoint_details.service_account_key: .*never the JSON itself"):
        parse(service_account_key='{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----"}')
    with pytest.raises(ConfigError, match="service_account_key: .*never the JSON itself"):
        parse(service_account_key={"type": "service_account"})
    with pytest.raises(ConfigError, match="shared_drives, my_drive, folder_id: set at least one"):
        parse(shared_drives=None)
    with pytest.raises(ConfigError, match="my_drive: needs subject"):
        parse(my_drive=True)
    with pytest.raises(ConfigError, match="api_url: 'http://x' is not an https URL"):
        parse(api_url="http://x")
    with pytest.raises(ConfigError, match="page_size"):
        parse(page_size=5000)
    parse(service_account_key={"env": "KEY"}, shared_drives=["Sales", "0Aabc"], my_drive=True, subject="a@b.c",
          folder_id="1xyz", scopes=["https://www.googleapis.com/auth/drive.readonly"])
    parse(service_account_key="keys/sa.json")


def test_shared_drives_by_name_or_id_and_sharing(fake: FakeDriveService, sqlite_store: SQLiteStore) -> None:
    sales = named(fake, "Sales")
    assert [c.key for c in make_source(fake, shared_drives=["sales"], my_drive=False).containers()] == [sales.id]
    assert [c.key for c in make_source(fake, shared_drives=sales.id, my_drive=False).containers()] == [sales.id]
    with pytest.raises(SourceError, match=r"shared_drives: no shared drive 'Nope' is shared with file-connector@.*"
                                          r"\(shared drives: Engineering, Sales\)"):
        make_source(fake, shared_drives=["Nope"]).containers()
    hidden = fake.add_shared_drive("Board", files=5, members={fake.subject})  # not shared with the account itself
    assert hidden.id not in [c.key for c in make_source(fake, subject=None, my_drive=False).containers()]
    assert hidden.id in [c.key for c in make_source(fake).containers()]  # the delegated user is a member


def test_cli_sync_health_and_discovery_through_dagster(fake: FakeDriveService, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from dagster import build_sensor_context, instance_for_test

    from file_connector_dagster import cli
    from file_connector_dagster.defs import build_definitions

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = tmp_path / "connector.yaml"
    config.write_text(textwrap.dedent(f"""
        store: {{type: sqlite, path: inventory.db}}
        endpoints:
          - name: gd
            type: google_drive
            endpoint_details:
              service_account_key: ${{{KEY_ENV}}}
              subject: {fake.subject}
              shared_drives: [Sales]
              my_drive: true
              api_url: {fake.api_url}
              ca_bundle: {fake.tls.ca_path}
    """))
    assert cli.main(["health", "--config", str(config)]) == 0
    assert cli.main(["sync", "--config", str(config)]) == 0
    sales = named(fake, "Sales")
    sales.rename(sales.base_id(1), "renamed")
    sales.trash(sales.base_id(sales.n_folders + 7))
    assert cli.main(["sync", "--config", str(config)]) == 0
    out = capsys.readouterr()
    assert "ya29." not in out.out + out.err and "PRIVATE KEY" not in out.out + out.err
    with SQLiteStore(tmp_path / "inventory.db") as db:
        assert_in_step(db, sales)
        assert_in_step(db, fake.users[fake.subject])

    defs = build_definitions(config)
    sensor = defs.resolve_sensor_def("discover_gd")
    with instance_for_test() as instance:
        with build_sensor_context(instance_ref=instance.get_ref(), resources=defs.resources) as context:
            first = sensor(context)
        assert first.run_requests  # the first syncs (one run may cover several containers)
        assert sorted(first.dynamic_partitions_requests[0].partition_keys) == sorted([sales.id, MY_DRIVE])
    every_drive = tmp_path / "every-drive.yaml"  # (the resource caches a config by its path)
    every_drive.write_text(config.read_text().replace("shared_drives: [Sales]", "shared_drives: all"))
    fake.add_shared_drive("New Projects", files=3)  # a shared drive added later becomes a partition
    defs = build_definitions(every_drive)
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(first.dynamic_partitions_requests[0].partitions_def_name,
                                        [sales.id, MY_DRIVE])
        with build_sensor_context(instance_ref=instance.get_ref(), resources=defs.resources) as context:
            later = defs.resolve_sensor_def("discover_gd")(context)
    assert later.skip_reason is None, later.skip_reason
    assert later.run_requests and sorted(later.dynamic_partitions_requests[0].partition_keys) == sorted(
        [named(fake, "Engineering").id, named(fake, "New Projects").id])

    monkeypatch.setenv(KEY_ENV, json.dumps({**fake.key_info(), "client_email": "someone@else.iam.gserviceaccount.com"}))
    assert cli.main(["sync", "--config", str(config)]) == 1
    out = capsys.readouterr()
    assert "invalid_grant" in out.out + out.err and "PRIVATE KEY" not in out.out + out.err
