"""The sync protocol's guarantees, on every store: state is read under the lease, a page commits only on
the cursor it continues from, and a sync never tombstones more than its guard allows."""

from __future__ import annotations

import json

import pytest

from file_connector_dagster.engine import commit_changes, open_changes, sync_container
from file_connector_dagster.errors import StoreError
from file_connector_dagster.records import ChangePage
from file_connector_dagster.stores.protocol import ContainerSync

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
