"""The sync protocol's guarantees, on every store: state is read under the lease, a page commits only on
the cursor it continues from, and a sync never tombstones more than its guard allows."""

from __future__ import annotations

import json

import pytest

from file_connector_dagster.engine import commit_changes, open_changes, sync_container
from file_connector_dagster.errors import StoreError
from file_connector_dagster.records import ChangePage
from file_connector_dagster.stores.protocol import ContainerSync, DeleteGuard, MassDeleteError, prune_endpoint

from .helpers import ENDPOINT, ListSource, all_files, rec

C = "library"


class Killed(Exception):
    """The run dies (a crash, a retried step) right after a page committed."""


def die_after(pages: int):
    def on_page(page, stats) -> None:
        if stats.pages == pages:
            raise Killed
    return on_page


def live(store) -> set[str]:
    return set(all_files(store, C, include_deleted=False))


def first_listing(store, n: int = 300) -> tuple[dict, set[str]]:
    files = {C: [rec(i, path=f"d{i % 5}/{i}.txt") for i in range(n)]}
    sync_container(ListSource(files, page_size=100), store, C)
    return files, {f"f{i}" for i in range(n)}


# -- defect 1: concurrent runs of one container ----------------------------------------------------------
def test_a_run_that_waited_reads_the_cursor_under_the_lease(store, store_type, store_factory):
    """The race of issue 7: a full re-listing of 300 files dies after page 1; run B is created (Dagster's
    listing step) while the cursor is mid-listing; A resumes and finishes; then B runs. B must start from
    the cursor A left, not replay the old listing's tail and sweep away the 100 files it did not see."""
    files, everything = first_listing(store)
    with pytest.raises(Killed):
        commit_changes(store, open_changes(ListSource(files, page_size=100), C, full=True),
                       on_page=die_after(1), prefetch=0)
    assert json.loads(store.sync_state(ENDPOINT, C).cursor) == {"next": 100}

    run_b = open_changes(ListSource(files, page_size=100), C)  # B's listing step ran here, mid-listing
    resumed = sync_container(ListSource(files, page_size=100), store_factory(store_type), C)  # A
    assert (resumed.status, resumed.listed, resumed.deleted) == ("success", 200, 0)

    stats = commit_changes(store_factory(store_type), run_b)
    assert (stats.status, stats.listed, stats.deleted) == ("success", 0, 0)  # a delta from A's cursor
    assert live(store) == everything
    assert store.sync_state(ENDPOINT, C).cursor == "done"


def test_a_page_from_a_stale_cursor_does_not_commit(store, store_type, store_factory):
    """The same race one level down: B took the lease and read the mid-listing cursor, then stalled; A took
    the container over and finished the listing. B's pages, built on the old cursor, must not commit."""
    files, everything = first_listing(store)
    with pytest.raises(Killed):
        commit_changes(store, open_changes(ListSource(files, page_size=100), C, full=True),
                       on_page=die_after(1), prefetch=0)

    stalled = ContainerSync(store_factory(store_type), ENDPOINT, C).start()
    assert json.loads(stalled.cursor) == {"next": 100}
    pages_b = ListSource(files, page_size=100).sync(C, stalled.cursor, stalled.folders)
    # A: same process, so B's lease counts as its own ended sync and is taken over, as a dead run's would be
    resumed = sync_container(ListSource(files, page_size=100), store_factory(store_type), C)
    assert (resumed.status, resumed.deleted) == ("success", 0)

    with pytest.raises(StoreError, match="no longer holds the container") as caught:
        for page in pages_b:
            stalled.apply(page)
    assert caught.value.retryable and "\n" not in str(caught.value)
    stalled.finish(caught.value)
    assert live(store) == everything
    state = store.sync_state(ENDPOINT, C)
    assert state.cursor == "done" and not state.listing_in_progress
    a, b = store.sync_logs(ENDPOINT)[:2]
    assert a.status == "success" and b.status == "failed" and "no longer holds the container" in b.error


def test_a_page_commits_only_on_the_cursor_it_continues_from(store):
    """Compare-and-set: a writer that moved the cursor under a sync makes the sync's next page fail whole."""
    files, everything = first_listing(store, n=30)
    sync = ContainerSync(store, ENDPOINT, C, full=True).start()
    store.apply_page(ENDPOINT, C, ChangePage(cursor="moved-by-someone-else"))  # a writer outside the lease
    with pytest.raises(StoreError, match="stored cursor moved"):
        sync.apply(ChangePage(upserts=[rec(0)], full_listing=True, starts_listing=True, last=True, cursor="x"))
    sync.finish(RuntimeError("stopped"))
    assert live(store) == everything  # the would-be sweep of 29 files did not happen
    assert store.sync_state(ENDPOINT, C).cursor == "moved-by-someone-else"


# -- defect 2: the mass-delete guard -----------------------------------------------------------------------
def test_an_empty_relisting_tombstones_nothing_until_allowed(store):
    """A root replaced by an empty folder (or a re-enumeration that comes back empty): the sweep would
    tombstone every file. The sync fails with one line; nothing is tombstoned, the cursor stays."""
    files, everything = first_listing(store, n=40)
    cursor_before = store.sync_state(ENDPOINT, C).cursor
    emptied = ListSource({C: []}, page_size=100)
    with pytest.raises(MassDeleteError) as caught:
        sync_container(emptied, store, C, full=True)
    message = str(caught.value)
    assert "\n" not in message and not caught.value.retryable
    assert message.startswith(f"endpoint '{ENDPOINT}', container '{C}': this sync would tombstone 40 files "
                              "(100% of 40 live, more than max_share=0.5); nothing of it was tombstoned")
    assert "--allow-mass-delete" in message
    assert live(store) == everything and store.sync_state(ENDPOINT, C).cursor == cursor_before
    log = store.sync_logs(ENDPOINT)[0]
    assert log.status == "failed" and "would tombstone 40 files" in log.error

    stats = sync_container(emptied, store, C, full=True, guard=DeleteGuard(allow=True))
    assert (stats.status, stats.deleted) == ("success", 40) and live(store) == set()


def test_guard_counts_every_kind_of_tombstone_across_pages(store):
    """Deletions reported by a delta, folders moved out and the sweep all count, summed over the sync."""
    _, everything = first_listing(store, n=40)
    # 15 deletions in one page: more than half of 40? no, but more than max_count=12
    with ContainerSync(store, ENDPOINT, C, DeleteGuard(max_count=12)) as sync:
        base = sync.cursor
        sync.apply(ChangePage(deletions=[f"f{i}" for i in range(5)], cursor="p1"))  # 5 so far: fine
        with pytest.raises(MassDeleteError, match="would tombstone 13 files .*more than max_count=12"):
            sync.apply(ChangePage(deletions=[f"f{i}" for i in range(5, 13)], cursor="p2"))
    assert live(store) == everything - {f"f{i}" for i in range(5)}
    assert store.sync_state(ENDPOINT, C).cursor == "p1" != base

    # a folder deleted at the source (a move to None) over the share: d0..d4 hold 7 of the 35 live files each
    with pytest.raises(MassDeleteError, match=r"would tombstone 21 files \(60% of 35 live"):
        with ContainerSync(store, ENDPOINT, C) as sync:
            sync.apply(ChangePage(moves=[("d1", None), ("d2", None), ("d3", None)], cursor="p3"))
    assert len(live(store)) == 35

    # small deletions never trip the share rule: 3 of 4 files of a tiny container
    tiny = {"tiny": [rec(f"t{i}", path=f"t/{i}") for i in range(4)]}
    sync_container(ListSource(tiny), store, "tiny")
    stats = sync_container(ListSource({"tiny": tiny["tiny"][:1]}), store, "tiny", full=True)
    assert stats.deleted == 3


def test_the_share_rule_reads_the_live_files_the_sync_started_with(store):
    """The guard's share is of the files live when the sync began, though it counts them only when a page
    first tombstones enough to need it: files this sync added or restored before that page do not dilute it."""
    first_listing(store, n=20)
    with pytest.raises(MassDeleteError, match=r"would tombstone 15 files \(75% of 20 live"):
        with ContainerSync(store, ENDPOINT, C) as sync:
            sync.apply(ChangePage(upserts=[rec(f"n{i}", path=f"new/{i}") for i in range(30)], cursor="p1"))
            sync.apply(ChangePage(deletions=[f"fn{i}" for i in range(2)], cursor="p2"))  # 2: no count needed
            sync.apply(ChangePage(deletions=[f"f{i}" for i in range(13)], cursor="p3"))
    assert len(live(store)) == 48  # 20 + 30 - 2; the page of 13 wrote nothing


def test_guard_on_a_standalone_style_store_counts_before_writing(store):
    """The guard decides before it writes a tombstone (a MongoDB without transactions cannot roll back)."""
    _, everything = first_listing(store, n=40)
    writes: list[str] = []
    real = store.in_transaction

    def spy(operation, work):
        def watched(tx):
            for name in ("tombstone", "tombstone_under", "tombstone_unseen"):
                original = getattr(tx, name)
                setattr(tx, name, lambda *a, _o=original, _n=name: writes.append(_n) or _o(*a))
            return work(tx)
        return real(operation, watched)

    store.in_transaction = spy
    with pytest.raises(MassDeleteError):
        sync_container(ListSource({C: []}), store, C, full=True)
    for page in (ChangePage(deletions=[f"f{i}" for i in range(30)], cursor="d"),
                 ChangePage(moves=[("d1", None), ("d2", None), ("d3", None)], cursor="m")):
        with pytest.raises(MassDeleteError):
            with ContainerSync(store, ENDPOINT, C) as sync:
                sync.apply(page)
    assert writes == [] and live(store) == everything


# -- defect 7: endpoints removed from connector.yaml -------------------------------------------------------
def test_prune_endpoint_tombstones_every_container_under_the_guard(store):
    store.upsert_endpoint("old", "local", None, None, {"roots": ["share"]})
    store.upsert_endpoint(ENDPOINT, "local", None, None, {})
    first_listing(store, n=30)  # the endpoint that stays
    for container, n in (("a", 25), ("b", 4)):
        store.apply_page("old", container, ChangePage(upserts=[rec(f"{container}{i}") for i in range(n)], cursor="c"))

    with pytest.raises(MassDeleteError, match=r"endpoint 'old', container 'a': this sync would tombstone 25 files"):
        prune_endpoint(store, "old")
    assert store.count_files("old") == 29
    assert {e.name: e.is_active for e in store.endpoints()} == {ENDPOINT: True, "old": False}

    assert prune_endpoint(store, "old", DeleteGuard(allow=True)) == 29
    assert store.count_files("old") == 0 and store.count_files("old", include_deleted=True) == 29
    assert store.count_files(ENDPOINT) == 30  # the endpoint that stays is untouched
    assert store.sync_state("old", "a").cursor is None  # re-adding the endpoint lists it afresh
    assert prune_endpoint(store, "old") == 0
