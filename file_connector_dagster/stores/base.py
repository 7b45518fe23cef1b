"""The store contract (plain Python, no Dagster).

Every store keeps the same tables (names are a public contract):
  files        one row per endpoint + external_id: the FileRecord fields, deleted_at, first_seen_at,
               updated_at (the last time the row changed), and the processing state of this version:
               processing_status, processed_key, processed_at, processing_attempts, excluded_by,
               processing_errors, content_hash (their meaning: processing.py)
  endpoints    one row per endpoint: type, project_id, user_id, non-secret details
  sync_state   one row per endpoint + container: the cursor to resume from, listing flag, lease
  sync_logs    one row per sync of a container: started, finished, status, counts, error
and, for their own bookkeeping, schema_version, folders (the folder tree a delta source keeps) and
listing_seen (external ids seen by a full listing in progress, to tombstone the rest at its end) and
processor_cache (answers processors keep across runs, e.g. VirusTotal verdicts by hash, with a TTL).

A store only reads and writes. What to write, and when a file is tombstoned, is decided once for every
store in protocol.py; a store implements the primitives below (Store, and PageTx inside a transaction).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator, Sequence, TypeVar

from ..records import ChangePage, EndpointInfo, FileRecord, Folder, PageStats, SyncLog, SyncState, SyncStats
from .protocol import Lease

T = TypeVar("T")

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
    """The processing columns to write for `record`. For a listed version (write_files): what the
    processors decided while its page committed, or a fresh pending state. For results (saving,
    save_processing): the record's columns as the chain left them."""
    if saving:
        return {**{c: getattr(record, c) for c in PROCESSING_COLUMNS}, "processing_status": record.processing_status or PENDING}
    if record.processing_status in (None, PENDING):
        return {"excluded_by": None, "processing_errors": [], "processing_status": PENDING, "processed_key": None,
                "processed_at": None, "processing_attempts": 0, "content_hash": record.content_hash}
    return {c: getattr(record, c) for c in PROCESSING_COLUMNS}


@dataclass(slots=True)
class Stored:
    """What the protocol needs of a stored row to classify an incoming record (protocol.classify)."""

    deleted: bool
    change_key: str | None
    path: str
    title: str
    container: str


class PageTx(ABC):
    """The reads and writes of one page, all inside one store transaction (Store.in_transaction).
    protocol.apply_page calls them in its order; none of them decides anything. Ids are external ids
    of `endpoint`; "live" means deleted_at is NULL; prefixes end with "/"."""

    @abstractmethod
    def sync_row(self, endpoint: str, container: str) -> SyncState:
        """The container's sync_state (cursor, running_sync, listing_fresh), read so that no other writer
        can change it before this transaction ends (a row lock, the database lock, or a conflict at commit)."""

    @abstractmethod
    def has_files(self, endpoint: str, container: str) -> bool:
        """Whether the container holds any row, tombstones included."""

    @abstractmethod
    def stored(self, endpoint: str, ids: list[str]) -> dict[str, Stored]:
        """The stored rows of these ids (in any container), by id."""

    @abstractmethod
    def write_files(self, endpoint: str, container: str, records: list[FileRecord], now: datetime) -> None:
        """Insert these records, or rewrite their stored rows entirely: container, every record field,
        deleted_at NULL, updated_at now, the processing columns from processing_values(record) (pending
        unless decided while the page committed); first_seen_at kept."""

    def insert_new(self, endpoint: str, container: str, records: list[FileRecord], now: datetime,
                   encoded: Any = None) -> set[str]:
        """Insert the records whose id is not stored yet; leave the others alone.

        Args:
            encoded: Store.encode_upserts(records), when the caller made it beforehand.

        Returns:
            The ids that were already stored (a store may override this with a cheaper bulk insert)."""
        existing = set(self.stored(endpoint, [r.external_id for r in records]))
        new = [r for r in records if r.external_id not in existing]
        if new:
            self.write_files(endpoint, container, new, now)
        return existing

    @abstractmethod
    def tombstone(self, endpoint: str, ids: list[str], now: datetime) -> int:
        """Set deleted_at = updated_at = now on the live rows of these ids. Returns how many."""

    @abstractmethod
    def count_live(self, endpoint: str, ids: list[str]) -> int:
        """How many of these ids are live rows."""

    @abstractmethod
    def count_under(self, endpoint: str, container: str, prefix: str) -> int:
        """How many live files of the container have a path starting with prefix."""

    @abstractmethod
    def tombstone_under(self, endpoint: str, container: str, prefix: str, now: datetime) -> int:
        """Tombstone the live files of the container under prefix. Returns how many."""

    @abstractmethod
    def move_under(self, endpoint: str, container: str, prefix: str, new_prefix: str, now: datetime) -> int:
        """Replace prefix by new_prefix in the paths of the container's files under it (tombstones too),
        updated_at now, processing_status pending and attempts 0 (a path decides filters). Returns how many rows."""

    @abstractmethod
    def put_folders(self, endpoint: str, container: str, folders: list[Folder]) -> None:
        """Insert or replace these folders of the container's folder tree."""

    @abstractmethod
    def delete_folders(self, endpoint: str, container: str, folder_ids: list[str]) -> None:
        """Remove these folders from the container's folder tree."""

    @abstractmethod
    def clear_seen(self, endpoint: str, container: str) -> None:
        """Empty the container's listing_seen set."""

    @abstractmethod
    def mark_seen(self, endpoint: str, container: str, ids: list[str]) -> None:
        """Add these ids to the container's listing_seen set."""

    @abstractmethod
    def count_seen(self, endpoint: str, container: str) -> int:
        """How many ids the container's listing_seen set holds."""

    @abstractmethod
    def count_unseen(self, endpoint: str, container: str, keep: Sequence[str] = ()) -> int:
        """How many live files of the container are not in its listing_seen set, leaving out those whose
        path is one of `keep` or under one of them (path + "/")."""

    @abstractmethod
    def tombstone_unseen(self, endpoint: str, container: str, now: datetime, keep: Sequence[str] = ()) -> int:
        """Tombstone the live files of the container that are not in its listing_seen set, except those
        at or under a `keep` path (one statement, whatever the number of paths). Returns how many."""

    @abstractmethod
    def save_state(self, endpoint: str, container: str, state: SyncState, lease_until: datetime) -> None:
        """Write cursor, listing_in_progress and listing_fresh; last_sync_at when set (else keep the
        stored one); renew lease_until if a sync holds the lease. Creates the row if missing."""


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
    def endpoints(self) -> list[EndpointInfo]:
        """Returns:
        Every endpoint of the endpoints table, by name."""

    @abstractmethod
    def deactivate_endpoint(self, name: str) -> None:
        """Set is_active false on the endpoint's row (connector.yaml no longer lists it)."""

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
    def take_lease(self, endpoint: str, container: str, owner: str, until: datetime,
                   may_take: Callable[[Lease], bool]) -> tuple[int | str | None, Lease | None]:
        """Atomically: read the container's lease; if a sync holds it and may_take(lease) is false,
        change nothing. Otherwise open a sync_logs row ('running'), make it the lease holder (owner,
        until), and mark the previous holder's log row (if any, still 'running') 'interrupted' with
        protocol.INTERRUPTED as its error.

        Returns:
            (the new sync's id, or None when refused; the lease found, or None when it was free)."""

    @abstractmethod
    def in_transaction(self, operation: str, work: Callable[[PageTx], T]) -> T:
        """Run work(tx) in one transaction: commit if it returns, roll back if it raises (a store whose
        server has no transactions writes as it goes; protocol.apply_page stores the cursor last).
        Database errors become StoreError naming the store and operation."""

    def start_sync(self, endpoint: str, container: str) -> int | str:
        """Take the container's lease and open its sync_logs row (protocol.start_sync).

        Returns:
            Its id, for finish_sync (which releases the lease)."""
        from .protocol import start_sync

        return start_sync(self, endpoint, container)

    def encode_upserts(self, records: list[FileRecord]) -> Any:
        """The records in the store's own bulk-write format, for PageTx.insert_new; called in the fetch thread
        (it must not touch the connection) while the previous page commits, so the work overlaps the
        database's. None: the store encodes them when it writes."""
        return None

    def apply_page(self, endpoint: str, container: str, page: ChangePage, **sync: Any) -> PageStats:
        """Apply one page and its cursor in one transaction (protocol.apply_page). Called alone, the page is
        applied whatever the stored cursor; protocol.ContainerSync passes `sync` (the lease and cursor the
        page expects, the mass-delete budget).

        Returns:
            added / updated / unchanged / deleted / restored counts.
        """
        from .protocol import apply_page

        return apply_page(self, endpoint, container, page, **sync)

    @abstractmethod
    def finish_sync(self, sync_id: int | str, stats: SyncStats) -> None:
        """Close the sync_logs row with the final status, counts and error, and release the container's
        lease if this sync still holds it."""

    @abstractmethod
    def containers(self, endpoint: str, include_deleted: bool = False) -> list[str]:
        """Returns:
        The containers of the endpoint that hold live files (or any rows, with include_deleted), sorted."""

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
        not deleted) and still due (processing_status pending): a version that changed meanwhile
        stays pending, and a result a concurrent files step saved first is never overwritten.
        updated_at is not touched.

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
    def processing_counts_by_container(self, endpoint: str) -> dict[str, dict[str, int]]:
        """Returns:
        Per container of the endpoint, live files per processing_status (one grouped query)."""

    @abstractmethod
    def live_counts(self, endpoint: str) -> dict[str, tuple[int, int]]:
        """Returns:
        Per container of the endpoint: (live rows, distinct external ids among them), in one grouped
        query; the two differ only if the store holds duplicate rows (the consistency check)."""

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
