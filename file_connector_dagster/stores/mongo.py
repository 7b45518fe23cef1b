"""MongoDB store: the same collections as the SQL tables, unordered bulk upserts, one transaction per page
where the server supports it (a replica set or sharded cluster); on a standalone server the page's writes
come first and its cursor last, so a page cut short is simply applied again."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Sequence, TypeVar

import bson.errors
import pymongo
import pymongo.errors
from bson import ObjectId
from bson.codec_options import CodecOptions
from pymongo import ASCENDING, DESCENDING, DeleteMany, ReturnDocument, UpdateOne
from pymongo.client_session import ClientSession

from ..errors import StoreError, scrub
from ..records import EndpointInfo, FileRecord, Folder, SyncLog, SyncState, SyncStats, utcnow
from .base import FILE_COLUMNS, PENDING, PageTx, Store, Stored, processing_values
from .migrations import LATEST_VERSION
from .protocol import INTERRUPTED, Lease

T = TypeVar("T")

SCHEMA_VERSION = LATEST_VERSION  # same numbering as the SQL stores; every version re-ensures the indexes below
_COUNT_FIELDS = ("listed", "added", "updated", "unchanged", "deleted", "errors", "pages", "api_calls")
# Ids per $in list. Real mongod takes thousands happily; the test server's $in cost grows with the list
# squared, and 200 keeps both fast.
_CHUNK = 200

# (collection, keys, options): the seed's indexes plus the ones the store's own lookups need.
_INDEXES: tuple[tuple[str, list[tuple[str, int]], dict[str, Any]], ...] = (
    ("files", [("endpoint", ASCENDING), ("external_id", ASCENDING)], {"unique": True, "name": "files_endpoint_external_id"}),
    ("files", [("endpoint", ASCENDING), ("updated_at", DESCENDING)], {"name": "files_endpoint_updated"}),
    ("files", [("endpoint", ASCENDING), ("container", ASCENDING), ("path", ASCENDING)], {"name": "files_container_path"}),
    ("files", [("endpoint", ASCENDING), ("container", ASCENDING), ("updated_at", ASCENDING), ("external_id", ASCENDING)],
     {"name": "files_container_updated"}),
    ("files", [("endpoint", ASCENDING), ("container", ASCENDING), ("processing_status", ASCENDING),
               ("external_id", ASCENDING)], {"name": "files_processing_due"}),
    ("files", [("content_hash", ASCENDING)], {"name": "files_content_hash"}),
    ("processor_cache", [("namespace", ASCENDING), ("key", ASCENDING)], {"unique": True, "name": "processor_cache_key"}),
    ("files", [("project_id", ASCENDING)], {"name": "files_project"}),
    ("files", [("date_updated", DESCENDING)], {"name": "files_date_updated"}),
    ("endpoints", [("name", ASCENDING)], {"unique": True, "name": "endpoints_name"}),
    ("sync_state", [("endpoint", ASCENDING), ("container", ASCENDING)], {"unique": True, "name": "sync_state_key"}),
    ("sync_logs", [("endpoint", ASCENDING), ("started", DESCENDING)], {"name": "sync_logs_endpoint_started"}),
    ("sync_logs", [("status", ASCENDING)], {"name": "sync_logs_status"}),
    ("folders", [("endpoint", ASCENDING), ("container", ASCENDING), ("folder_id", ASCENDING)],
     {"unique": True, "name": "folders_key"}),
    ("listing_seen", [("endpoint", ASCENDING), ("container", ASCENDING), ("external_id", ASCENDING)],
     {"unique": True, "name": "listing_seen_key"}),
)


def _ms(value: datetime | None) -> datetime | None:
    """BSON dates hold milliseconds: round here so what a caller keeps equals what it reads back."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as the SQL stores keep it (JSON; anything else as its str), so every store reads back alike."""
    return json.loads(json.dumps(metadata, default=str, ensure_ascii=False))


def _label(uri: str, database: str) -> str:
    """How errors name the database: mongo:hosts/db, never the credentials (parsed by hand: parsing an
    SRV uri with pymongo would already query DNS). The userinfo ends at the last '@' before the query,
    so a password holding '/' or '@' is never mistaken for a host."""
    match = re.match(r"mongodb(?:\+srv)?://(.*)", uri or "", re.S)
    if not match:
        return f"mongo:(unparseable uri)/{database}"
    rest = match.group(1)
    head = rest.split("?", 1)[0]
    hosts = rest[head.rindex("@") + 1:] if "@" in head else rest
    return f"mongo:{re.split(r'[/?]', hosts, maxsplit=1)[0]}/{database}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _record(doc: dict[str, Any]) -> FileRecord:
    return FileRecord(**{c: doc.get(c) for c in FILE_COLUMNS if c not in ("metadata", "processing_errors",
                                                                         "processing_attempts")},
                      metadata=doc.get("metadata") or {}, processing_errors=doc.get("processing_errors") or [],
                      processing_attempts=int(doc.get("processing_attempts") or 0))


def _processing(record: FileRecord, saving: bool = False) -> dict[str, Any]:
    values = processing_values(record, saving)
    values["processed_at"] = _ms(values["processed_at"])
    values["processing_errors"] = list(values["processing_errors"] or [])
    return values


def _state(doc: dict[str, Any]) -> SyncState:
    return SyncState(cursor=doc.get("cursor"), listing_in_progress=bool(doc.get("listing_in_progress")),
                     last_sync_at=doc.get("last_sync_at"),
                     listing_fresh=bool(doc.get("listing_fresh")), running_sync=doc.get("running_sync"))


class _MongoTx(PageTx):
    """A page's operations, in one session transaction where the server has them (else session is None and
    each write stands alone: protocol.apply_page writes the cursor last, so a page cut short is applied again)."""

    def __init__(self, db: pymongo.database.Database, session: ClientSession | None):
        self.db, self.session = db, session

    def sync_row(self, endpoint: str, container: str) -> SyncState:
        # a concurrent page's write to this document makes this transaction's own write to it conflict
        doc = self.db.sync_state.find_one({"endpoint": endpoint, "container": container}, session=self.session)
        return _state(doc) if doc else SyncState()

    def has_files(self, endpoint: str, container: str) -> bool:
        return self.db.files.find_one({"endpoint": endpoint, "container": container}, {"_id": 1},
                                      session=self.session) is not None

    def stored(self, endpoint: str, ids: list[str]) -> dict[str, Stored]:
        fields = {"_id": 0, "external_id": 1, "change_key": 1, "path": 1, "title": 1, "container": 1, "deleted_at": 1}
        found: dict[str, Stored] = {}
        for i in range(0, len(ids), _CHUNK):
            for d in self.db.files.find({"endpoint": endpoint, "external_id": {"$in": ids[i:i + _CHUNK]}}, fields,
                                        session=self.session):
                found[d["external_id"]] = Stored(d.get("deleted_at") is not None, d.get("change_key"), d.get("path"),
                                                 d.get("title"), d.get("container"))
        return found

    def write_files(self, endpoint: str, container: str, records: list[FileRecord], now: datetime) -> None:
        now = _ms(now)
        self.db.files.bulk_write([UpdateOne(
            {"endpoint": endpoint, "external_id": rec.external_id},
            {"$set": {"container": container, "title": rec.title, "path": rec.path, "file_link": rec.file_link,
                      "date_created": _ms(rec.date_created), "date_updated": _ms(rec.date_updated),
                      "size": rec.size, "mime_type": rec.mime_type, "change_key": rec.change_key,
                      "project_id": rec.project_id, "user_id": rec.user_id, "metadata": _plain(rec.metadata),
                      "deleted_at": None, "updated_at": now, **_processing(rec)},
             "$setOnInsert": {"first_seen_at": now}},
            upsert=True) for rec in records], ordered=False, session=self.session)

    def _tombstone(self, query: dict[str, Any], now: datetime) -> int:
        return self.db.files.update_many({**query, "deleted_at": None},
                                         {"$set": {"deleted_at": _ms(now), "updated_at": _ms(now)}},
                                         session=self.session).matched_count

    def tombstone(self, endpoint: str, ids: list[str], now: datetime) -> int:
        return sum(self._tombstone({"endpoint": endpoint, "external_id": {"$in": ids[i:i + _CHUNK]}}, now)
                   for i in range(0, len(ids), _CHUNK))

    def count_live(self, endpoint: str, ids: list[str]) -> int:
        return sum(self.db.files.count_documents({"endpoint": endpoint, "external_id": {"$in": ids[i:i + _CHUNK]},
                                                  "deleted_at": None}, session=self.session)
                   for i in range(0, len(ids), _CHUNK))

    @staticmethod
    def _under(endpoint: str, container: str, prefix: str) -> dict[str, Any]:
        return {"endpoint": endpoint, "container": container, "path": {"$regex": "^" + re.escape(prefix)}}

    def count_under(self, endpoint: str, container: str, prefix: str) -> int:
        return self.db.files.count_documents({**self._under(endpoint, container, prefix), "deleted_at": None},
                                             session=self.session)

    def tombstone_under(self, endpoint: str, container: str, prefix: str, now: datetime) -> int:
        return self._tombstone(self._under(endpoint, container, prefix), now)

    def move_under(self, endpoint: str, container: str, prefix: str, new_prefix: str, now: datetime) -> int:
        rest = {"$substrCP": ["$path", len(prefix), {"$strLenCP": "$path"}]}
        return self.db.files.update_many(
            self._under(endpoint, container, prefix),
            [{"$set": {"path": {"$concat": [new_prefix, rest]}, "updated_at": _ms(now),
                       "processing_status": PENDING, "processing_attempts": 0}}],
            session=self.session).matched_count

    def put_folders(self, endpoint: str, container: str, folders: list[Folder]) -> None:
        scope = {"endpoint": endpoint, "container": container}
        self.db.folders.bulk_write(
            [UpdateOne({**scope, "folder_id": f.folder_id}, {"$set": {"parent_id": f.parent_id, "name": f.name, "version": f.version}},
                       upsert=True) for f in folders], ordered=False, session=self.session)

    def delete_folders(self, endpoint: str, container: str, folder_ids: list[str]) -> None:
        for i in range(0, len(folder_ids), _CHUNK):
            self.db.folders.delete_many({"endpoint": endpoint, "container": container,
                                         "folder_id": {"$in": folder_ids[i:i + _CHUNK]}}, session=self.session)

    def clear_seen(self, endpoint: str, container: str) -> None:
        self.db.listing_seen.delete_many({"endpoint": endpoint, "container": container}, session=self.session)

    def mark_seen(self, endpoint: str, container: str, ids: list[str]) -> None:
        scope = {"endpoint": endpoint, "container": container}
        self.db.listing_seen.bulk_write(
            [UpdateOne({**scope, "external_id": i}, {"$setOnInsert": scope}, upsert=True) for i in ids],
            ordered=False, session=self.session)

    def _unseen(self, endpoint: str, container: str, keep: Sequence[str] = ()) -> Iterator[str]:
        """External ids of the container's live files missing from listing_seen (and not at or under a
        `keep` path): a merge of two streams sorted by external_id, so memory stays flat however large
        the container."""
        scope = {"endpoint": endpoint, "container": container}
        live_query: dict[str, Any] = {**scope, "deleted_at": None}
        if keep:
            live_query["$nor"] = [{"path": {"$regex": "^(?:" + "|".join(re.escape(p) for p in keep) + ")(?:/|$)"}}]
        live = self.db.files.find(live_query, {"_id": 0, "external_id": 1},
                                  session=self.session).sort("external_id", ASCENDING)
        seen = self.db.listing_seen.find(scope, {"_id": 0, "external_id": 1},
                                         session=self.session).sort("external_id", ASCENDING)
        seen_ids = (d["external_id"] for d in seen)
        next_seen = next(seen_ids, None)
        for doc in live:
            external_id = doc["external_id"]
            while next_seen is not None and next_seen < external_id:
                next_seen = next(seen_ids, None)
            if next_seen != external_id:
                yield external_id

    def count_seen(self, endpoint: str, container: str) -> int:
        return self.db.listing_seen.count_documents({"endpoint": endpoint, "container": container},
                                                    session=self.session)

    def count_unseen(self, endpoint: str, container: str, keep: Sequence[str] = ()) -> int:
        return sum(1 for _ in self._unseen(endpoint, container, keep))

    def tombstone_unseen(self, endpoint: str, container: str, now: datetime, keep: Sequence[str] = ()) -> int:
        count, batch = 0, []
        for external_id in self._unseen(endpoint, container, keep):
            batch.append(external_id)
            if len(batch) >= _CHUNK:
                count += self._tombstone({"endpoint": endpoint, "external_id": {"$in": batch}}, now)
                batch = []
        if batch:
            count += self._tombstone({"endpoint": endpoint, "external_id": {"$in": batch}}, now)
        return count

    def save_state(self, endpoint: str, container: str, state: SyncState, lease_until: datetime) -> None:
        scope = {"endpoint": endpoint, "container": container}
        now = _ms(utcnow())
        self.db.sync_state.update_one(
            scope, {"$set": {"cursor": state.cursor, "listing_in_progress": state.listing_in_progress,
                             "listing_fresh": state.listing_fresh, "updated_at": now,
                             **({"last_sync_at": _ms(state.last_sync_at)} if state.last_sync_at else {})}},
            upsert=True, session=self.session)
        self.db.sync_state.update_one({**scope, "running_sync": {"$ne": None}},
                                      {"$set": {"lease_until": _ms(lease_until)}}, session=self.session)


class MongoStore(Store):
    """Files in a MongoDB database (pymongo)."""

    CONFLICT_FIRST_DELAY_S = 0.1
    CONFLICT_MAX_DELAY_S = 5.0

    def __init__(self, uri: str, database: str, server_selection_timeout_ms: int = 15000,
                 password: str | None = None, conflict_budget_s: float = 120.0):
        """Args:
            uri: a mongodb:// URI, best without the password, which
            password: is handed to pymongo as its own argument and scrubbed from every error message.
            conflict_budget_s: how long a page's transaction retries write conflicts before it fails:
                longer than a real mongod keeps a dead transaction (transactionLifetimeLimitSeconds, 60 s
                by default, found by a reaper that runs every half of it: up to 90 s).
        """
        self.conflict_budget_s = conflict_budget_s
        from ..config import split_uri_password

        uri, inline = split_uri_password(uri)  # a password left in the URI is handed over apart all the same
        password = password if password is not None else inline
        self.label = _label(uri, database)
        self._secrets = (password, uri if len(uri) > 12 else None)
        if not re.fullmatch(r"[^/\\. \"$*<>:|?\x00]{1,63}", database or ""):
            raise StoreError(f"{self.label}: invalid database name {database!r}")
        options: dict[str, Any] = {"tz_aware": True, "appname": "file-connector"}
        if "serverselectiontimeoutms" not in uri.lower():  # the uri's own setting wins
            options["serverSelectionTimeoutMS"] = server_selection_timeout_ms
        try:
            if password is not None:
                options["password"] = password
            self.client: pymongo.MongoClient = pymongo.MongoClient(uri, **options)
        except (pymongo.errors.PyMongoError, ValueError, TypeError) as exc:
            raise StoreError(f"{self.label}: cannot open: {scrub(_one_line(exc), *self._secrets)}") from None
        self.db = self.client.get_database(database, codec_options=CodecOptions(tz_aware=True, tzinfo=timezone.utc))
        self._transactions: bool | None = None  # learnt on first use
        self._lock = threading.Lock()

    # -- errors and transactions ----------------------------------------------------------------
    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except (pymongo.errors.PyMongoError, bson.errors.BSONError) as exc:
            lost = isinstance(exc, (pymongo.errors.AutoReconnect, pymongo.errors.ServerSelectionTimeoutError))
            hint = " (server unreachable; the cursor was not advanced)" if lost and operation.startswith("apply") else ""
            raise StoreError(f"{self.label}: {operation}: {scrub(_one_line(exc), *self._secrets)}{hint}") from None

    def _supports_transactions(self) -> bool:
        if self._transactions is None:
            with self._lock:
                hello = self.client.admin.command("hello")
                # Transactions need a replica set member or a mongos.
                self._transactions = bool(hello.get("setName") or hello.get("msg") == "isdbgrid")
        return self._transactions

    # -- schema ---------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Create the collections' indexes (create_index is idempotent, so concurrent callers are safe)."""
        with self._errors("migrate"):
            current = self.db.schema_version.find_one(sort=[("_id", DESCENDING)])
            if current is not None and current["_id"] >= SCHEMA_VERSION:
                return int(current["_id"])
            existing = set(self.db.list_collection_names())
            for name in ("files", "endpoints", "sync_state", "sync_logs", "folders", "listing_seen", "schema_version",
                         "processor_cache"):
                if name not in existing:  # explicit, so writes inside a transaction never have to create one
                    try:
                        self.db.create_collection(name)
                    except pymongo.errors.CollectionInvalid:
                        pass  # a concurrent migrate made it
            for collection, keys, options in _INDEXES:
                self.db[collection].create_index(keys, **options)
            if current is not None and current["_id"] < 5:
                self._migrate_processing_state()
            self.db.schema_version.update_one(
                {"_id": SCHEMA_VERSION},
                {"$setOnInsert": {"description": "collections and indexes", "applied_at": _ms(utcnow())}}, upsert=True)
        return SCHEMA_VERSION

    def _migrate_processing_state(self) -> None:
        """Version 5: per-file processing state replaces sync_state.processed_until (as in the SQL stores)."""
        files = self.db.files
        for state in self.db.sync_state.find({"processed_until": {"$ne": None}}):
            files.update_many(
                {"endpoint": state["endpoint"], "container": state["container"], "processing_status": None,
                 "updated_at": {"$lte": state["processed_until"]}, "processing_errors": {"$in": [None, []]}},
                [{"$set": {"processing_status": {"$cond": [{"$eq": [{"$ifNull": ["$excluded_by", None]}, None]},
                                                          "processed", "skipped"]},
                           "processed_key": "$change_key", "processed_at": state["processed_until"],
                           "processing_attempts": 0}}])
        files.update_many({"processing_status": None}, {"$set": {"processing_status": PENDING, "processing_attempts": 0}})
        self.db.sync_state.update_many({}, {"$unset": {"processed_until": ""}})

    # -- endpoints and state --------------------------------------------------------------------
    def upsert_endpoint(self, name: str, type_name: str, project_id: str | None, user_id: str | None,
                        details: dict[str, Any], is_active: bool = True) -> None:
        with self._errors(f"upsert endpoint {name}"):
            self.db.endpoints.update_one(
                {"name": name},
                {"$set": {"type": type_name, "project_id": project_id, "user_id": user_id, "details": details,
                          "is_active": is_active, "updated_at": _ms(utcnow())}}, upsert=True)

    def endpoints(self) -> list[EndpointInfo]:
        with self._errors("read endpoints"):
            docs = list(self.db.endpoints.find({}, {"_id": 0, "name": 1, "type": 1, "is_active": 1}).sort("name", ASCENDING))
        return [EndpointInfo(d["name"], d.get("type") or "", bool(d.get("is_active"))) for d in docs]

    def deactivate_endpoint(self, name: str) -> None:
        with self._errors(f"deactivate endpoint {name}"):
            self.db.endpoints.update_one({"name": name, "is_active": True},
                                         {"$set": {"is_active": False, "updated_at": _ms(utcnow())}})

    def sync_state(self, endpoint: str, container: str) -> SyncState:
        with self._errors(f"read sync state of {endpoint}/{container}"):
            doc = self.db.sync_state.find_one({"endpoint": endpoint, "container": container})
        if doc is None:
            return SyncState()
        return _state(doc)

    def folders(self, endpoint: str, container: str) -> dict[str, Folder]:
        with self._errors(f"read folders of {endpoint}/{container}"):
            docs = list(self.db.folders.find({"endpoint": endpoint, "container": container}))
        return {d["folder_id"]: Folder(d["folder_id"], d.get("parent_id"), d["name"], d.get("version")) for d in docs}

    def reset_cursor(self, endpoint: str, container: str) -> None:
        with self._errors(f"reset cursor of {endpoint}/{container}"):
            self.db.sync_state.update_one({"endpoint": endpoint, "container": container},
                                          {"$set": {"cursor": None, "listing_in_progress": False}})

    # -- lease and sync logs -------------------------------------------------------------------
    def take_lease(self, endpoint: str, container: str, owner: str, until: datetime,
                   may_take: Callable[[Lease], bool]) -> tuple[str | None, Lease | None]:
        now = _ms(utcnow())
        scope = {"endpoint": endpoint, "container": container}
        sync_id = ObjectId()
        take = {"$set": {"running_sync": str(sync_id), "lease_owner": owner, "lease_until": _ms(until)},
                "$setOnInsert": {"updated_at": now}}
        with self._errors(f"start sync of {endpoint}/{container}"):
            for _ in range(10):
                doc = self.db.sync_state.find_one(scope)
                held = (Lease(doc["running_sync"], doc.get("lease_owner"), doc.get("lease_until"))
                        if doc and doc.get("running_sync") else None)
                if held and not may_take(held):
                    return None, held
                try:  # compare and swap on the holder we saw; the unique index stops a racing first insert
                    if self.db.sync_state.find_one_and_update(
                            {**scope, "running_sync": held.sync_id if held else None}, take, upsert=doc is None,
                            return_document=ReturnDocument.BEFORE) is not None or doc is None:
                        break
                except pymongo.errors.DuplicateKeyError:
                    pass
            else:
                raise StoreError(f"{self.label}: start sync of {endpoint}/{container}: the lease keeps changing "
                                 "hands; try again", retryable=True)
            if held:
                self.db.sync_logs.update_one(
                    {"_id": ObjectId(held.sync_id), "status": "running"},
                    {"$set": {"status": "interrupted", "finished": now, "error": INTERRUPTED}})
            self.db.sync_logs.insert_one({"_id": sync_id, **scope, "started": now, "finished": None,
                                          "status": "running", **{c: 0 for c in _COUNT_FIELDS}, "error": None})
        return str(sync_id), held

    def finish_sync(self, sync_id: int | str, stats: SyncStats) -> None:
        with self._errors(f"finish sync of {stats.endpoint}/{stats.container}"):
            self.db.sync_logs.update_one(
                {"_id": ObjectId(str(sync_id))},
                {"$set": {"finished": _ms(utcnow()), "status": stats.status, **stats.counts(), "error": stats.error,
                          "full_listing": stats.listing_complete, "seen": stats.listing_seen}})
            self.db.sync_state.update_one(
                {"endpoint": stats.endpoint, "container": stats.container, "running_sync": str(sync_id)},
                {"$set": {"running_sync": None, "lease_until": None}})

    def sync_logs(self, endpoint: str | None = None, limit: int = 100) -> list[SyncLog]:
        with self._errors("read sync logs"):
            docs = list(self.db.sync_logs.find({"endpoint": endpoint} if endpoint else {})
                        .sort([("started", DESCENDING), ("_id", DESCENDING)]).limit(limit))
        return [SyncLog(endpoint=d["endpoint"], container=d["container"], started=d["started"],
                        finished=d.get("finished"), status=d["status"],
                        counts={c: int(d.get(c) or 0) for c in _COUNT_FIELDS}, error=d.get("error"),
                        sync_id=str(d["_id"]), full_listing=bool(d.get("full_listing")), seen=d.get("seen"))
                for d in docs]

    # -- pages ----------------------------------------------------------------------------------
    def in_transaction(self, operation: str, work: Callable[[PageTx], T]) -> T:
        """Run `work` in one transaction. A write conflict (TransientTransactionError) is retried with
        backoff until `conflict_budget_s` is spent: a concurrent page commits within moments, and a
        transaction left open by a killed process holds its rows until the server aborts it
        (transactionLifetimeLimitSeconds, 60 s by default), which the default budget outlasts."""
        with self._errors(operation):
            if not self._supports_transactions():
                return work(_MongoTx(self.db, None))
            started, attempts, delay = time.monotonic(), 0, self.CONFLICT_FIRST_DELAY_S
            while True:
                attempts += 1
                with self.client.start_session() as session:
                    try:
                        with session.start_transaction():
                            return work(_MongoTx(self.db, session))
                    except pymongo.errors.PyMongoError as exc:
                        # A write conflict is worth another go; a lost server is not.
                        if (not exc.has_error_label("TransientTransactionError")
                                or isinstance(exc, pymongo.errors.ConnectionFailure)):
                            raise
                        pause = delay * random.uniform(0.5, 1.0)
                        spent = time.monotonic() - started
                        if spent + pause > self.conflict_budget_s:
                            raise StoreError(
                                f"{self.label}: {operation}: another transaction kept a write conflict on these "
                                f"rows for {spent:.0f} s ({attempts} attempts; a transaction left open by a killed "
                                "process ends after the server's transactionLifetimeLimitSeconds); nothing of the "
                                "page was written, the cursor was not advanced; re-run to resume",
                                retryable=True) from None
                time.sleep(pause)
                delay = min(delay * 2, self.CONFLICT_MAX_DELAY_S)

    # -- reading and processing -----------------------------------------------------------------
    def iter_files(self, endpoint: str, container: str | None = None, *, changed_since: datetime | None = None,
                   include_deleted: bool = True, page_size: int = 1000) -> Iterator[list[FileRecord]]:
        query: dict[str, Any] = {"endpoint": endpoint}
        if container is not None:
            query["container"] = container
        if changed_since is not None:
            # Stored dates are whole milliseconds; a finer watermark is compared the same way.
            query["updated_at"] = {"$gt": _ms(changed_since)}
        if not include_deleted:
            query["deleted_at"] = None
        after: tuple[datetime, str] | None = None
        while True:  # keyset pagination: one bounded query per page
            page_query = dict(query)
            if after is not None:
                page_query = {"$and": [query, {"$or": [{"updated_at": {"$gt": after[0]}},
                                                       {"updated_at": after[0], "external_id": {"$gt": after[1]}}]}]}
            with self._errors(f"read files of {endpoint}"):
                docs = list(self.db.files.find(page_query, {"_id": 0})
                            .sort([("updated_at", ASCENDING), ("external_id", ASCENDING)]).limit(page_size))
            if not docs:
                return
            yield [_record(d) for d in docs]
            after = (docs[-1]["updated_at"], docs[-1]["external_id"])

    def containers(self, endpoint: str, include_deleted: bool = False) -> list[str]:
        query: dict[str, Any] = {"endpoint": endpoint} if include_deleted else {"endpoint": endpoint, "deleted_at": None}
        with self._errors(f"list containers of {endpoint}"):
            return sorted(self.db.files.distinct("container", query))

    def count_files(self, endpoint: str, container: str | None = None, include_deleted: bool = False) -> int:
        query: dict[str, Any] = {"endpoint": endpoint}
        if container is not None:
            query["container"] = container
        if not include_deleted:
            query["deleted_at"] = None
        with self._errors(f"count files of {endpoint}"):
            return self.db.files.count_documents(query)

    def iter_due(self, endpoint: str, container: str, page_size: int = 1000) -> Iterator[list[FileRecord]]:
        after = ""
        while True:  # keyset on external_id within files_processing_due
            with self._errors(f"read files of {endpoint}/{container} due for processing"):
                docs = list(self.db.files.find(
                    {"endpoint": endpoint, "container": container, "processing_status": PENDING,
                     "external_id": {"$gt": after}, "deleted_at": None}, {"_id": 0})
                    .sort([("endpoint", ASCENDING), ("container", ASCENDING), ("processing_status", ASCENDING),
                           ("external_id", ASCENDING)]).limit(page_size))
            if not docs:
                return
            yield [_record(d) for d in docs]
            after = docs[-1]["external_id"]

    def save_processing(self, endpoint: str, records: list[FileRecord]) -> int:
        if not records:
            return 0
        with self._errors(f"store processing results of {endpoint}"):
            result = self.db.files.bulk_write(
                [UpdateOne({"endpoint": endpoint, "external_id": r.external_id, "updated_at": _ms(r.updated_at),
                            "deleted_at": None, "processing_status": PENDING},
                           {"$set": {"metadata": _plain(r.metadata), **_processing(r, saving=True)}}) for r in records],
                ordered=False)
            return result.matched_count

    def requeue(self, endpoint: str, container: str | None = None, statuses: list[str] | None = None) -> int:
        query: dict[str, Any] = {"endpoint": endpoint, "deleted_at": None}
        if container is not None:
            query["container"] = container
        if statuses:
            query["processing_status"] = {"$in": list(statuses)}
        with self._errors(f"re-queue files of {endpoint}"):
            return self.db.files.update_many(
                query, {"$set": {"processing_status": PENDING, "processing_attempts": 0}}).matched_count

    def processing_counts(self, endpoint: str, container: str | None = None) -> dict[str, int]:
        query: dict[str, Any] = {"endpoint": endpoint, "deleted_at": None}
        if container is not None:
            query["container"] = container
        with self._errors(f"count processing states of {endpoint}"):
            return {d["_id"]: int(d["n"]) for d in self.db.files.aggregate(
                [{"$match": query}, {"$group": {"_id": "$processing_status", "n": {"$sum": 1}}}])}

    def processing_counts_by_container(self, endpoint: str) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        with self._errors(f"count processing states of {endpoint}"):
            for d in self.db.files.aggregate([
                    {"$match": {"endpoint": endpoint, "deleted_at": None}},
                    {"$group": {"_id": {"c": "$container", "s": "$processing_status"}, "n": {"$sum": 1}}}]):
                counts.setdefault(d["_id"]["c"], {})[d["_id"].get("s")] = int(d["n"])
        return counts

    def live_counts(self, endpoint: str) -> dict[str, tuple[int, int]]:
        with self._errors(f"count live files of {endpoint}"):
            return {d["_id"]: (int(d["rows"]), int(d["ids"])) for d in self.db.files.aggregate([
                {"$match": {"endpoint": endpoint, "deleted_at": None}},
                {"$group": {"_id": {"c": "$container", "id": "$external_id"}, "n": {"$sum": 1}}},
                {"$group": {"_id": "$_id.c", "rows": {"$sum": "$n"}, "ids": {"$sum": 1}}}])}

    def cache_get(self, namespace: str, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        now = _ms(utcnow())
        with self._errors(f"read {namespace} cache"):
            for i in range(0, len(keys), _CHUNK):
                for doc in self.db.processor_cache.find(
                        {"namespace": namespace, "key": {"$in": keys[i:i + _CHUNK]}, "expires_at": {"$gt": now}}):
                    found[doc["key"]] = doc["value"]
        return found

    def cache_put(self, namespace: str, values: dict[str, Any], ttl: timedelta) -> None:
        if not values:
            return
        expires = _ms(utcnow() + ttl)
        with self._errors(f"cache {namespace} answers"):
            self.db.processor_cache.bulk_write(
                [UpdateOne({"namespace": namespace, "key": k}, {"$set": {"value": _plain(v), "expires_at": expires}},
                           upsert=True) for k, v in values.items()], ordered=False)

    def files_by_hash(self, hashes: list[str], endpoint: str | None = None) -> list[FileRecord]:
        found: list[FileRecord] = []
        with self._errors("find files by content hash"):
            for i in range(0, len(hashes), _CHUNK):
                query: dict[str, Any] = {"content_hash": {"$in": hashes[i:i + _CHUNK]}, "deleted_at": None}
                if endpoint is not None:
                    query["endpoint"] = endpoint
                found.extend(_record(d) for d in self.db.files.find(query, {"_id": 0}))
        return found

    def close(self) -> None:
        self.client.close()
