"""The store contract (plain Python, no Dagster).

Every store keeps the same tables (names are a public contract):
  files        one row per endpoint + external_id: the FileRecord fields, deleted_at, first_seen_at,
               updated_at (the last time the row changed), and the processing state of this version:
               processing_status, processed_key, processed_at, processing_attempts, excluded_by,
               processing_errors, content_hash
  endpoints    one row per endpoint: type, project_id, user_id, non-secret details
  sync_state   one row per endpoint + container: the cursor to resume from, listing flag, lease
  sync_logs    one row per sync of a container: started, finished, status, counts, error
and, for their own bookkeeping, schema_version, folders (the folder tree a delta source keeps) and
listing_seen (external ids seen by a full listing in progress, to tombstone the rest at its end) and
processor_cache (answers processors keep across runs, e.g. VirusTotal verdicts by hash, with a TTL).
"""

from __future__ import annotations

import os
import socket
from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from typing import Any, Iterator

from ..records import ChangePage, FileRecord, Folder, PageStats, SyncLog, SyncState, SyncStats

# A sync holds its container for this long after its last committed page; a second sync of the same
# container meanwhile fails (retryably) instead of interleaving cursors and listings. A run that died
# without finishing is taken over once its lease has run out, and its log row becomes "interrupted".
SYNC_LEASE = timedelta(minutes=30)
INTERRUPTED = "interrupted: the process stopped before the sync finished"


def lease_owner() -> str:
    """Who holds a lease: host:pid, so a lease left by a process that died on this host can be taken
    over at once instead of after SYNC_LEASE."""
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


def lease_held_error(label: str, endpoint: str, container: str, sync_id: object, until: datetime):
    from ..errors import StoreError

    return StoreError(f"{label}: {endpoint}/{container}: another sync (id {sync_id}) is still running; "
                      f"its lease runs until {until.isoformat(timespec='seconds')}", retryable=True)


# Columns of `files` in order; stores share it so rows look the same everywhere.
FILE_COLUMNS = (
    "endpoint", "container", "external_id", "title", "path", "file_link", "date_created", "date_updated",
    "size", "mime_type", "change_key", "project_id", "user_id", "metadata", "deleted_at", "first_seen_at",
    "updated_at", "excluded_by", "processing_errors", "processing_status", "processed_key", "processed_at",
    "processing_attempts", "content_hash",
)
# Processing columns a written row takes from its record (processing.py owns their meaning).
PROCESSING_COLUMNS = FILE_COLUMNS[FILE_COLUMNS.index("excluded_by"):]
PENDING = "pending"


def processing_values(record: FileRecord, saving: bool = False) -> dict[str, Any]:
    """The processing columns to write for `record`. For a listed version (apply_page): what the
    processors decided while its page committed, or a fresh pending state. For results (saving,
    save_processing): the record's columns as the chain left them."""
    if saving:
        return {**{c: getattr(record, c) for c in PROCESSING_COLUMNS}, "processing_status": record.processing_status or PENDING}
    if record.processing_status in (None, PENDING):
        return {"excluded_by": None, "processing_errors": [], "processing_status": PENDING, "processed_key": None,
                "processed_at": None, "processing_attempts": 0, "content_hash": record.content_hash}
    return {c: getattr(record, c) for c in PROCESSING_COLUMNS}


def is_unchanged(record: FileRecord, container: str, stored: tuple) -> bool:
    """A stored live row (change_key, path, title, container) is unchanged when the incoming record
    of `container` has the same change key, path, name and container."""
    return (record.change_key, record.path, record.title, container) == tuple(stored)


class Store(ABC):
    """Where file listings live. Methods raise StoreError naming the store and the operation."""

    #: how error messages name this store, without credentials (e.g. "sqlite:/data/inv.db")
    label: str = "store"

    @abstractmethod
    def migrate(self) -> int:
        """Apply pending schema migrations (idempotent, safe against a concurrent caller).

        Returns:
            The schema version now in place.
        """

    @abstractmethod
    def upsert_endpoint(self, name: str, type_name: str, project_id: str | None, user_id: str | None,
                        details: dict[str, Any], is_active: bool = True) -> None:
        """Record an endpoint's configuration (details must already be free of secrets)."""

    @abstractmethod
    def sync_state(self, endpoint: str, container: str) -> SyncState:
        """Returns:
        The container's cursor and watermarks (an empty SyncState before its first sync)."""

    @abstractmethod
    def folders(self, endpoint: str, container: str) -> dict[str, Folder]:
        """Returns:
        The folder tree kept from earlier pages, by folder id."""

    @abstractmethod
    def reset_cursor(self, endpoint: str, container: str) -> None:
        """Forget the cursor so the next sync is a fresh full listing (records stay)."""

    @abstractmethod
    def start_sync(self, endpoint: str, container: str) -> int | str:
        """Open a sync_logs row with status 'running' and take the container's lease (SYNC_LEASE,
        extended by every apply_page), atomically. A live lease (lease_is_live) held by another sync
        raises a retryable StoreError; a dead one is taken over and its log row marked 'interrupted'.

        Returns:
            Its id, for finish_sync (which releases the lease)."""

    @abstractmethod
    def apply_page(self, endpoint: str, container: str, page: ChangePage) -> PageStats:
        """Apply one page and store its cursor in one transaction.

        Order: page.moves (rewrite paths under a moved folder; a move to None tombstones everything
        under it), deletions (set deleted_at), upserts (insert, update only when is_unchanged() is
        false, restore tombstones), folders, and when the page ends a full listing, tombstone every
        live file of the container the listing did not see. Then the cursor. Replaying a page
        after a crash changes nothing.

        Returns:
            added / updated / unchanged / deleted / restored counts.
        """

    @abstractmethod
    def finish_sync(self, sync_id: int | str, stats: SyncStats) -> None:
        """Close the sync_logs row with the final status, counts and error."""

    @abstractmethod
    def iter_files(self, endpoint: str, container: str | None = None, *, changed_since: datetime | None = None,
                   include_deleted: bool = True, page_size: int = 1000) -> Iterator[list[FileRecord]]:
        """Yield the endpoint's files in pages of at most page_size, ordered by updated_at then id.

        Args:
            container: only this container.
            changed_since: only rows whose updated_at is later (what a downstream step has not seen).
            include_deleted: include tombstones.
        """

    @abstractmethod
    def iter_due(self, endpoint: str, container: str, page_size: int = 1000) -> Iterator[list[FileRecord]]:
        """Yield the container's live files whose processing_status is pending, in pages ordered by
        external_id (keyset: a page's rows may leave the set while the next is read). One indexed
        query per page; a container with nothing to do costs one query.
        """

    @abstractmethod
    def save_processing(self, endpoint: str, records: list[FileRecord]) -> int:
        """Store the processing columns (PROCESSING_COLUMNS) and metadata of each record, in one
        transaction, only where the row is still the version that was processed (same updated_at,
        not deleted): a version that changed meanwhile stays pending. updated_at is not touched.

        Returns:
            How many rows were written.
        """

    @abstractmethod
    def requeue(self, endpoint: str, container: str | None = None, statuses: list[str] | None = None) -> int:
        """Mark live files pending again (attempts reset), e.g. after a processor's options changed.

        Args:
            container: only this container.
            statuses: only files in these processing statuses (all when None).

        Returns:
            How many files were re-queued.
        """

    @abstractmethod
    def processing_counts(self, endpoint: str, container: str | None = None) -> dict[str, int]:
        """Returns:
        Live files per processing_status (one grouped query)."""

    @abstractmethod
    def cache_get(self, namespace: str, keys: list[str]) -> dict[str, Any]:
        """Returns:
        The unexpired processor_cache values of these keys."""

    @abstractmethod
    def cache_put(self, namespace: str, values: dict[str, Any], ttl: timedelta) -> None:
        """Keep JSON values by key until now + ttl (replacing older ones)."""

    @abstractmethod
    def files_by_hash(self, hashes: list[str], endpoint: str | None = None) -> list[FileRecord]:
        """Returns:
        Live files whose content_hash is one of `hashes` (of `endpoint`, or of every endpoint)."""

    @abstractmethod
    def sync_logs(self, endpoint: str | None = None, limit: int = 100) -> list[SyncLog]:
        """Returns:
        The latest sync_logs rows, newest first."""

    def latest_syncs(self) -> list[SyncLog]:
        """Returns:
        The newest sync_logs row of every endpoint + container."""
        seen: dict[tuple[str, str], SyncLog] = {}
        for log in self.sync_logs(limit=100000):
            seen.setdefault((log.endpoint, log.container), log)
        return sorted(seen.values(), key=lambda log: (log.endpoint, log.container))

    @abstractmethod
    def count_files(self, endpoint: str, container: str | None = None, include_deleted: bool = False) -> int:
        """Returns:
        How many files (live only, unless include_deleted) the endpoint or container holds; one query."""

    def close(self) -> None:
        """Release connections."""

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
