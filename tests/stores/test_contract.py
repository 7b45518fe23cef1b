"""The store contract, run against every store: sqlite, postgres and mongo (real servers)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from file_connector_dagster.engine import sync_container
from file_connector_dagster.errors import StoreError
from file_connector_dagster.records import ChangePage, Folder, PageStats, SyncStats
from file_connector_dagster.sources.local import LocalDetails, LocalSource

from .helpers import ENDPOINT, ListSource, all_files, rec

C = "library"


def apply(store, *records, container: str = C, **page_fields) -> PageStats:
    page_fields.setdefault("cursor", "cur")
    return store.apply_page(ENDPOINT, container, ChangePage(upserts=list(records), **page_fields))


def tick() -> None:
    """Let the clock pass a millisecond, the resolution of BSON dates."""
    time.sleep(0.005)


# -- schema -------------------------------------------------------------------------------------------
def test_migrations_from_empty_then_rerun_and_concurrent(store_type, store_factory):
    first, second = store_factory(store_type), store_factory(store_type)
    versions, errors = [], []

    def migrate(store):
        try:
            versions.append(store.migrate())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(s,)) for s in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert versions[0] == versions[1] >= 1
    assert first.migrate() == versions[0]  # re-running is a no-op
    assert apply(first, rec(1)).added == 1


# -- upserts ------------------------------------------------------------------------------------------
def test_upsert_counts_and_unchanged_rows_not_rewritten(store):
    assert apply(store, rec(1), rec(2), rec(3), rec(4), rec(5)) == PageStats(added=5)
    before = all_files(store)
    tick()
    assert apply(store, rec(1), rec(2), rec(3), rec(4), rec(5)) == PageStats(unchanged=5)
    assert all_files(store) == before  # nothing rewritten: same updated_at, same everything

    tick()
    stats = apply(store, rec(1, change_key="v2"), rec(2, path="other/file2.txt"), rec(3, title="renamed.txt"),
                  rec(4), rec(6))
    assert stats == PageStats(added=1, updated=3, unchanged=1)
    after = all_files(store)
    for n in (1, 2, 3):
        assert after[f"f{n}"].updated_at > before[f"f{n}"].updated_at
        assert after[f"f{n}"].first_seen_at == before[f"f{n}"].first_seen_at
    assert after["f4"].updated_at == before["f4"].updated_at
    assert after["f1"].change_key == "v2" and after["f2"].path == "other/file2.txt" and after["f3"].title == "renamed.txt"

    # the same id reported from another container moves the row there
    assert store.apply_page(ENDPOINT, "other", ChangePage(upserts=[rec(5)], cursor="x")) == PageStats(updated=1)
    assert all_files(store)["f5"].container == "other"


def test_record_fields_round_trip(store):
    original = rec(1, metadata={"web_url": "https://x.test/é", "nested": {"a": [1, 2]}, "quote": "tab\tnew\nline\\"})
    apply(store, original)
    stored = all_files(store)["f1"]
    for name in ("external_id", "title", "path", "file_link", "date_created", "date_updated", "size", "mime_type",
                 "change_key", "project_id", "user_id", "metadata"):
        assert getattr(stored, name) == getattr(original, name), name
    assert stored.endpoint == ENDPOINT and stored.container == C
    assert stored.deleted_at is None and stored.processing_errors == [] and stored.excluded_by is None
    for stamp in (stored.first_seen_at, stored.updated_at, stored.date_created):
        assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)


# -- tombstones ---------------------------------------------------------------------------------------
def test_tombstones_and_restores(store):
    apply(store, rec(1), rec(2), rec(3))
    tick()
    assert store.apply_page(ENDPOINT, C, ChangePage(deletions=["f1", "f2", "missing"], cursor="d")) == PageStats(deleted=2)
    assert store.apply_page(ENDPOINT, C, ChangePage(deletions=["f1"], cursor="d")) == PageStats()  # already gone
    files = all_files(store)
    assert len(files) == 3  # tombstones, not deletions
    assert files["f1"].is_deleted and files["f1"].updated_at >= files["f1"].deleted_at
    assert set(all_files(store, include_deleted=False)) == {"f3"}
    assert store.count_files(ENDPOINT) == 1

    tick()
    assert apply(store, rec(1), rec(3)) == PageStats(restored=1, unchanged=1)
    restored = all_files(store)["f1"]
    assert not restored.is_deleted and restored.first_seen_at == files["f1"].first_seen_at
    totals = SyncStats(ENDPOINT, C)
    totals.add_page(ChangePage(upserts=[rec(1)]), PageStats(restored=1))
    assert totals.added == 1  # a restored file counts as added for the user


# -- moves --------------------------------------------------------------------------------------------
def test_moves_rewrite_prefix_and_move_out_tombstones(store):
    apply(store, rec(1, path="a/x.txt"), rec(2, path="a/b/y.txt"), rec(3, path="ab/z.txt"), rec(4, path="a"))
    store.apply_page(ENDPOINT, "elsewhere", ChangePage(upserts=[rec(9, path="a/w.txt")], cursor="e"))
    before = all_files(store)
    tick()
    assert store.apply_page(ENDPOINT, C, ChangePage(moves=[("a", "c")], cursor="m")) == PageStats(updated=2)
    files = all_files(store)
    assert files["f1"].path == "c/x.txt" and files["f2"].path == "c/b/y.txt"
    assert files["f3"].path == "ab/z.txt" and files["f4"].path == "a"  # same prefix letters, not under a/
    assert files["f9"].path == "a/w.txt"  # another container
    assert files["f1"].updated_at > before["f1"].updated_at
    assert files["f3"].updated_at == before["f3"].updated_at

    # an upsert in the same page sees the moved paths: unchanged
    assert apply(store, rec(1, path="c/x.txt")) == PageStats(unchanged=1)
    assert store.apply_page(ENDPOINT, C, ChangePage(moves=[("c/b", None)], cursor="m")) == PageStats(deleted=1)
    assert store.apply_page(ENDPOINT, C, ChangePage(moves=[("c/b", None)], cursor="m")) == PageStats()
    files = all_files(store)
    assert files["f2"].is_deleted and not files["f1"].is_deleted


# -- full listings --------------------------------------------------------------------------------------
def test_full_listing_sweep_with_resume_and_restart(store):
    apply(store, *(rec(n) for n in range(1, 7)))
    # a listing sees 1-2, then is aborted; a fresh one (starts_listing) forgets that
    apply(store, rec(1), rec(2), full_listing=True, starts_listing=True, cursor="p1")
    assert store.sync_state(ENDPOINT, C).listing_in_progress
    apply(store, rec(1), full_listing=True, starts_listing=True, cursor="q1")
    # resumed from its cursor: the next pages are not starts_listing
    apply(store, rec(3), full_listing=True, cursor="q2")
    stats = apply(store, rec(4), full_listing=True, last=True, cursor="done")
    assert stats == PageStats(unchanged=1, deleted=3)  # 2, 5, 6 were not seen by this listing
    files = all_files(store)
    assert {k for k, f in files.items() if f.is_deleted} == {"f2", "f5", "f6"}
    state = store.sync_state(ENDPOINT, C)
    assert state.cursor == "done" and not state.listing_in_progress and state.last_sync_at is not None

    # the seen set was cleared at the end: the next listing starts clean
    stats = apply(store, rec(1), rec(5), full_listing=True, starts_listing=True, last=True, cursor="done2")
    assert stats == PageStats(unchanged=1, restored=1, deleted=2)  # 3 and 4 gone now
    assert set(all_files(store, include_deleted=False)) == {"f1", "f5"}


def test_incomplete_listing_skips_the_sweep(store):
    apply(store, rec(1), rec(2), rec(3))
    stats = apply(store, rec(1), full_listing=True, starts_listing=True, last=True, listing_incomplete=True,
                  cursor="done")
    assert stats == PageStats(unchanged=1)
    assert len(all_files(store, include_deleted=False)) == 3
    assert not store.sync_state(ENDPOINT, C).listing_in_progress


def test_sweep_keeps_what_the_listing_could_not_read(store):
    """incomplete_paths: files at or under an unreadable path stay live; every other unseen file (also
    one whose path merely starts with the same letters, or holds LIKE/regex characters) is tombstoned."""
    paths = {1: "a/x.txt", 2: "a/y/z.txt", 3: "ab/w.txt", 4: "c.txt", 5: "a", 6: "a%_.(x)/q.txt", 7: "d/e.txt",
             8: "a%_.(x)/r.txt"}
    apply(store, *(rec(n, path=p) for n, p in paths.items()))
    stats = apply(store, rec(4, path="c.txt"), full_listing=True, starts_listing=True, last=True, cursor="done",
                  incomplete_paths=["a", "a%_.(x)/q.txt", "d/e.txt/"])
    assert stats.deleted == 3  # ab/w.txt, a%_.(x)/r.txt, and d/e.txt ("d/e.txt/" names only what is under it)
    assert {f.path for f in all_files(store, include_deleted=False).values()} == {
        "a/x.txt", "a/y/z.txt", "c.txt", "a", "a%_.(x)/q.txt"}


def test_sweep_only_touches_its_container(store):
    apply(store, rec(1), rec(2))
    store.apply_page(ENDPOINT, "other", ChangePage(upserts=[rec(3)], cursor="o"))
    assert apply(store, rec(1), full_listing=True, starts_listing=True, last=True, cursor="done").deleted == 1
    assert set(all_files(store, include_deleted=False)) == {"f1", "f3"}


# -- cursor atomicity -------------------------------------------------------------------------------------
class Uncursorable:
    """A cursor no store can write: the page fails after its rows, at the cursor."""


def test_failed_page_leaves_cursor_and_replay_is_harmless(store):
    apply(store, rec(1), rec(2), cursor="c1")
    bad = ChangePage(upserts=[rec(2, change_key="v2"), rec(3), rec(4)], deletions=["f1"], cursor=Uncursorable(),
                     folders=[Folder("d1", None, "docs")])
    with pytest.raises(StoreError) as caught:
        store.apply_page(ENDPOINT, C, bad)
    message = str(caught.value)
    assert message.startswith(store.label) and "apply page" in message and "\n" not in message
    assert "password" not in message
    assert store.sync_state(ENDPOINT, C).cursor == "c1"
    if getattr(store, "_supports_transactions", lambda: True)():
        files = all_files(store)  # the page's rows rolled back with it
        assert set(files) == {"f1", "f2"} and not files["f1"].is_deleted and files["f2"].change_key == "v1"
        assert store.folders(ENDPOINT, C) == {}

    good = ChangePage(upserts=bad.upserts, deletions=bad.deletions, cursor="c2", folders=bad.folders)
    store.apply_page(ENDPOINT, C, good)
    assert store.apply_page(ENDPOINT, C, good) == PageStats(unchanged=3)  # replaying again changes nothing
    files = all_files(store)
    assert set(files) == {"f1", "f2", "f3", "f4"} and files["f1"].is_deleted and files["f2"].change_key == "v2"
    assert store.sync_state(ENDPOINT, C).cursor == "c2"
    assert store.folders(ENDPOINT, C) == {"d1": Folder("d1", None, "docs")}


# -- folders, endpoints, cursors ---------------------------------------------------------------------------
def test_folders_and_reset_cursor(store):
    store.upsert_endpoint(ENDPOINT, "sharepoint", "proj", "user", {"site": "x"})
    store.upsert_endpoint(ENDPOINT, "sharepoint", "proj2", None, {"site": "y"}, is_active=False)
    apply(store, folders=[Folder("root", None, ""), Folder("a", "root", "A"), Folder("b", "a", "B")], cursor="f1")
    apply(store, folders=[Folder("b", "root", "B2"), Folder("f", "b", "F", "2026-01-01T00:00:00.000Z")],
          folder_deletions=["a"], cursor="f2")
    assert store.folders(ENDPOINT, C) == {"root": Folder("root", None, ""), "b": Folder("b", "root", "B2"),
                                          "f": Folder("f", "b", "F", "2026-01-01T00:00:00.000Z")}
    apply(store, folders=[Folder("f", "b", "F", "2026-02-01T00:00:00.000Z")], cursor="f3")  # a node's version changes
    assert store.folders(ENDPOINT, C)["f"].version == "2026-02-01T00:00:00.000Z"
    assert store.folders(ENDPOINT, "other") == {}
    store.reset_cursor(ENDPOINT, C)
    state = store.sync_state(ENDPOINT, C)
    assert state.cursor is None and not state.listing_in_progress
    assert store.sync_state(ENDPOINT, "never").cursor is None


# -- sync logs -------------------------------------------------------------------------------------------
def test_sync_logs(store):
    first = store.start_sync(ENDPOINT, C)
    tick()
    second = store.start_sync(ENDPOINT, "other")
    running = store.sync_logs(ENDPOINT)
    assert [log.status for log in running] == ["running", "running"]
    ok = SyncStats(ENDPOINT, C, listed=10, added=7, unchanged=3, pages=2, api_calls=4, status="success")
    store.finish_sync(first, ok)
    store.finish_sync(second, SyncStats(ENDPOINT, "other", status="failed", error="provider said no"))
    tick()
    third = store.start_sync(ENDPOINT, C)
    store.finish_sync(third, SyncStats(ENDPOINT, C, listed=10, unchanged=10, status="success"))
    store.finish_sync(store.start_sync("another", C), SyncStats("another", C, status="success"))

    logs = store.sync_logs(ENDPOINT)
    assert [(log.container, log.status) for log in logs] == [(C, "success"), ("other", "failed"), (C, "success")]
    assert logs[0].sync_id == third and logs[2].counts["added"] == 7 and logs[2].counts["api_calls"] == 4
    assert logs[1].error == "provider said no" and logs[1].finished >= logs[1].started
    assert len(store.sync_logs()) == 4 and len(store.sync_logs(limit=2)) == 2
    latest = store.latest_syncs()
    assert [(log.endpoint, log.container, log.sync_id) for log in latest] == [
        ("another", C, latest[0].sync_id), (ENDPOINT, C, third), (ENDPOINT, "other", second)]


# -- concurrency -----------------------------------------------------------------------------------------
def test_concurrent_syncs_of_two_containers(store, store_type, store_factory):
    files = {c: [rec(f"{c}-{n}", path=f"{c}/{n}.txt") for n in range(120)] for c in ("north", "south")}
    results, errors = {}, []

    def run(container: str) -> None:
        own = store_factory(store_type)  # each run has its own connection, as two Dagster runs would
        try:
            results[container] = sync_container(ListSource(files, page_size=25), own, container)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for container in files:
        assert (results[container].added, results[container].pages, results[container].status) == (120, 5, "success")
        assert len(all_files(store, container)) == 120
        assert store.sync_state(ENDPOINT, container).cursor == "done"
    assert sorted(log.status for log in store.latest_syncs()) == ["success", "success"]


def test_one_sync_at_a_time_per_container(store, store_type, store_factory, monkeypatch):
    import socket
    import subprocess
    import sys

    from file_connector_dagster.stores import protocol as module
    other = store_factory(store_type)  # a second run, with its own connection
    monkeypatch.setattr(module, "lease_owner", lambda: "build-server-7:4242")  # a run on another machine
    first = store.start_sync(ENDPOINT, C)
    with pytest.raises(StoreError) as info:
        other.start_sync(ENDPOINT, C)
    assert info.value.retryable and f"{ENDPOINT}/{C}: another sync (id {first}) is still running" in str(info.value)
    other.finish_sync(other.start_sync(ENDPOINT, "other"), SyncStats(ENDPOINT, "other", status="success"))
    apply(store, rec(1))  # committing pages keeps the lease
    with pytest.raises(StoreError):
        other.start_sync(ENDPOINT, C)
    store.finish_sync(first, SyncStats(ENDPOINT, C, status="success"))

    # a run elsewhere that died holding the lease: taken over once the lease has run out
    monkeypatch.setattr(module, "SYNC_LEASE", timedelta(seconds=-1))
    second = other.start_sync(ENDPOINT, C)  # free again after finish_sync; this one never finishes
    third = store.start_sync(ENDPOINT, C)
    logs = {log.sync_id: log for log in store.sync_logs(ENDPOINT)}
    assert logs[second].status == "interrupted" and "stopped before the sync finished" in logs[second].error
    assert logs[third].status == "running"
    store.finish_sync(third, SyncStats(ENDPOINT, C, status="success"))

    # a run on this machine whose process is gone: taken over at once, lease or not
    monkeypatch.setattr(module, "SYNC_LEASE", timedelta(minutes=30))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    monkeypatch.setattr(module, "lease_owner", lambda: f"{socket.gethostname()}:{int(dead.stdout)}")
    fourth = other.start_sync(ENDPOINT, C)
    monkeypatch.undo()
    fifth = store.start_sync(ENDPOINT, C)
    logs = {log.sync_id: log for log in store.sync_logs(ENDPOINT)}
    assert logs[fourth].status == "interrupted" and logs[fifth].status == "running"
    store.finish_sync(fifth, SyncStats(ENDPOINT, C, status="success"))
    assert store.sync_state(ENDPOINT, C).cursor == "cur"


# -- reading ------------------------------------------------------------------------------------------
def test_iter_files_keyset_pages_and_changed_since(store):
    apply(store, *(rec(n) for n in range(25)))
    pages = list(store.iter_files(ENDPOINT, C, page_size=10))
    assert [len(p) for p in pages] == [10, 10, 5]
    keys = [(r.updated_at, r.external_id) for p in pages for r in p]
    assert keys == sorted(keys) and len(set(keys)) == 25

    watermark = max(k[0] for k in keys)
    tick()
    apply(store, rec(3, change_key="v2"), rec(7, change_key="v2"), rec(8))
    store.apply_page(ENDPOINT, C, ChangePage(deletions=["f9"], cursor="d"))
    changed = [r.external_id for p in store.iter_files(ENDPOINT, C, changed_since=watermark, page_size=2) for r in p]
    assert changed == ["f3", "f7", "f9"]
    live_changed = store.iter_files(ENDPOINT, C, changed_since=watermark, include_deleted=False)
    assert {r.external_id for p in live_changed for r in p} == {"f3", "f7"}
    assert list(store.iter_files(ENDPOINT, "nothing-here")) == []


def due(store, container: str = C, page_size: int = 1000) -> list[str]:
    return [r.external_id for p in store.iter_due(ENDPOINT, container, page_size) for r in p]


def test_processing_state_per_file(store):
    """Every new or changed version is due exactly until its result is saved; unchanged files never are."""
    apply(store, *(rec(n) for n in range(1, 6)))
    assert due(store, page_size=2) == ["f1", "f2", "f3", "f4", "f5"]
    batch = next(store.iter_due(ENDPOINT, C, 3))
    before = {k: f.updated_at for k, f in all_files(store).items()}
    f1, f2, f3 = batch
    f1.processing_status, f1.processed_key = "processed", f1.change_key
    f1.metadata = {**f1.metadata, "processors": {"content_hash": {"sha256": "ab"}}}
    f1.content_hash = "sha256:ab"
    f2.processing_status, f2.excluded_by = "skipped", "filter"
    f3.processing_status, f3.processing_attempts, f3.processing_errors = "pending", 1, ["hash: boom"]
    assert store.save_processing(ENDPOINT, batch) == 3
    assert due(store) == ["f3", "f4", "f5"]
    files = all_files(store)
    assert {k: f.updated_at for k, f in files.items()} == before  # a result is not a change of the file
    assert (files["f1"].processing_status, files["f1"].processed_key, files["f1"].content_hash) == ("processed", "v1", "sha256:ab")
    assert files["f1"].metadata["processors"] == {"content_hash": {"sha256": "ab"}}
    assert (files["f2"].processing_status, files["f2"].excluded_by) == ("skipped", "filter")
    assert (files["f3"].processing_attempts, files["f3"].processing_errors) == (1, ["hash: boom"])
    assert store.processing_counts(ENDPOINT, C) == {"processed": 1, "skipped": 1, "pending": 3}

    tick()
    apply(store, rec(1), rec(2), rec(4, change_key="v2"))  # unchanged files stay decided
    assert due(store) == ["f3", "f4", "f5"]
    stale = next(store.iter_due(ENDPOINT, C, 1))  # f3 as read now
    tick()
    apply(store, rec(1, change_key="v2"), rec(3, change_key="v2"))  # changed: due again, old results gone
    stale[0].processing_status = "processed"
    assert store.save_processing(ENDPOINT, stale) == 0  # results for an older version are not saved
    files = all_files(store)
    assert due(store) == ["f1", "f3", "f4", "f5"]
    assert files["f1"].metadata.get("processors") is None and files["f1"].processed_key is None
    assert files["f3"].processing_attempts == 0 and files["f3"].processing_errors == []

    store.apply_page(ENDPOINT, C, ChangePage(deletions=["f5"], cursor="d"))
    assert due(store) == ["f1", "f3", "f4"]  # tombstones are not processed
    assert store.requeue(ENDPOINT, C, statuses=["skipped"]) == 1
    assert due(store) == ["f1", "f2", "f3", "f4"]


def test_decisions_made_while_listing_are_stored_with_the_rows(store):
    decided = rec(1)
    decided.processing_status, decided.excluded_by, decided.processed_key = "skipped", "filter", "v1"
    stats = apply(store, decided, rec(2))
    assert stats.added == 2 and stats.decided == {"skipped": 1}
    assert due(store) == ["f2"]
    assert all_files(store)["f1"].excluded_by == "filter"
    tick()
    assert apply(store, decided, rec(2)).decided == {}  # unchanged rows are not written again
    # a folder move re-paths files: their path-based decisions are due again
    store.apply_page(ENDPOINT, C, ChangePage(moves=[("folder", "renamed")], cursor="m"))
    assert due(store) == ["f1", "f2"]


def test_processor_cache_and_files_by_hash(store):
    store.cache_put("virustotal", {"sha256:aa": {"malicious": 0}, "sha256:bb": {"malicious": 2}}, timedelta(hours=1))
    store.cache_put("virustotal", {"sha256:cc": {"malicious": 1}}, timedelta(seconds=-1))  # already expired
    assert store.cache_get("virustotal", ["sha256:aa", "sha256:bb", "sha256:cc", "x"]) == {
        "sha256:aa": {"malicious": 0}, "sha256:bb": {"malicious": 2}}
    store.cache_put("virustotal", {"sha256:aa": {"malicious": 5}}, timedelta(hours=1))
    assert store.cache_get("virustotal", ["sha256:aa"]) == {"sha256:aa": {"malicious": 5}}
    assert store.cache_get("other", ["sha256:aa"]) == {}

    apply(store, rec(1, content_hash="sha256:aa"), rec(2, content_hash="sha256:aa"), rec(3, content_hash="sha256:bb"))
    store.apply_page("elsewhere", C, ChangePage(upserts=[rec(9, content_hash="sha256:aa", endpoint="elsewhere")], cursor="c"))
    assert {r.external_id for r in store.files_by_hash(["sha256:aa"], ENDPOINT)} == {"f1", "f2"}
    assert {(r.endpoint, r.external_id) for r in store.files_by_hash(["sha256:aa", "sha256:zz"])} == {
        (ENDPOINT, "f1"), (ENDPOINT, "f2"), ("elsewhere", "f9")}


# -- end to end through the engine ----------------------------------------------------------------------------
def test_local_folder_syncs_through_the_engine(store, tmp_path):
    root = tmp_path / "share"
    (root / "reports" / "2024").mkdir(parents=True)
    for name in ("a.txt", "reports/b.pdf", "reports/2024/c.docx", "reports/2024/d.xlsx"):
        (root / name).write_text(name)
    source = LocalSource("share", LocalDetails(roots=[str(root)], page_size=2))
    container = source.containers()[0].key

    first = sync_container(source, store, container)
    assert (first.added, first.updated, first.deleted, first.pages, first.status) == (4, 0, 0, 3, "success")
    again = sync_container(source, store, container)
    assert (again.added, again.unchanged, again.deleted) == (0, 4, 0)

    (root / "reports" / "b.pdf").unlink()
    (root / "reports" / "2024" / "c.docx").rename(root / "reports" / "2024" / "c2.docx")
    (root / "a.txt").write_text("longer content now")
    third = sync_container(source, store, container)
    assert (third.added, third.updated, third.unchanged, third.deleted) == (1, 1, 1, 2)
    live = {r.path for p in store.iter_files("share", container, include_deleted=False) for r in p}
    assert live == {"a.txt", "reports/2024/c2.docx", "reports/2024/d.xlsx"}
    assert [log.status for log in store.sync_logs("share")] == ["success"] * 3


# -- consistency: what a full listing saw against the live rows ------------------------------------------------
def _copy_row(store, store_type: str, external_id: str, new_id: str) -> None:
    """Write a copy of a stored row under another id straight into the database, behind the store's back."""
    if store_type == "mongo":
        doc = store.db.files.find_one({"endpoint": ENDPOINT, "external_id": external_id}, {"_id": 0})
        store.db.files.insert_one({**doc, "external_id": new_id})
        return
    from file_connector_dagster.stores.base import FILE_COLUMNS

    mark = "?" if store_type == "sqlite" else "%s"
    columns = ", ".join(FILE_COLUMNS)
    copied = columns.replace("external_id", f"{mark} AS external_id", 1)
    sql = f"INSERT INTO files ({columns}) SELECT {copied} FROM files WHERE endpoint = {mark} AND external_id = {mark}"
    if store_type == "sqlite":
        store.conn.execute(sql, (new_id, ENDPOINT, external_id))
    else:
        with store._tx("test: copy a row") as cur:
            cur.execute(sql, (new_id, ENDPOINT, external_id))


def test_full_listings_record_what_they_saw_and_phantoms_go_red(store, store_type):
    from file_connector_dagster import checks

    # f5 is listed twice, on two pages: 250 distinct files in 251 entries
    files = [rec(n) for n in range(250)] + [rec(5)]
    source = ListSource({C: files}, page_size=100)

    def verdict():
        return checks.consistency(checks.logs_by_container(store, ENDPOINT), store.live_counts(ENDPOINT), [C])

    first = sync_container(source, store, C)  # a fresh listing: no seen-set, counted page by page
    assert (first.listed, first.added, first.listing_complete, first.listing_seen) == (251, 250, True, 250)
    second = sync_container(source, store, C, full=True)  # listed again over its rows: the seen-set's size
    assert (second.listed, second.unchanged, second.listing_seen) == (251, 251, 250)
    sync_container(source, store, C)  # a delta that changes nothing: the full listing stays the basis
    logs = store.sync_logs(ENDPOINT)
    assert [(log.full_listing, log.seen) for log in logs] == [(False, None), (True, 250), (True, 250)]
    assert store.live_counts(ENDPOINT) == {C: (250, 250)}
    assert verdict().passed and verdict().description == "1 of 1 containers consistent (1 compared with their " \
                                                         "last complete full listing)"

    _copy_row(store, store_type, "f7", "phantom")
    out = verdict()
    assert not out.passed and set(out.failing) == {C}
    assert out.failing[C].startswith("1 phantom rows: 251 live rows, but the full listing of ")
    assert out.failing[C].endswith(f"(sync {logs[1].sync_id}) saw 250 files")

    if store_type == "mongo":  # a database seeded without the unique index can hold the same id twice
        store.db.files.delete_one({"endpoint": ENDPOINT, "external_id": "phantom"})
        store.db.files.drop_index("files_endpoint_external_id")
        _copy_row(store, store_type, "f7", "f7")
        assert store.live_counts(ENDPOINT) == {C: (251, 250)}
        assert verdict().failing == {C: "1 duplicate rows: 251 live rows hold 250 distinct external ids"}
    else:  # the primary key refuses a duplicate outright
        with pytest.raises(Exception, match="(?i)unique|duplicate"):
            _copy_row(store, store_type, "f7", "f7")


def test_processing_counts_by_container_in_one_query(store):
    apply(store, rec(1), rec(2), rec(3))
    store.apply_page(ENDPOINT, "other", ChangePage(upserts=[rec(4)], cursor="o"))
    files = all_files(store)
    files["f1"].processing_status, files["f1"].processing_errors = "error", ["hash: boom"]
    files["f2"].processing_status = "processed"
    store.save_processing(ENDPOINT, [files["f1"], files["f2"]])
    apply(store, deletions=["f3"])
    assert store.processing_counts_by_container(ENDPOINT) == {C: {"error": 1, "processed": 1}, "other": {"pending": 1}}
    assert store.processing_counts_by_container("nobody") == {}
