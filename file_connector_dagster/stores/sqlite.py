"""SQLite store: the embedded default, no server needed."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from ..errors import StoreError
from ..records import EndpointInfo, FileRecord, Folder, SyncLog, SyncState, SyncStats, utcnow
from .base import FILE_COLUMNS, PROCESSING_COLUMNS, PageTx, Store, Stored, processing_values
from .migrations import MIGRATIONS
from .protocol import INTERRUPTED, Lease

T = TypeVar("T")
_SETTABLE = tuple(c for c in FILE_COLUMNS if c not in ("endpoint", "external_id", "first_seen_at"))

_CHUNK = 500  # ids per IN (...) list, under SQLite's variable limit


# One encoder for every record: json.dumps with options builds a new JSONEncoder per call.
_metadata_json = json.JSONEncoder(default=str, ensure_ascii=False).encode


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _row_to_record(row: sqlite3.Row) -> FileRecord:
    return FileRecord(
        endpoint=row["endpoint"], container=row["container"], external_id=row["external_id"],
        title=row["title"], path=row["path"], file_link=row["file_link"],
        date_created=_dt(row["date_created"]), date_updated=_dt(row["date_updated"]), size=row["size"],
        mime_type=row["mime_type"], change_key=row["change_key"], project_id=row["project_id"],
        user_id=row["user_id"], metadata=json.loads(row["metadata"]), deleted_at=_dt(row["deleted_at"]),
        first_seen_at=_dt(row["first_seen_at"]), updated_at=_dt(row["updated_at"]),
        excluded_by=row["excluded_by"], processing_errors=json.loads(row["processing_errors"] or "[]"),
        processing_status=row["processing_status"], processed_key=row["processed_key"],
        processed_at=_dt(row["processed_at"]), processing_attempts=row["processing_attempts"],
        content_hash=row["content_hash"],
    )


def _processing_row(record: FileRecord, saving: bool = False) -> tuple:
    """PROCESSING_COLUMNS of a row as SQLite keeps them."""
    values = processing_values(record, saving)
    values["processing_errors"] = json.dumps(values["processing_errors"] or [])
    values["processed_at"] = _ts(values["processed_at"])
    return tuple(values[c] for c in PROCESSING_COLUMNS)


def _state(row: sqlite3.Row) -> SyncState:
    return SyncState(cursor=row["cursor"], listing_in_progress=bool(row["listing_in_progress"]),
                     last_sync_at=_dt(row["last_sync_at"]),
                     listing_fresh=bool(row["listing_fresh"]), running_sync=row["running_sync"])


def _file_row(endpoint: str, container: str, rec: FileRecord, now: str) -> tuple:
    return (endpoint, container, rec.external_id, rec.title, rec.path, rec.file_link, _ts(rec.date_created),
            _ts(rec.date_updated), rec.size, rec.mime_type, rec.change_key, rec.project_id, rec.user_id,
            _metadata_json(rec.metadata), None, now, now, *_processing_row(rec))


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i:i + _CHUNK]


def _marks(ids: list[str]) -> str:
    return ",".join("?" * len(ids))


class _SQLiteTx(PageTx):
    """A page's reads and writes inside the store's BEGIN IMMEDIATE (the database's single writer)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def sync_row(self, endpoint: str, container: str) -> SyncState:
        row = self.conn.execute("SELECT * FROM sync_state WHERE endpoint=? AND container=?",
                                (endpoint, container)).fetchone()
        return _state(row) if row else SyncState()

    def has_files(self, endpoint: str, container: str) -> bool:
        return self.conn.execute("SELECT 1 FROM files WHERE endpoint=? AND container=? LIMIT 1",
                                 (endpoint, container)).fetchone() is not None

    def stored(self, endpoint: str, ids: list[str]) -> dict[str, Stored]:
        found: dict[str, Stored] = {}
        for chunk in _chunks(ids):
            for r in self.conn.execute(
                    f"SELECT external_id, deleted_at, change_key, path, title, container FROM files "
                    f"WHERE endpoint=? AND external_id IN ({_marks(chunk)})", (endpoint, *chunk)):
                found[r[0]] = Stored(r[1] is not None, r[2], r[3], r[4], r[5])
        return found

    def write_files(self, endpoint: str, container: str, records: list[FileRecord], now: datetime) -> None:
        stamp = _ts(now)
        self.conn.executemany(
            f"INSERT INTO files ({','.join(FILE_COLUMNS)}) VALUES ({_marks(list(FILE_COLUMNS))}) "
            f"ON CONFLICT (endpoint, external_id) DO UPDATE SET {', '.join(f'{c}=excluded.{c}' for c in _SETTABLE)}",
            [_file_row(endpoint, container, rec, stamp) for rec in records])

    def tombstone(self, endpoint: str, ids: list[str], now: datetime) -> int:
        count = 0
        for chunk in _chunks(ids):
            count += self.conn.execute(
                f"UPDATE files SET deleted_at=?, updated_at=? WHERE endpoint=? AND deleted_at IS NULL "
                f"AND external_id IN ({_marks(chunk)})", (_ts(now), _ts(now), endpoint, *chunk)).rowcount
        return count

    def count_live(self, endpoint: str, ids: list[str]) -> int:
        return sum(self.conn.execute(f"SELECT count(*) FROM files WHERE endpoint=? AND deleted_at IS NULL "
                                     f"AND external_id IN ({_marks(chunk)})", (endpoint, *chunk)).fetchone()[0]
                   for chunk in _chunks(ids))

    _UNDER = "endpoint=? AND container=? AND substr(path, 1, ?) = ?"

    def count_under(self, endpoint: str, container: str, prefix: str) -> int:
        return self.conn.execute(f"SELECT count(*) FROM files WHERE {self._UNDER} AND deleted_at IS NULL",
                                 (endpoint, container, len(prefix), prefix)).fetchone()[0]

    def tombstone_under(self, endpoint: str, container: str, prefix: str, now: datetime) -> int:
        return self.conn.execute(f"UPDATE files SET deleted_at=?, updated_at=? WHERE {self._UNDER} "
                                 f"AND deleted_at IS NULL",
                                 (_ts(now), _ts(now), endpoint, container, len(prefix), prefix)).rowcount

    def move_under(self, endpoint: str, container: str, prefix: str, new_prefix: str, now: datetime) -> int:
        return self.conn.execute(f"UPDATE files SET path = ? || substr(path, ?), updated_at=?, "
                                 f"processing_status='pending', processing_attempts=0 WHERE {self._UNDER}",
                                 (new_prefix, len(prefix) + 1, _ts(now), endpoint, container, len(prefix),
                                  prefix)).rowcount

    def put_folders(self, endpoint: str, container: str, folders: list[Folder]) -> None:
        self.conn.executemany(
            "INSERT INTO folders (endpoint, container, folder_id, parent_id, name, version) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET parent_id=excluded.parent_id, name=excluded.name, version=excluded.version",
            [(endpoint, container, f.folder_id, f.parent_id, f.name, f.version) for f in folders])

    def delete_folders(self, endpoint: str, container: str, folder_ids: list[str]) -> None:
        self.conn.executemany("DELETE FROM folders WHERE endpoint=? AND container=? AND folder_id=?",
                              [(endpoint, container, fid) for fid in folder_ids])

    def clear_seen(self, endpoint: str, container: str) -> None:
        self.conn.execute("DELETE FROM listing_seen WHERE endpoint=? AND container=?", (endpoint, container))

    def mark_seen(self, endpoint: str, container: str, ids: list[str]) -> None:
        self.conn.executemany("INSERT OR IGNORE INTO listing_seen VALUES (?, ?, ?)",
                              [(endpoint, container, i) for i in ids])

    _UNSEEN = ("endpoint=? AND container=? AND deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM listing_seen s "
               "WHERE s.endpoint=files.endpoint AND s.container=files.container AND s.external_id=files.external_id)")

    def count_seen(self, endpoint: str, container: str) -> int:
        return self.conn.execute("SELECT count(*) FROM listing_seen WHERE endpoint=? AND container=?",
                                 (endpoint, container)).fetchone()[0]

    # the paths a listing could not read into, as one JSON array parameter
    _KEEP = (" AND NOT EXISTS (SELECT 1 FROM json_each(?) k WHERE files.path = k.value "
             "OR substr(files.path, 1, length(k.value) + 1) = k.value || '/')")

    def _unseen(self, keep: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        return (self._UNSEEN + self._KEEP, (json.dumps(list(keep)),)) if keep else (self._UNSEEN, ())

    def count_unseen(self, endpoint: str, container: str, keep: Sequence[str] = ()) -> int:
        where, args = self._unseen(keep)
        return self.conn.execute(f"SELECT count(*) FROM files WHERE {where}", (endpoint, container, *args)).fetchone()[0]

    def tombstone_unseen(self, endpoint: str, container: str, now: datetime, keep: Sequence[str] = ()) -> int:
        where, args = self._unseen(keep)
        return self.conn.execute(f"UPDATE files SET deleted_at=?, updated_at=? WHERE {where}",
                                 (_ts(now), _ts(now), endpoint, container, *args)).rowcount

    def save_state(self, endpoint: str, container: str, state: SyncState, lease_until: datetime) -> None:
        self.conn.execute(
            "INSERT INTO sync_state (endpoint, container, cursor, listing_in_progress, listing_fresh, last_sync_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint, container) DO UPDATE SET "
            "cursor=excluded.cursor, listing_in_progress=excluded.listing_in_progress, "
            "listing_fresh=excluded.listing_fresh, last_sync_at=COALESCE(excluded.last_sync_at, sync_state.last_sync_at), "
            "updated_at=excluded.updated_at, "
            "lease_until=CASE WHEN sync_state.running_sync IS NULL THEN NULL ELSE ? END",
            (endpoint, container, state.cursor, state.listing_in_progress, state.listing_fresh,
             _ts(state.last_sync_at), _ts(utcnow()), _ts(lease_until)))


class SQLiteStore(Store):
    """Files in one SQLite database file (WAL mode, so readers never block the syncing writer)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0):
        """Args:
            busy_timeout_s: how long a write waits for another connection's write lock (SQLite's busy
                timeout); past it the operation fails with one line saying the database is locked.
        """
        self.path = Path(path)
        self.label = f"sqlite:{self.path}"
        self.busy_timeout_s = busy_timeout_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                        check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            st = os.stat(self.path)
            self.schema_key = f"{self.label}#{st.st_dev}:{st.st_ino}"  # a file deleted and made again is new
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{self.label}: cannot open the database: {exc}") from None

    # -- schema ---------------------------------------------------------------------------------
    def migrate(self) -> int:
        with self._tx("migrate"):
            self.conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                              "description TEXT NOT NULL, applied_at TEXT NOT NULL)")
            current = self.conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            for migration in MIGRATIONS:
                if migration.version > current:
                    for statement in migration.sqlite:
                        self.conn.execute(statement)
                    self.conn.execute("INSERT INTO schema_version VALUES (?, ?, ?)",
                                      (migration.version, migration.description, _ts(utcnow())))
                    current = migration.version
        return current

    class _Tx:
        def __init__(self, store: "SQLiteStore", operation: str):
            self.store, self.operation = store, operation

        def __enter__(self) -> sqlite3.Connection:
            try:
                self.store.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self.store._error(self.operation, exc) from None
            return self.store.conn

        def __exit__(self, exc_type, exc, tb) -> bool:
            conn = self.store.conn
            if exc_type is None:
                try:
                    conn.execute("COMMIT")
                    return False
                except sqlite3.Error as commit_exc:
                    exc = commit_exc
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self.store._error(self.operation, exc) from None
            return False

    def _error(self, operation: str, exc: sqlite3.Error) -> StoreError:
        """One line: what failed, SQLite's reason, and what it means for the user."""
        text = str(exc)
        if "locked" in text or "busy" in text:
            text += (f" (another process held its write lock for more than busy_timeout_s="
                     f"{self.busy_timeout_s:g}; nothing of this was written)")
        elif "full" in text or "disk I/O error" in text:  # ENOSPC; EFBIG (a file size limit) or a failing disk
            text += " (the database cannot be written: is the disk full?; nothing of this was written)"
        return StoreError(f"{self.label}: {operation}: {text}")

    def _tx(self, operation: str) -> "SQLiteStore._Tx":
        return SQLiteStore._Tx(self, operation)

    # -- endpoints and state --------------------------------------------------------------------
    def upsert_endpoint(self, name: str, type_name: str, project_id: str | None, user_id: str | None,
                        details: dict[str, Any], is_active: bool = True) -> None:
        with self._tx("upsert endpoint") as conn:
            conn.execute(
                "INSERT INTO endpoints (name, type, project_id, user_id, details, is_active, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET type=excluded.type, "
                "project_id=excluded.project_id, user_id=excluded.user_id, details=excluded.details, "
                "is_active=excluded.is_active, updated_at=excluded.updated_at",
                (name, type_name, project_id, user_id, json.dumps(details, default=str), is_active, _ts(utcnow())),
            )

    def endpoints(self) -> list[EndpointInfo]:
        rows = self.conn.execute("SELECT name, type, is_active FROM endpoints ORDER BY name")
        return [EndpointInfo(r[0], r[1], bool(r[2])) for r in rows]

    def deactivate_endpoint(self, name: str) -> None:
        with self._tx(f"deactivate endpoint {name}") as conn:
            conn.execute("UPDATE endpoints SET is_active=0, updated_at=? WHERE name=? AND is_active",
                         (_ts(utcnow()), name))

    def sync_state(self, endpoint: str, container: str) -> SyncState:
        row = self.conn.execute("SELECT * FROM sync_state WHERE endpoint=? AND container=?",
                                (endpoint, container)).fetchone()
        if row is None:
            return SyncState()
        return _state(row)

    def folders(self, endpoint: str, container: str) -> dict[str, Folder]:
        rows = self.conn.execute("SELECT folder_id, parent_id, name, version FROM folders WHERE endpoint=? "
                                 "AND container=?", (endpoint, container))
        return {r[0]: Folder(r[0], r[1], r[2], r[3]) for r in rows}

    def reset_cursor(self, endpoint: str, container: str) -> None:
        with self._tx("reset cursor") as conn:
            conn.execute("UPDATE sync_state SET cursor=NULL, listing_in_progress=0 WHERE endpoint=? AND container=?",
                         (endpoint, container))

    # -- lease and sync logs -------------------------------------------------------------------
    def take_lease(self, endpoint: str, container: str, owner: str, until: datetime,
                   may_take: Callable[[Lease], bool]) -> tuple[int | None, Lease | None]:
        now = utcnow()
        with self._tx("start sync") as conn:  # BEGIN IMMEDIATE: one writer, so check-and-take is atomic
            row = conn.execute("SELECT running_sync, lease_owner, lease_until FROM sync_state WHERE endpoint=? "
                               "AND container=? AND running_sync IS NOT NULL", (endpoint, container)).fetchone()
            held = Lease(row[0], row[1], _dt(row[2])) if row else None
            if held and not may_take(held):
                return None, held
            if held:
                conn.execute("UPDATE sync_logs SET status='interrupted', finished=?, error=? WHERE id=? "
                             "AND status='running'", (_ts(now), INTERRUPTED, int(held.sync_id)))
            sync_id = int(conn.execute("INSERT INTO sync_logs (endpoint, container, started, status) "
                                       "VALUES (?, ?, ?, 'running')", (endpoint, container, _ts(now))).lastrowid)
            conn.execute(
                "INSERT INTO sync_state (endpoint, container, running_sync, lease_owner, lease_until, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint, container) DO UPDATE SET "
                "running_sync=excluded.running_sync, lease_owner=excluded.lease_owner, lease_until=excluded.lease_until",
                (endpoint, container, str(sync_id), owner, _ts(until), _ts(now)))
            return sync_id, held

    def finish_sync(self, sync_id: int | str, stats: SyncStats) -> None:
        counts = stats.counts()
        with self._tx("finish sync") as conn:
            conn.execute(
                "UPDATE sync_logs SET finished=?, status=?, listed=?, added=?, updated=?, unchanged=?, deleted=?, "
                "errors=?, pages=?, api_calls=?, error=?, full_listing=?, seen=? WHERE id=?",
                (_ts(utcnow()), stats.status, counts["listed"], counts["added"], counts["updated"], counts["unchanged"],
                 counts["deleted"], counts["errors"], counts["pages"], counts["api_calls"], stats.error,
                 stats.listing_complete, stats.listing_seen, int(sync_id)),
            )
            conn.execute("UPDATE sync_state SET running_sync=NULL, lease_until=NULL WHERE endpoint=? AND container=? "
                         "AND running_sync=?", (stats.endpoint, stats.container, str(sync_id)))

    def sync_logs(self, endpoint: str | None = None, limit: int = 100) -> list[SyncLog]:
        where, args = ("WHERE endpoint=?", [endpoint]) if endpoint else ("", [])
        rows = self.conn.execute(f"SELECT * FROM sync_logs {where} ORDER BY started DESC, id DESC LIMIT ?", (*args, limit))
        return [
            SyncLog(endpoint=r["endpoint"], container=r["container"], started=_dt(r["started"]),
                    finished=_dt(r["finished"]), status=r["status"],
                    counts={k: r[k] for k in ("listed", "added", "updated", "unchanged", "deleted", "errors", "pages", "api_calls")},
                    error=r["error"], sync_id=r["id"], full_listing=bool(r["full_listing"]), seen=r["seen"])
            for r in rows
        ]

    # -- pages ----------------------------------------------------------------------------------
    def in_transaction(self, operation: str, work: Callable[[PageTx], T]) -> T:
        with self._tx(operation) as conn:
            return work(_SQLiteTx(conn))

    # -- reading and processing -----------------------------------------------------------------
    def iter_files(self, endpoint: str, container: str | None = None, *, changed_since: datetime | None = None,
                   include_deleted: bool = True, page_size: int = 1000) -> Iterator[list[FileRecord]]:
        where, args = ["endpoint=?"], [endpoint]
        if container is not None:
            where.append("container=?")
            args.append(container)
        if changed_since is not None:
            where.append("updated_at > ?")
            args.append(_ts(changed_since))
        if not include_deleted:
            where.append("deleted_at IS NULL")
        after: tuple[str, str] | None = None
        while True:  # keyset pagination: memory stays at one page however big the table
            page_where = list(where)
            page_args = list(args)
            if after is not None:
                page_where.append("(updated_at, external_id) > (?, ?)")
                page_args.extend(after)
            rows = self.conn.execute(
                f"SELECT * FROM files WHERE {' AND '.join(page_where)} ORDER BY updated_at, external_id LIMIT ?",
                (*page_args, page_size)).fetchall()
            if not rows:
                return
            yield [_row_to_record(r) for r in rows]
            after = (rows[-1]["updated_at"], rows[-1]["external_id"])

    def containers(self, endpoint: str, include_deleted: bool = False) -> list[str]:
        live = "" if include_deleted else " AND deleted_at IS NULL"
        rows = self.conn.execute(f"SELECT DISTINCT container FROM files WHERE endpoint=?{live} ORDER BY container",
                                 (endpoint,))
        return [r[0] for r in rows]

    def count_files(self, endpoint: str, container: str | None = None, include_deleted: bool = False) -> int:
        sql = "SELECT count(*) FROM files WHERE endpoint=?" + (" AND container=?" if container is not None else "")
        sql += "" if include_deleted else " AND deleted_at IS NULL"
        return self.conn.execute(sql, (endpoint,) + ((container,) if container is not None else ())).fetchone()[0]

    def iter_due(self, endpoint: str, container: str, page_size: int = 1000) -> Iterator[list[FileRecord]]:
        after = ""
        while True:  # the literal 'pending' and deleted_at test let SQLite use the partial index
            rows = self.conn.execute(
                "SELECT * FROM files WHERE endpoint=? AND container=? AND processing_status = 'pending' "
                "AND deleted_at IS NULL AND external_id > ? ORDER BY external_id LIMIT ?",
                (endpoint, container, after, page_size)).fetchall()
            if not rows:
                return
            yield [_row_to_record(r) for r in rows]
            after = rows[-1]["external_id"]

    def save_processing(self, endpoint: str, records: list[FileRecord]) -> int:
        if not records:
            return 0
        columns = ", ".join(f"{c}=?" for c in PROCESSING_COLUMNS)
        with self._tx(f"store processing results of {endpoint}") as conn:
            return conn.executemany(  # rowcount: the rows all executions changed
                f"UPDATE files SET {columns}, metadata=? WHERE endpoint=? AND external_id=? AND updated_at=? "
                "AND deleted_at IS NULL AND processing_status='pending'",
                [(*_processing_row(rec, saving=True), json.dumps(rec.metadata, default=str, ensure_ascii=False),
                  endpoint, rec.external_id, _ts(rec.updated_at)) for rec in records]).rowcount

    def requeue(self, endpoint: str, container: str | None = None, statuses: list[str] | None = None) -> int:
        where, args = ["endpoint=?", "deleted_at IS NULL"], [endpoint]
        if container is not None:
            where.append("container=?")
            args.append(container)
        if statuses:
            where.append(f"processing_status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        with self._tx(f"re-queue files of {endpoint}") as conn:
            return conn.execute("UPDATE files SET processing_status='pending', processing_attempts=0 WHERE "
                                + " AND ".join(where), args).rowcount

    def processing_counts(self, endpoint: str, container: str | None = None) -> dict[str, int]:
        sql = "SELECT processing_status, count(*) FROM files WHERE endpoint=? AND deleted_at IS NULL"
        args: tuple = (endpoint,)
        if container is not None:
            sql, args = sql + " AND container=?", (endpoint, container)
        return {r[0]: r[1] for r in self.conn.execute(sql + " GROUP BY processing_status", args)}

    def processing_counts_by_container(self, endpoint: str) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for container, status, n in self.conn.execute(
                "SELECT container, processing_status, count(*) FROM files WHERE endpoint=? AND deleted_at IS NULL "
                "GROUP BY container, processing_status", (endpoint,)):
            counts.setdefault(container, {})[status] = n
        return counts

    def live_counts(self, endpoint: str) -> dict[str, tuple[int, int]]:
        return {r[0]: (r[1], r[2]) for r in self.conn.execute(
            "SELECT container, count(*), count(DISTINCT external_id) FROM files WHERE endpoint=? "
            "AND deleted_at IS NULL GROUP BY container", (endpoint,))}

    def cache_get(self, namespace: str, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        now = _ts(utcnow())
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i:i + _CHUNK]
            for key, value in self.conn.execute(
                    f"SELECT key, value FROM processor_cache WHERE namespace=? AND expires_at > ? "
                    f"AND key IN ({','.join('?' * len(chunk))})", (namespace, now, *chunk)):
                found[key] = json.loads(value)
        return found

    def cache_put(self, namespace: str, values: dict[str, Any], ttl: timedelta) -> None:
        expires = _ts(utcnow() + ttl)
        with self._tx(f"cache {namespace} answers") as conn:
            conn.executemany("INSERT INTO processor_cache VALUES (?, ?, ?, ?) ON CONFLICT (namespace, key) "
                             "DO UPDATE SET value=excluded.value, expires_at=excluded.expires_at",
                             [(namespace, k, json.dumps(v, default=str), expires) for k, v in values.items()])

    def files_by_hash(self, hashes: list[str], endpoint: str | None = None) -> list[FileRecord]:
        found: list[FileRecord] = []
        for i in range(0, len(hashes), _CHUNK):
            chunk = hashes[i:i + _CHUNK]
            sql = (f"SELECT * FROM files WHERE content_hash IN ({','.join('?' * len(chunk))}) "
                   "AND content_hash IS NOT NULL AND deleted_at IS NULL")
            args: list = list(chunk)
            if endpoint is not None:
                sql += " AND endpoint=?"
                args.append(endpoint)
            found.extend(_row_to_record(r) for r in self.conn.execute(sql, args))
        return found

    def close(self) -> None:
        self.conn.close()
