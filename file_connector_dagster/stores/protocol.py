"""The sync protocol: the rules that decide what a store holds, written once for every store.

Read this file to know when a file is added, rewritten, kept, tombstoned or restored. The stores
(sqlite.py, postgres.py, mongo.py) only carry out the reads and writes it asks for (Store and PageTx
in base.py); none of them decides anything.

One sync of one container (ContainerSync):
  1. Lease first. A sync takes the container's lease before it reads anything. A lease still held by a
     live sync refuses the new one (retryable); a lease whose holder died (its process is gone, or the
     lease ran out) is taken over and that sync's log row becomes "interrupted".
  2. State under the lease. The cursor, the folder tree and the number of live files are read only
     after the lease is taken, so nobody else moves them while this sync runs.
  3. Pages, one transaction each, compare-and-set. A page commits only if the container's stored cursor
     is still the one the page continues from and the lease is still this sync's; otherwise nothing of
     the page is written (a stale run can never replay old pages over newer ones).
  4. Inside a page, in this order:
       moves       a folder renamed/moved rewrites the paths under it; moved to None tombstones them;
       deletions   the ids a source reports gone are tombstoned (deleted_at set; rows are never removed);
       upserts     classify(): new -> inserted; tombstoned -> restored; same UNCHANGED_FIELDS -> left
                   alone (not rewritten, updated_at kept); anything else -> rewritten;
       folders     the folder tree a delta source keeps;
       the sweep   only on the last page of a COMPLETE full listing (not listing_incomplete): every
                   live file of the container that the listing did not see is tombstoned, except those
                   at or under the page's incomplete_paths (folders it could not read). A listing that
                   began on an empty container (fresh) keeps no seen-set: it cannot have missed a file;
                   how many distinct files the listing saw (the seen-set's size, or a fresh listing's
                   new ids page by page) goes to its sync_logs row for the consistency check;
       the guard   every tombstone of the sync counts against its DeleteGuard; a page that would take
                   the sync past it fails with one line and commits nothing (see DeleteGuard);
       cursor      the page's cursor, stored last (renewing the lease).
  5. Finish: the sync_logs row gets its status and counts and the lease is released.

Those are the only ways a file becomes a tombstone: a deletion or move-out reported by the source,
the sweep after a complete listing, or `file-connector prune` of an endpoint removed from the config
(prune_endpoint below). All of them pass the same guard.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable

from ..errors import FileConnectorError, StoreError, SyncInterrupted
from ..records import ChangePage, FileRecord, Folder, PageStats, SyncState, SyncStats, utcnow

if TYPE_CHECKING:
    from .base import PageTx, Store, Stored

# A sync holds its container for this long after its last committed page; a second sync of the same
# container meanwhile fails (retryably) instead of interleaving cursors and listings.
SYNC_LEASE = timedelta(minutes=30)
INTERRUPTED = "interrupted: the process stopped before the sync finished"

# What makes an incoming record "the same" as its stored live row: equal on all of these.
UNCHANGED_FIELDS = ("change_key", "path", "title", "container")


# -- the lease ------------------------------------------------------------------------------------
@dataclass(slots=True)
class Lease:
    """Who holds a container: the sync_logs id of the running sync, its host:pid and until when."""

    sync_id: str | None
    owner: str | None
    until: datetime | None


def lease_owner() -> str:
    """host:pid, so a lease left by a process that died on this host is taken over at once."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lease_is_live(owner: str | None, until: datetime | None, now: datetime) -> bool:
    """Whether a held lease still excludes a new sync of the container."""
    if until is None or until <= now:
        return False
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's: trust the lease
    if int(pid) == os.getpid():
        return False  # this process's own earlier sync, which has ended (syncs of a container run serially)
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_sync(store: "Store", endpoint: str, container: str) -> int | str:
    """Take the container's lease and open its sync_logs row ('running'), atomically.

    Raises:
        StoreError (retryable): a live sync holds the lease.
    """
    now = utcnow()
    sync_id, holder = store.take_lease(endpoint, container, lease_owner(), now + SYNC_LEASE,
                                       lambda held: not lease_is_live(held.owner, held.until, now))
    if sync_id is None:
        until = holder.until if holder and holder.until else now
        raise StoreError(f"{store.label}: {endpoint}/{container}: another sync (id {holder and holder.sync_id}) "
                         f"is still running; its lease runs until {until.isoformat(timespec='seconds')}",
                         retryable=True)
    return sync_id


# -- unchanged detection -------------------------------------------------------------------------
def classify(record: FileRecord, container: str, stored: "Stored | None") -> str:
    """What an incoming record of `container` does to its stored row: added | restored | unchanged | updated."""
    if stored is None:
        return "added"
    if stored.deleted:
        return "restored"
    incoming = (record.change_key, record.path, record.title, container)
    if incoming == (stored.change_key, stored.path, stored.title, stored.container):
        return "unchanged"
    return "updated"


# -- the mass-delete guard ---------------------------------------------------------------------------
class MassDeleteError(FileConnectorError):
    """A sync would tombstone more of a container than its guard allows; nothing of that page was written.
    Not retryable: running again gives the same answer until the user allows it."""

    retryable = False


@dataclass
class DeleteGuard:
    """How much of a container one sync may tombstone (rclone's --max-delete, as a share or a count).

    Attributes:
        max_share: trip when a sync tombstones more than this share of the live files it started with.
        max_count: trip when a sync tombstones more than this many files (None: no count limit).
        allow: the user's explicit override (--allow-mass-delete): never trip.
    A sync that tombstones fewer than MIN_GUARDED files never trips the share rule (deleting 3 of a
    folder's 4 files is everyday work); max_count guards small containers too.
    """

    max_share: float = 0.5
    max_count: int | None = None
    allow: bool = False

    MIN_GUARDED = 10

    def trips(self, tombstones: int, live: int) -> bool:
        """Whether a sync that tombstones this many of `live` files goes past the guard."""
        return not self.allow and (self._over_count(tombstones) or self._over_share(tombstones, live))

    def _over_count(self, tombstones: int) -> bool:
        return self.max_count is not None and tombstones > self.max_count

    def _over_share(self, tombstones: int, live: int) -> bool:
        return tombstones >= self.MIN_GUARDED and tombstones > self.max_share * live

    def check(self, where: str, tombstones: int, live: int) -> None:
        """Raise MassDeleteError when `tombstones` (the sync's total so far) is more than allowed."""
        if not self.trips(tombstones, live):
            return
        over_count = self._over_count(tombstones)
        share = f"{tombstones / live:.0%} of " if live else ""
        limit = (f"more than max_count={self.max_count}" if over_count
                 else f"more than max_share={self.max_share:g}")
        raise MassDeleteError(
            f"{where}: this sync would tombstone {tombstones} files ({share}{live} live, {limit}); nothing of "
            f"it was tombstoned. If they really are gone, re-run with --allow-mass-delete (run config "
            f"allow_mass_delete: true, or delete_guard.allow_mass_delete in connector.yaml)")


# -- one page ------------------------------------------------------------------------------------
@dataclass
class _Expect:
    """What a page of a sync expects to find: its lease and the cursor it continues from."""

    sync_id: str
    cursor: str | None


class _Budget:
    """The guard and the tombstones a sync has made so far (None when pages are applied without a sync).

    The share rule needs the live files the sync started with: a count of the whole container, which most
    syncs never need (they tombstone fewer than MIN_GUARDED files), so that a sync with nothing to do stays a
    few small statements whatever the container's size. It is counted the first time it is needed, in that
    page's transaction, and taken back to the sync's start: less what this sync has added or restored, plus
    what it has tombstoned (files moved in from another container meanwhile count as if there before).
    """

    def __init__(self, guard: DeleteGuard, where: str, endpoint: str, container: str):
        self.guard, self.where, self.endpoint, self.container = guard, where, endpoint, container
        self.spent = 0  # tombstones this sync committed
        self.gained = 0  # files this sync added or restored
        self._live: int | None = None

    def _live_at_start(self, tx: "PageTx", tombstones: int) -> int:
        if self.guard.allow or not (tombstones >= DeleteGuard.MIN_GUARDED or self.guard.trips(tombstones, 0)):
            return 0  # the share rule cannot trip: no count needed
        if self._live is None:
            self._live = max(0, tx.count_under(self.endpoint, self.container, "") - self.gained + self.spent)
        return self._live

    def check(self, tx: "PageTx", more: int) -> None:
        """Raise MassDeleteError if `more` tombstones on top of those already made are too many."""
        total = self.spent + more
        self.guard.check(self.where, total, self._live_at_start(tx, total))

    def fits(self, tx: "PageTx", more: int) -> bool:
        total = self.spent + more
        return not self.guard.trips(total, self._live_at_start(tx, total))


def apply_page(store: "Store", endpoint: str, container: str, page: ChangePage, *,
               expect: _Expect | None = None, budget: _Budget | None = None) -> PageStats:
    """Apply one page in one store transaction (the steps and their order: this module's docstring).

    Without `expect` (tests, benchmarks, a one-off load) the page is applied whatever the stored cursor;
    ContainerSync always passes it.
    """
    def work(tx: "PageTx") -> PageStats:
        return _apply(tx, store, endpoint, container, page, expect, budget)

    stats = store.in_transaction(f"apply page of {endpoint}/{container}", work)
    if budget is not None:
        budget.spent += stats.deleted
        budget.gained += stats.added + stats.restored
    return stats


def _apply(tx: "PageTx", store: "Store", endpoint: str, container: str, page: ChangePage,
           expect: _Expect | None, budget: _Budget | None) -> PageStats:
    stats = PageStats()
    now = utcnow()
    state = tx.sync_row(endpoint, container)
    if expect is not None:
        if state.running_sync != expect.sync_id:
            raise StoreError(f"{store.label}: {endpoint}/{container}: this sync (id {expect.sync_id}) no longer "
                             f"holds the container (now: {state.running_sync or 'nobody'}); page not committed",
                             retryable=True)
        if state.cursor != expect.cursor:
            raise StoreError(f"{store.label}: {endpoint}/{container}: the stored cursor moved under this sync "
                             "(another sync committed meanwhile); page not committed", retryable=True)
    if budget is not None:  # the guard decides before anything is written (not every store can roll back)
        doomed = sum(tx.count_under(endpoint, container, old + "/") for old, new in page.moves if new is None)
        if page.deletions:  # counted only when they might be too many
            doomed += (len(page.deletions) if budget.fits(tx, doomed + len(page.deletions))
                       else tx.count_live(endpoint, page.deletions))
        budget.check(tx, doomed)
    tombstones = 0
    for old, new in page.moves:
        prefix = old + "/"
        if new is None:
            tombstones += tx.tombstone_under(endpoint, container, prefix, now)
        else:
            stats.updated += tx.move_under(endpoint, container, prefix, new + "/", now)
    if page.deletions:
        tombstones += tx.tombstone(endpoint, page.deletions, now)

    fresh = False
    if page.full_listing:
        # A listing that began on an empty container met every row itself: no seen-set, no sweep.
        fresh = not tx.has_files(endpoint, container) if page.starts_listing else state.listing_fresh
    if page.upserts:
        _upsert(tx, endpoint, container, page.upserts, now, stats, fresh, page.encoded)
    if page.folders:
        tx.put_folders(endpoint, container, page.folders)
    if page.folder_deletions:
        tx.delete_folders(endpoint, container, page.folder_deletions)

    if page.full_listing:
        if page.starts_listing:
            tx.clear_seen(endpoint, container)
        if not fresh and page.upserts:
            tx.mark_seen(endpoint, container, [r.external_id for r in page.upserts])
        if page.last and not page.listing_incomplete and not fresh:
            stats.seen_total = tx.count_seen(endpoint, container)
            keep = page.incomplete_paths  # what the listing could not read into is not known to be gone
            unseen = tx.count_unseen(endpoint, container, keep)
            if unseen:
                if budget is not None:
                    budget.check(tx, tombstones + unseen)
                tombstones += tx.tombstone_unseen(endpoint, container, now, keep)
        if page.last and not fresh:
            tx.clear_seen(endpoint, container)

    stats.deleted += tombstones
    tx.save_state(endpoint, container, SyncState(
        cursor=page.cursor, listing_in_progress=page.full_listing and not page.last,
        listing_fresh=fresh and not page.last, last_sync_at=now if page.last else None), now + SYNC_LEASE)
    return stats


def _upsert(tx: "PageTx", endpoint: str, container: str, records: list[FileRecord], now: datetime,
            stats: PageStats, fresh: bool, encoded: Any = None) -> None:
    if fresh:  # nearly every id is new: insert first, classify only what was already there
        existing = tx.insert_new(endpoint, container, records, now, encoded)
        stats.added += len(records) - len(existing)
        stats.new_seen += len(records) - len(existing)
        for record in records:
            if record.external_id not in existing:
                stats.written(record)
        records = [r for r in records if r.external_id in existing]
        if not records:
            return
    stored = tx.stored(endpoint, [r.external_id for r in records])
    to_write = []
    for record in records:
        if fresh and getattr(stored.get(record.external_id), "container", None) != container:
            stats.new_seen += 1  # moved in from another container (else listed earlier in this listing)
        change = classify(record, container, stored.get(record.external_id))
        setattr(stats, change, getattr(stats, change) + 1)
        if change != "unchanged":
            to_write.append(record)
            stats.written(record)
    if to_write:
        tx.write_files(endpoint, container, to_write, now)


# -- one sync ------------------------------------------------------------------------------------
class ContainerSync:
    """One sync of one container: lease first, state read under it, pages compare-and-set, then finish.

        with ContainerSync(store, endpoint, container, guard) as sync:
            for page in source.sync(container, sync.cursor, sync.folders): sync.apply(page)
            sync.stats.status = "success"

    Args:
        guard: the mass-delete guard for this sync (default: DeleteGuard()).
        full: the source will list everything again; `cursor` is then None (the stored one stays the
            compare-and-set base until the listing's first page commits).
    """

    def __init__(self, store: "Store", endpoint: str, container: str, guard: DeleteGuard | None = None,
                 full: bool = False):
        self.store, self.endpoint, self.container = store, endpoint, container
        self.guard = guard or DeleteGuard()
        self.full = full
        self.sync_id: int | str | None = None
        self.stats = SyncStats(endpoint=endpoint, container=container)
        self.cursor: str | None = None
        self.folders: dict[str, Folder] = {}
        self._expect: _Expect | None = None
        self._budget: _Budget | None = None
        self.likely_fresh = False  # a first listing (nothing stored yet): every file will be inserted

    def start(self) -> "ContainerSync":
        self.sync_id = start_sync(self.store, self.endpoint, self.container)
        try:
            state = self.store.sync_state(self.endpoint, self.container)
            self._expect = _Expect(str(self.sync_id), state.cursor)
            self.cursor = None if self.full else state.cursor
            self.folders = self.store.folders(self.endpoint, self.container) if self.cursor else {}
            self.likely_fresh = state.listing_fresh or (state.cursor is None and state.last_sync_at is None)
            self._budget = _Budget(self.guard, f"endpoint {self.endpoint!r}, container {self.container!r}",
                                   self.endpoint, self.container)
        except BaseException as exc:
            self.finish(exc)
            raise
        return self

    def apply(self, page: ChangePage) -> PageStats:
        assert self._expect is not None, "start() first"
        stats = self.store.apply_page(self.endpoint, self.container, page, expect=self._expect, budget=self._budget)
        self._expect.cursor = page.cursor
        self.stats.add_page(page, stats)
        return stats

    def finish(self, error: BaseException | None = None, error_text: Callable[[BaseException], str] = str) -> None:
        """Record the outcome and release the lease. A failure to record it is raised only when the sync
        itself succeeded (otherwise the original error is the one to report)."""
        if self.sync_id is None:
            return
        if error is not None and (isinstance(error, SyncInterrupted) or not isinstance(error, Exception)):
            # stopped on request (Ctrl-C, a cancelled run) or by the process going down
            self.stats.status, self.stats.error = "interrupted", f"interrupted: {error_text(error)}"
        elif error is not None:
            self.stats.status, self.stats.error = "failed", error_text(error)
        elif self.stats.status == "running":
            self.stats.status = "success"
        try:
            self.store.finish_sync(self.sync_id, self.stats)
        except FileConnectorError:
            if error is None:
                raise
        finally:
            self.sync_id = None

    def __enter__(self) -> "ContainerSync":
        return self.start()

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.finish(exc)


# -- an endpoint removed from the config ---------------------------------------------------------
def prune_endpoint(store: "Store", endpoint: str, guard: DeleteGuard | None = None) -> int:
    """Tombstone every live file of an endpoint that connector.yaml no longer lists (marking it inactive),
    container by container, each under its lease and the guard: pruning removes all of a container, so
    the share rule trips unless the user allows it. Returns how many files were tombstoned."""
    guard = guard or DeleteGuard()
    store.deactivate_endpoint(endpoint)
    total = 0
    for container in store.containers(endpoint):
        with ContainerSync(store, endpoint, container, guard) as sync:
            # an empty, complete listing: the sweep tombstones every live file; the cursor is forgotten
            sync.apply(ChangePage(full_listing=True, starts_listing=True, last=True, cursor=None))
            total += sync.stats.deleted
    return total
