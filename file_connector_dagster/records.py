"""The records that flow from sources through processors into stores (plain Python, no Dagster)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(slots=True)
class FileRecord:
    """One file as a source sees it, and as the store keeps it.

    The seed's FileMetadata (external_id, title, file_link, date_created, date_updated, project_id,
    user_id, metadata) plus where the file lives (endpoint, container, path), its change key and, when
    read back from a store, its deletion state.
    """

    external_id: str  # stable id within the endpoint (Graph item id, relative path for local files)
    title: str  # file name
    path: str  # full path inside the container, "/"-separated, no leading slash
    endpoint: str = ""
    container: str = ""
    file_link: str | None = None  # a lasting link a person can open (webUrl), not a download URL
    date_created: datetime | None = None
    date_updated: datetime | None = None
    size: int | None = None
    mime_type: str | None = None
    change_key: str | None = None  # cTag / md5 / version number / mtime+size: equal key => unchanged
    project_id: str | None = None
    user_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # web_url, etag, parent_path, hashes, ...
    deleted_at: datetime | None = None  # set on tombstones read back from a store
    first_seen_at: datetime | None = None
    updated_at: datetime | None = None
    # Processing state of this version of the file (see processing.py): pending until the endpoint's
    # processors have decided; then processed / skipped (excluded_by names the processor) / error.
    excluded_by: str | None = None
    processing_errors: list[str] = field(default_factory=list)
    processing_status: str | None = None  # None on a record from a source: the store writes "pending"
    processed_key: str | None = None  # the change_key the processors last decided on
    processed_at: datetime | None = None
    processing_attempts: int = 0  # failed attempts on this version
    content_hash: str | None = None  # "sha256:<hex>" (or the provider's sha1 / md5 / quickXorHash)

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class Folder:
    """A node of the tree a source keeps between syncs: a folder it tracks to build paths (delta APIs
    name a parent id, not a path); a source that must know what a folder held last time may keep its
    files as nodes too.

    `version` is the source's own marker of the node (opaque to stores, kept like the name), e.g. a
    folder's lastModifiedTimeRollup, so that a later sync can skip the folders that did not change.
    """

    folder_id: str
    parent_id: str | None
    name: str
    version: str | None = None


@dataclass(slots=True)
class ChangePage:
    """One page of changes for one container, and the cursor to resume from once it is committed.

    A store applies a page atomically: path moves first, then deletions and upserts, then folder
    changes, then the cursor. Replaying a page is harmless.

    Attributes:
        upserts: files added or changed (or unchanged, during a full listing), unique by external_id.
        deletions: external ids of files that are gone (they become tombstones).
        cursor: opaque string the source understands; after the last page, the cursor for the next sync.
        full_listing: the page belongs to a full enumeration; at its end every live file of the
            container that the enumeration did not see is tombstoned.
        starts_listing: first page of a fresh full enumeration (forget what an aborted one saw).
        last: last page of this sync.
        listing_incomplete: the full listing could not see everything (an unreadable folder): skip the
            tombstoning at its end rather than tombstone files that may still exist.
        incomplete_paths: on the last page of a full listing, the paths it could not read into (a folder
            or an entry, e.g. EACCES/EIO): the sweep keeps every live file at or under them and
            tombstones the rest. Lists the whole listing's paths (a source keeps them across pages).
        moves: (old_prefix, new_prefix) path prefixes of folders renamed or moved; the store rewrites
            the path of every file under them.
        folders: folders added or changed; folder_deletions: ids of folders gone.
        api_calls: requests the source made to produce this page.
        errors: per-file problems ("path: reason") that did not stop the sync.
        encoded: the store's bulk encoding of `upserts` (Store.encode_upserts), made in the fetch thread
            while the previous page commits; None: the store encodes them itself.
    """

    upserts: list[FileRecord] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)
    cursor: str | None = None
    full_listing: bool = False
    starts_listing: bool = False
    last: bool = False
    listing_incomplete: bool = False
    incomplete_paths: list[str] = field(default_factory=list)
    moves: list[tuple[str, str | None]] = field(default_factory=list)
    folders: list[Folder] = field(default_factory=list)
    folder_deletions: list[str] = field(default_factory=list)
    api_calls: int = 0
    errors: list[str] = field(default_factory=list)
    encoded: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Keep the contract simple for stores: each id appears once, the last change wins.
        if len({r.external_id for r in self.upserts}) != len(self.upserts) or (
            self.deletions and set(self.deletions) & {r.external_id for r in self.upserts}
        ):
            raise ValueError("ChangePage ids must be unique; build pages with ChangePage.from_changes")

    @classmethod
    def from_changes(cls, changes: Iterable[FileRecord | str], **kwargs: Any) -> "ChangePage":
        """Build a page from an ordered stream of changes (a record = upsert, a str = deletion id);
        an id that appears more than once keeps its last change."""
        last: dict[str, FileRecord | str] = {}
        for change in changes:
            key = change if isinstance(change, str) else change.external_id
            last.pop(key, None)
            last[key] = change
        upserts = [c for c in last.values() if not isinstance(c, str)]
        deletions = [c for c in last.values() if isinstance(c, str)]
        return cls(upserts=upserts, deletions=deletions, **kwargs)


@dataclass(slots=True)
class PageStats:
    """What a store did with one page."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    restored: int = 0
    decided: dict[str, int] = field(default_factory=dict)  # rows written already decided (status -> n)
    # what its full listing saw: ids new to the listing (a fresh listing's pages), and on the last page of a
    # complete listing that keeps a seen-set, the set's size (distinct ids of the whole listing)
    new_seen: int = field(default=0, compare=False)
    seen_total: int | None = field(default=None, compare=False)

    def written(self, record: FileRecord) -> None:
        """Count a row the store wrote whose processing was decided while its page committed."""
        if record.processing_status not in (None, "pending"):
            self.decided[record.processing_status] = self.decided.get(record.processing_status, 0) + 1

    def __iadd__(self, other: "PageStats") -> "PageStats":
        self.added += other.added
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.restored += other.restored
        for status, n in other.decided.items():
            self.decided[status] = self.decided.get(status, 0) + n
        self.new_seen += other.new_seen
        if other.seen_total is not None:
            self.seen_total = other.seen_total
        return self


@dataclass(slots=True)
class SyncStats:
    """Totals for one sync of one container; what the CLI prints and Dagster shows as metadata."""

    endpoint: str
    container: str
    listed: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    errors: int = 0
    pages: int = 0
    api_calls: int = 0
    duration_s: float = 0.0
    full_listing: bool = False
    status: str = "running"  # running | success | failed | interrupted
    error: str | None = None
    error_samples: list[str] = field(default_factory=list)
    decided: dict[str, int] = field(default_factory=dict)  # processing decided while pages committed
    listing_complete: bool = False  # this sync ended a complete full listing (its sweep ran)
    listing_seen: int | None = None  # distinct files that listing saw (None: not known)
    _listing_new: int | None = field(default=None, repr=False)  # a fresh listing's count so far

    def add_page(self, page: ChangePage, stats: PageStats) -> None:
        self.pages += 1
        self.listed += len(page.upserts)
        self.added += stats.added + stats.restored
        self.updated += stats.updated
        self.unchanged += stats.unchanged
        self.deleted += stats.deleted
        self.api_calls += page.api_calls
        self.errors += len(page.errors)
        self.full_listing = self.full_listing or page.full_listing
        for status, n in stats.decided.items():
            self.decided[status] = self.decided.get(status, 0) + n
        if page.full_listing:
            if page.starts_listing:
                self._listing_new = 0
            if self._listing_new is not None:
                self._listing_new += stats.new_seen
            if page.last and not page.listing_incomplete and not page.incomplete_paths:
                # (a listing that could not read some paths kept their files unseen: not complete here)
                # a fresh listing resumed from an earlier sync counted only part of its pages: not known
                self.listing_complete = True
                self.listing_seen = stats.seen_total if stats.seen_total is not None else self._listing_new
        if len(self.error_samples) < 20:
            self.error_samples.extend(page.errors[: 20 - len(self.error_samples)])

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("listed", "added", "updated", "unchanged", "deleted", "errors", "pages", "api_calls")}


@dataclass(slots=True)
class SyncState:
    """What a store remembers per endpoint + container between syncs."""

    cursor: str | None = None
    listing_in_progress: bool = False
    last_sync_at: datetime | None = None
    listing_fresh: bool = False  # the full listing in progress began on an empty container
    running_sync: str | None = None  # the sync_logs id holding the container's lease


@dataclass(slots=True)
class EndpointInfo:
    """One row of the endpoints table: what a store knows of an endpoint, whatever connector.yaml says now."""

    name: str
    type: str
    is_active: bool


@dataclass(slots=True)
class SyncLog:
    """One row of sync_logs."""

    endpoint: str
    container: str
    started: datetime
    finished: datetime | None
    status: str
    counts: dict[str, int]
    error: str | None
    sync_id: int | str | None = None
    full_listing: bool = False  # the sync ended a complete full listing
    seen: int | None = None  # distinct files that listing saw, when known
