"""PostgreSQL store: the same tables as SQLite, bulk upserts through COPY, one transaction per page."""

from __future__ import annotations

import io
import json
import re
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Sequence, TypeVar

import orjson
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

from ..errors import StoreError, scrub
from ..records import EndpointInfo, FileRecord, Folder, SyncLog, SyncState, SyncStats, utcnow
from .base import FILE_COLUMNS, PROCESSING_COLUMNS, PageTx, Store, Stored, processing_values
from .migrations import MIGRATIONS
from .protocol import INTERRUPTED, Lease

T = TypeVar("T")

# Any constant works; it only has to be the same for every process migrating this database.
_MIGRATION_LOCK_KEY = 0x46434D4947  # "FCMIG"
_COUNT_COLUMNS = ("listed", "added", "updated", "unchanged", "deleted", "errors", "pages", "api_calls")
# Columns a page supplies (the record's fields and processing state); the rest are the store's.
PAGE_COLUMNS = tuple(c for c in FILE_COLUMNS if c not in (
    "endpoint", "container", "deleted_at", "first_seen_at", "updated_at"))
_REWRITTEN = tuple(c for c in FILE_COLUMNS if c not in ("endpoint", "external_id", "first_seen_at"))

_PAGE_TABLE_DDL = """
CREATE TEMPORARY TABLE IF NOT EXISTS page_files (
    external_id TEXT NOT NULL, title TEXT NOT NULL, path TEXT NOT NULL, file_link TEXT,
    date_created TIMESTAMPTZ, date_updated TIMESTAMPTZ, size BIGINT, mime_type TEXT, change_key TEXT,
    project_id TEXT, user_id TEXT, metadata JSONB NOT NULL, excluded_by TEXT, processing_errors JSONB,
    processing_status TEXT, processed_key TEXT, processed_at TIMESTAMPTZ, processing_attempts INTEGER, content_hash TEXT
) ON COMMIT DELETE ROWS"""

# The stored rows of a page's ids in one round trip. The LIMIT 1 keeps each lookup a primary-key probe
# (flattened into a join, the planner, with the statistics of a table still filling up, hashes every file
# of the endpoint for every page).
_STORED_SQL = """
SELECT f.external_id, f.deleted_at IS NOT NULL AS deleted, f.change_key, f.path, f.title, f.container
FROM unnest(%(ids)s::text[]) AS p (external_id)
JOIN LATERAL (
    SELECT external_id, deleted_at, change_key, path, title, container FROM files
    WHERE endpoint = %(endpoint)s AND external_id = p.external_id LIMIT 1) f ON TRUE"""

# The rows COPYed into page_files, written in one statement: new ones inserted, stored ones rewritten.
_INSERT_SQL = f"""
INSERT INTO files (endpoint, container, {', '.join(PAGE_COLUMNS)}, deleted_at, first_seen_at, updated_at)
SELECT %(endpoint)s, %(container)s, {', '.join(PAGE_COLUMNS)}, NULL, %(now)s, %(now)s
FROM page_files
ON CONFLICT (endpoint, external_id) DO """
_WRITE_SQL = _INSERT_SQL + f"UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in _REWRITTEN)}"
_INSERT_NEW_SQL = _INSERT_SQL + "NOTHING RETURNING external_id"
# A first listing's page straight into files: each line is the page's COPY line plus these columns.
_COPY_NEW_SQL = f"COPY files ({', '.join(PAGE_COLUMNS)}, endpoint, container, first_seen_at, updated_at) FROM STDIN"

_UNSEEN = ("f.endpoint = %(endpoint)s AND f.container = %(container)s AND f.deleted_at IS NULL AND NOT EXISTS "
           "(SELECT 1 FROM listing_seen s WHERE s.endpoint = f.endpoint AND s.container = f.container "
           "AND s.external_id = f.external_id)")
# the paths a listing could not read into: their files (and the files under them) are kept by the sweep
_KEEP = (" AND NOT EXISTS (SELECT 1 FROM unnest(%(keep)s::text[]) k(p) WHERE f.path = k.p "
         "OR starts_with(f.path, k.p || '/'))")
_UNDER = "endpoint = %(endpoint)s AND container = %(container)s AND starts_with(path, %(prefix)s)"


# A page's COPY text is handed to libpq in one piece: psycopg2 reads the file 8 KB at a time by default, and
# each read takes the GIL back from the fetch thread (up to a switch interval, 5 ms, each time).
_COPY_CHUNK = 1 << 26

_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r]").search
# JSON text never holds a raw tab or newline, so in COPY's text format only its backslashes need doubling.
# One encoder for every record: json.dumps with options builds a new JSONEncoder per call.
_stdlib_json = json.JSONEncoder(default=str, ensure_ascii=False, separators=(",", ":")).encode
# What json.JSONEncoder(default=str) writes, orjson writes too with these: str() of datetimes and dataclasses,
# keys that are not strings as strings.
_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _metadata_json(value: Any) -> str:
    """A record's metadata as compact JSON: orjson (a few times faster), or the json module for what
    orjson refuses (integers past 64 bits)."""
    try:
        return orjson.dumps(value, default=str, option=_ORJSON).decode()
    except TypeError:  # orjson.JSONEncodeError
        return _stdlib_json(value)


def _copy_text(value: str) -> str:
    """A string in COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy_time(value: datetime | None) -> str:
    if value is None:
        return "\\N"
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()


_PENDING_COPY = "\\N\t[]\tpending\t\\N\t\\N\t0\t"  # a new or changed version, decided by nobody yet (+ content_hash)


def _copy_opt(value: str | None) -> str:
    return "\\N" if value is None else _copy_text(value)


def copy_rows(records: list[FileRecord]) -> io.StringIO:
    """The page's records as COPY text for page_files, PAGE_COLUMNS in order (also used by benchmarks/pg_upsert.py)."""
    return _copy_text_of(copy_lines(records))


def _copy_text_of(lines: list[str], suffix: str = "\n") -> io.StringIO:
    return io.StringIO(suffix.join(lines) + suffix if lines else "")


def copy_lines(records: list[FileRecord]) -> list[str]:
    """One COPY line per record, PAGE_COLUMNS in order, without its line end.

    The hot path of a first sync (a few microseconds a record): the text fields are checked for characters
    that need escaping once, together, and escaped one by one only when some do; the processing columns
    (base.processing_values) are written from the record's attributes, and a page's records decided in one
    batch share one processed_at, formatted once.
    """
    lines = []
    append = lines.append
    last_at: datetime | None = None
    last_at_text = "\\N"
    for rec in records:
        external_id, title, path, link, mime, change_key, project_id, user_id, content_hash = texts = (
            rec.external_id, rec.title, rec.path, rec.file_link, rec.mime_type, rec.change_key, rec.project_id,
            rec.user_id, rec.content_hash)
        if _NEEDS_ESCAPE(f"{external_id}{title}{path}{link}{mime}{change_key}{project_id}{user_id}{content_hash}"):
            external_id, title, path, link, mime, change_key, project_id, user_id, content_hash = (
                None if t is None else _copy_text(t) for t in texts)  # (None reads "None": nothing to escape)
        created, updated, status = rec.date_created, rec.date_updated, rec.processing_status
        if status is None or status == "pending":  # processing_values: a fresh pending state, the hash kept
            processing = _PENDING_COPY + ("\\N" if content_hash is None else content_hash)
        else:  # decided while its page committed: the record's own processing columns
            at = rec.processed_at
            if at is not last_at:
                last_at, last_at_text = at, _copy_time(at)
            errors = rec.processing_errors
            processing = "\t".join((
                _copy_opt(rec.excluded_by), _copy_text(json.dumps(errors, ensure_ascii=False)) if errors else "[]",
                _copy_text(status), _copy_opt(key) if (key := rec.processed_key) is not rec.change_key else
                ("\\N" if change_key is None else change_key), last_at_text, str(int(rec.processing_attempts or 0)),
                "\\N" if content_hash is None else content_hash))
        append("\t".join((
            external_id, title, path, "\\N" if link is None else link,
            "\\N" if created is None else created.isoformat() if created.tzinfo else _copy_time(created),
            "\\N" if updated is None else updated.isoformat() if updated.tzinfo else _copy_time(updated),
            "\\N" if rec.size is None else str(int(rec.size)),
            "\\N" if mime is None else mime, "\\N" if change_key is None else change_key,
            "\\N" if project_id is None else project_id, "\\N" if user_id is None else user_id,
            _metadata_json(rec.metadata).replace("\\", "\\\\"), processing,
        )))
    return lines


def _label(dsn: str) -> str:
    """How errors name the database: postgres:host:port/db, never the password."""
    try:
        parts = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.Error:
        return "postgres:(unparseable dsn)"
    host = parts.get("host") or "localhost"
    return f"postgres:{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or ''}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _json(value: Any) -> psycopg2.extras.Json:
    return psycopg2.extras.Json(value, dumps=lambda v: json.dumps(v, default=str, ensure_ascii=False))


def _record(row: dict[str, Any]) -> FileRecord:
    return FileRecord(
        endpoint=row["endpoint"], container=row["container"], external_id=row["external_id"], title=row["title"],
        path=row["path"], file_link=row["file_link"], date_created=row["date_created"],
        date_updated=row["date_updated"], size=row["size"], mime_type=row["mime_type"],
        change_key=row["change_key"], project_id=row["project_id"], user_id=row["user_id"],
        metadata=row["metadata"] or {}, deleted_at=row["deleted_at"], first_seen_at=row["first_seen_at"],
        updated_at=row["updated_at"], excluded_by=row["excluded_by"],
        processing_errors=row["processing_errors"] or [], processing_status=row["processing_status"],
        processed_key=row["processed_key"], processed_at=row["processed_at"],
        processing_attempts=row["processing_attempts"], content_hash=row["content_hash"],
    )


_STATE_COLUMNS = "cursor, listing_in_progress, last_sync_at, listing_fresh, running_sync"


class _PostgresTx(PageTx):
    """A page's statements on one cursor of the store's transaction; a page's upserts take one COPY and
    one INSERT ... ON CONFLICT, never a statement per row."""

    def __init__(self, cur: psycopg2.extensions.cursor):
        self.cur = cur

    def _run(self, sql: str, **args: Any) -> int:
        self.cur.execute(sql, args)
        return self.cur.rowcount

    def _value(self, sql: str, **args: Any) -> Any:
        self.cur.execute(sql, args)
        return next(iter(self.cur.fetchone().values()))

    def sync_row(self, endpoint: str, container: str) -> SyncState:
        # FOR UPDATE: a concurrent page of the same container waits here until this one commits
        self.cur.execute(f"SELECT {_STATE_COLUMNS} FROM sync_state WHERE endpoint = %s AND container = %s "
                         "FOR UPDATE", (endpoint, container))
        row = self.cur.fetchone()
        return SyncState(**row) if row else SyncState()

    def has_files(self, endpoint: str, container: str) -> bool:
        return self._value("SELECT EXISTS (SELECT 1 FROM files WHERE endpoint = %(endpoint)s "
                           "AND container = %(container)s)", endpoint=endpoint, container=container)

    def stored(self, endpoint: str, ids: list[str]) -> dict[str, Stored]:
        self.cur.execute(_STORED_SQL, {"endpoint": endpoint, "ids": ids})
        return {r["external_id"]: Stored(r["deleted"], r["change_key"], r["path"], r["title"], r["container"])
                for r in self.cur.fetchall()}

    def write_files(self, endpoint: str, container: str, records: list[FileRecord], now: datetime) -> None:
        self.cur.copy_expert("COPY page_files FROM STDIN", copy_rows(records), size=_COPY_CHUNK)
        self._run(_WRITE_SQL, endpoint=endpoint, container=container, now=now)

    def insert_new(self, endpoint: str, container: str, records: list[FileRecord], now: datetime,
                   encoded: list[str] | None = None) -> set[str]:
        lines = copy_lines(records) if encoded is None else encoded
        # Straight into files: no id of a first listing's page is normally stored yet. One that is (a resumed
        # listing, an item listed again on a later page) fails the COPY, which is undone to the savepoint,
        # and the page is inserted by the upsert below instead.
        stamp = _copy_time(now)
        self.cur.execute("SAVEPOINT insert_new")
        try:
            self.cur.copy_expert(_COPY_NEW_SQL, _copy_text_of(lines, f"\t{_copy_text(endpoint)}\t{_copy_text(container)}"
                                                                    f"\t{stamp}\t{stamp}\n"), size=_COPY_CHUNK)
            return set()
        except psycopg2.errors.UniqueViolation:
            self.cur.execute("ROLLBACK TO SAVEPOINT insert_new")
        self.cur.copy_expert("COPY page_files FROM STDIN", _copy_text_of(lines), size=_COPY_CHUNK)
        # only the ids already stored come back (normally none), not one row per inserted file
        self.cur.execute(f"WITH inserted AS ({_INSERT_NEW_SQL}) SELECT array_agg(p.external_id) AS existing "
                         "FROM page_files p WHERE p.external_id NOT IN (SELECT external_id FROM inserted)",
                         {"endpoint": endpoint, "container": container, "now": now})
        existing = set(self.cur.fetchone()["existing"] or ())
        if existing:  # write_files comes next in this page (ON COMMIT DELETE ROWS empties it otherwise)
            self.cur.execute("DELETE FROM page_files")
        return existing

    def tombstone(self, endpoint: str, ids: list[str], now: datetime) -> int:
        return self._run("UPDATE files SET deleted_at = %(now)s, updated_at = %(now)s WHERE endpoint = %(endpoint)s "
                         "AND deleted_at IS NULL AND external_id = ANY(%(ids)s)", endpoint=endpoint, ids=ids, now=now)

    def count_live(self, endpoint: str, ids: list[str]) -> int:
        return self._value("SELECT count(*) FROM files WHERE endpoint = %(endpoint)s AND deleted_at IS NULL "
                           "AND external_id = ANY(%(ids)s)", endpoint=endpoint, ids=ids)

    def count_under(self, endpoint: str, container: str, prefix: str) -> int:
        return self._value(f"SELECT count(*) FROM files WHERE {_UNDER} AND deleted_at IS NULL",
                           endpoint=endpoint, container=container, prefix=prefix)

    def tombstone_under(self, endpoint: str, container: str, prefix: str, now: datetime) -> int:
        return self._run(f"UPDATE files SET deleted_at = %(now)s, updated_at = %(now)s WHERE {_UNDER} "
                         "AND deleted_at IS NULL", endpoint=endpoint, container=container, prefix=prefix, now=now)

    def move_under(self, endpoint: str, container: str, prefix: str, new_prefix: str, now: datetime) -> int:
        return self._run(f"UPDATE files SET path = %(new)s || substr(path, %(rest)s), updated_at = %(now)s, "
                         f"processing_status = 'pending', processing_attempts = 0 WHERE {_UNDER}", endpoint=endpoint, container=container, prefix=prefix,
                         new=new_prefix, rest=len(prefix) + 1, now=now)

    def put_folders(self, endpoint: str, container: str, folders: list[Folder]) -> None:
        psycopg2.extras.execute_values(
            self.cur, "INSERT INTO folders (endpoint, container, folder_id, parent_id, name, version) VALUES %s "
            "ON CONFLICT (endpoint, container, folder_id) DO UPDATE SET parent_id = EXCLUDED.parent_id, "
            "name = EXCLUDED.name, version = EXCLUDED.version",
            [(endpoint, container, f.folder_id, f.parent_id, f.name, f.version) for f in folders], page_size=len(folders))

    def delete_folders(self, endpoint: str, container: str, folder_ids: list[str]) -> None:
        self._run("DELETE FROM folders WHERE endpoint = %(endpoint)s AND container = %(container)s "
                  "AND folder_id = ANY(%(ids)s)", endpoint=endpoint, container=container, ids=folder_ids)

    def clear_seen(self, endpoint: str, container: str) -> None:
        self._run("DELETE FROM listing_seen WHERE endpoint = %(endpoint)s AND container = %(container)s",
                  endpoint=endpoint, container=container)

    def mark_seen(self, endpoint: str, container: str, ids: list[str]) -> None:
        self._run("INSERT INTO listing_seen (endpoint, container, external_id) SELECT %(endpoint)s, %(container)s, "
                  "unnest(%(ids)s::text[]) ON CONFLICT DO NOTHING", endpoint=endpoint, container=container, ids=ids)

    def count_seen(self, endpoint: str, container: str) -> int:
        return self._value("SELECT count(*) FROM listing_seen WHERE endpoint = %(endpoint)s "
                           "AND container = %(container)s", endpoint=endpoint, container=container)

    # The sweep visits every live file of the container, so a hash anti join is the right plan; with the
    # statistics of a first load (listing_seen "empty") the planner picks a nested loop that rescans
    # listing_seen for every file, minutes for 100k files.
    def count_unseen(self, endpoint: str, container: str, keep: Sequence[str] = ()) -> int:
        self.cur.execute("SET LOCAL enable_nestloop = off")
        count = self._value(f"SELECT count(*) FROM files f WHERE {_UNSEEN}{_KEEP if keep else ''}",
                            endpoint=endpoint, container=container, keep=list(keep))
        self.cur.execute("SET LOCAL enable_nestloop = on")
        return count

    def tombstone_unseen(self, endpoint: str, container: str, now: datetime, keep: Sequence[str] = ()) -> int:
        self.cur.execute("SET LOCAL enable_nestloop = off")
        count = self._run(f"UPDATE files f SET deleted_at = %(now)s, updated_at = %(now)s WHERE {_UNSEEN}"
                          f"{_KEEP if keep else ''}", endpoint=endpoint, container=container, now=now, keep=list(keep))
        self.cur.execute("SET LOCAL enable_nestloop = on")
        return count

    def save_state(self, endpoint: str, container: str, state: SyncState, lease_until: datetime) -> None:
        self._run(
            "INSERT INTO sync_state (endpoint, container, cursor, listing_in_progress, listing_fresh, last_sync_at, "
            "updated_at) VALUES (%(endpoint)s, %(container)s, %(cursor)s, %(in_progress)s, %(fresh)s, "
            "%(last_sync_at)s, now()) "
            "ON CONFLICT (endpoint, container) DO UPDATE SET cursor = EXCLUDED.cursor, "
            "listing_in_progress = EXCLUDED.listing_in_progress, listing_fresh = EXCLUDED.listing_fresh, "
            "last_sync_at = COALESCE(EXCLUDED.last_sync_at, sync_state.last_sync_at), updated_at = EXCLUDED.updated_at, "
            "lease_until = CASE WHEN sync_state.running_sync IS NULL THEN NULL ELSE %(lease_until)s END",
            endpoint=endpoint, container=container, cursor=state.cursor, in_progress=state.listing_in_progress,
            fresh=state.listing_fresh, last_sync_at=state.last_sync_at, lease_until=lease_until)


class PostgresStore(Store):
    """Files in a PostgreSQL database (psycopg2). One connection per store; a broken connection is
    replaced on the next call, so a sync can be re-run with the same store after the server comes back."""

    def __init__(self, dsn: str, connect_timeout: int = 10, password: str | None = None):
        """Args:
            dsn: a libpq connection string or URI; best without the password, which
            password: is handed to libpq as its own parameter (no percent-encoding needed) and scrubbed
                from every error message.
        """
        from ..config import split_uri_password

        self.dsn, inline = split_uri_password(dsn)  # a password left in a URI is taken out all the same
        self._password = password if password is not None else inline
        self.label = _label(self.dsn)
        self.connect_timeout = connect_timeout
        self._conn: psycopg2.extensions.connection | None = None
        self._lock = threading.RLock()  # one connection: calls from several threads take turns
        self._connection("connect")

    def _clean(self, exc: BaseException) -> str:
        """The driver's message, one line, without the password or the connection string (libpq quotes
        the string it could not parse)."""
        return scrub(_one_line(exc), self._password, self.dsn if len(self.dsn) > 12 else None)

    # -- connection and transactions ------------------------------------------------------------
    def _connection(self, operation: str) -> psycopg2.extensions.connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._conn = None
        try:
            extra = {"password": self._password} if self._password is not None else {}
            conn = psycopg2.connect(self.dsn, connect_timeout=self.connect_timeout,
                                    application_name="file-connector", **extra)
            with conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")  # timestamps come back tz-aware in UTC
                cur.execute(_PAGE_TABLE_DDL)
            conn.commit()
        except psycopg2.Error as exc:
            raise StoreError(f"{self.label}: {operation}: cannot connect: {self._clean(exc)}") from None
        self._conn = conn
        return conn

    @contextmanager
    def _tx(self, operation: str) -> Iterator[psycopg2.extensions.cursor]:
        """One transaction: commit on success, roll back on any error; database errors become StoreError."""
        with self._lock:
            conn = self._connection(operation)
            try:
                with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                    yield cur
                conn.commit()
            except BaseException as exc:
                self._rollback(conn)
                if isinstance(exc, psycopg2.Error):
                    lost = bool(conn.closed)
                    hint = " (connection lost; nothing of this operation was committed)" if lost else ""
                    raise StoreError(f"{self.label}: {operation}: {self._clean(exc)}{hint}") from None
                raise

    def _rollback(self, conn: psycopg2.extensions.connection) -> None:
        try:
            if not conn.closed:
                conn.rollback()
        except psycopg2.Error:
            pass
        if conn.closed:
            self._conn = None
        elif conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_UNKNOWN:
            conn.close()
            self._conn = None

    def encode_upserts(self, records: list[FileRecord]) -> list[str]:
        return copy_lines(records)

    # -- schema ---------------------------------------------------------------------------------
    def migrate(self) -> int:
        with self._tx("migrate") as cur:
            # Held until commit: a second migrating process waits here, then finds nothing to do.
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
                        "description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
            cur.execute("SELECT COALESCE(MAX(version), 0) AS version FROM schema_version")
            current = cur.fetchone()["version"]
            for migration in MIGRATIONS:
                if migration.version > current:
                    for statement in migration.postgres:
                        cur.execute(statement)
                    cur.execute("INSERT INTO schema_version VALUES (%s, %s, %s)",
                                (migration.version, migration.description, utcnow()))
                    current = migration.version
        return current

    # -- endpoints and state --------------------------------------------------------------------
    def upsert_endpoint(self, name: str, type_name: str, project_id: str | None, user_id: str | None,
                        details: dict[str, Any], is_active: bool = True) -> None:
        with self._tx(f"upsert endpoint {name}") as cur:
            cur.execute(
                "INSERT INTO endpoints (name, type, project_id, user_id, details, is_active, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET type = EXCLUDED.type, "
                "project_id = EXCLUDED.project_id, user_id = EXCLUDED.user_id, details = EXCLUDED.details, "
                "is_active = EXCLUDED.is_active, updated_at = EXCLUDED.updated_at",
                (name, type_name, project_id, user_id, _json(details), is_active, utcnow()))

    def endpoints(self) -> list[EndpointInfo]:
        with self._tx("read endpoints") as cur:
            cur.execute("SELECT name, type, is_active FROM endpoints ORDER BY name")
            return [EndpointInfo(r["name"], r["type"], r["is_active"]) for r in cur.fetchall()]

    def deactivate_endpoint(self, name: str) -> None:
        with self._tx(f"deactivate endpoint {name}") as cur:
            cur.execute("UPDATE endpoints SET is_active = FALSE, updated_at = %s WHERE name = %s AND is_active",
                        (utcnow(), name))

    def sync_state(self, endpoint: str, container: str) -> SyncState:
        with self._tx(f"read sync state of {endpoint}/{container}") as cur:
            cur.execute(f"SELECT {_STATE_COLUMNS} FROM sync_state WHERE endpoint = %s AND container = %s",
                        (endpoint, container))
            row = cur.fetchone()
        return SyncState(**row) if row else SyncState()

    def folders(self, endpoint: str, container: str) -> dict[str, Folder]:
        with self._tx(f"read folders of {endpoint}/{container}") as cur:
            cur.execute("SELECT folder_id, parent_id, name, version FROM folders WHERE endpoint = %s AND container = %s",
                        (endpoint, container))
            return {r["folder_id"]: Folder(r["folder_id"], r["parent_id"], r["name"], r["version"]) for r in cur}

    def reset_cursor(self, endpoint: str, container: str) -> None:
        with self._tx(f"reset cursor of {endpoint}/{container}") as cur:
            cur.execute("UPDATE sync_state SET cursor = NULL, listing_in_progress = FALSE "
                        "WHERE endpoint = %s AND container = %s", (endpoint, container))

    # -- lease and sync logs -------------------------------------------------------------------
    def take_lease(self, endpoint: str, container: str, owner: str, until: datetime,
                   may_take: Callable[[Lease], bool]) -> tuple[int | None, Lease | None]:
        now = utcnow()
        with self._tx(f"start sync of {endpoint}/{container}") as cur:
            # serializes concurrent starts for this container, even before its sync_state row exists
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (json.dumps([endpoint, container]),))
            cur.execute("SELECT running_sync, lease_owner, lease_until FROM sync_state WHERE endpoint = %s "
                        "AND container = %s AND running_sync IS NOT NULL", (endpoint, container))
            row = cur.fetchone()
            held = Lease(row["running_sync"], row["lease_owner"], row["lease_until"]) if row else None
            if held and not may_take(held):
                return None, held
            if held:
                cur.execute("UPDATE sync_logs SET status = 'interrupted', finished = %s, error = %s "
                            "WHERE id = %s AND status = 'running'", (now, INTERRUPTED, int(held.sync_id)))
            cur.execute("INSERT INTO sync_logs (endpoint, container, started, status) "
                        "VALUES (%s, %s, %s, 'running') RETURNING id", (endpoint, container, now))
            sync_id = int(cur.fetchone()["id"])
            cur.execute(
                "INSERT INTO sync_state (endpoint, container, running_sync, lease_owner, lease_until, updated_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (endpoint, container) DO UPDATE SET "
                "running_sync = EXCLUDED.running_sync, lease_owner = EXCLUDED.lease_owner, "
                "lease_until = EXCLUDED.lease_until",
                (endpoint, container, str(sync_id), owner, until, now))
            return sync_id, held

    def finish_sync(self, sync_id: int | str, stats: SyncStats) -> None:
        counts = stats.counts()
        with self._tx(f"finish sync of {stats.endpoint}/{stats.container}") as cur:
            cur.execute(
                f"UPDATE sync_logs SET finished = %s, status = %s, "
                f"{', '.join(f'{c} = %s' for c in _COUNT_COLUMNS)}, error = %s, full_listing = %s, seen = %s "
                f"WHERE id = %s",
                (utcnow(), stats.status, *(counts[c] for c in _COUNT_COLUMNS), stats.error, stats.listing_complete,
                 stats.listing_seen, int(sync_id)))
            cur.execute("UPDATE sync_state SET running_sync = NULL, lease_until = NULL WHERE endpoint = %s "
                        "AND container = %s AND running_sync = %s", (stats.endpoint, stats.container, str(sync_id)))

    def sync_logs(self, endpoint: str | None = None, limit: int = 100) -> list[SyncLog]:
        where, args = ("WHERE endpoint = %s", [endpoint]) if endpoint else ("", [])
        with self._tx("read sync logs") as cur:
            cur.execute(f"SELECT * FROM sync_logs {where} ORDER BY started DESC, id DESC LIMIT %s", (*args, limit))
            rows = cur.fetchall()
        return [SyncLog(endpoint=r["endpoint"], container=r["container"], started=r["started"],
                        finished=r["finished"], status=r["status"], counts={c: int(r[c]) for c in _COUNT_COLUMNS},
                        error=r["error"], sync_id=r["id"], full_listing=r["full_listing"], seen=r["seen"])
                for r in rows]

    # -- pages ----------------------------------------------------------------------------------
    def in_transaction(self, operation: str, work: Callable[[PageTx], T]) -> T:
        with self._tx(operation) as cur:
            return work(_PostgresTx(cur))

    # -- reading and processing -----------------------------------------------------------------
    def iter_files(self, endpoint: str, container: str | None = None, *, changed_since: datetime | None = None,
                   include_deleted: bool = True, page_size: int = 1000) -> Iterator[list[FileRecord]]:
        where, args = ["endpoint = %s"], [endpoint]
        if container is not None:
            where.append("container = %s")
            args.append(container)
        if changed_since is not None:
            where.append("updated_at > %s")
            args.append(changed_since if changed_since.tzinfo else changed_since.replace(tzinfo=timezone.utc))
        if not include_deleted:
            where.append("deleted_at IS NULL")
        after: tuple[datetime, str] | None = None
        while True:  # keyset pagination, one short transaction per page: memory stays at one page
            page_where, page_args = list(where), list(args)
            if after is not None:
                page_where.append("(updated_at, external_id) > (%s, %s)")
                page_args.extend(after)
            with self._tx(f"read files of {endpoint}") as cur:
                cur.execute(f"SELECT * FROM files WHERE {' AND '.join(page_where)} "
                            f"ORDER BY updated_at, external_id LIMIT %s", (*page_args, page_size))
                rows = cur.fetchall()
            if not rows:
                return
            yield [_record(r) for r in rows]
            after = (rows[-1]["updated_at"], rows[-1]["external_id"])

    def containers(self, endpoint: str, include_deleted: bool = False) -> list[str]:
        live = "" if include_deleted else " AND deleted_at IS NULL"
        # One probe of files_container_path per container (a skip scan), not a DISTINCT over every file of
        # the endpoint: every sync asks, and a sync with nothing to do should not read the whole table.
        first = f"SELECT container FROM files WHERE endpoint = %(endpoint)s{live}"
        with self._tx(f"list containers of {endpoint}") as cur:
            cur.execute(f"""
                WITH RECURSIVE found (container) AS (
                    ({first} ORDER BY container LIMIT 1)
                    UNION ALL
                    SELECT ({first} AND container > found.container ORDER BY container LIMIT 1)
                    FROM found WHERE found.container IS NOT NULL)
                SELECT container FROM found WHERE container IS NOT NULL""", {"endpoint": endpoint})
            return [r["container"] for r in cur]

    def count_files(self, endpoint: str, container: str | None = None, include_deleted: bool = False) -> int:
        sql = "SELECT count(*) AS n FROM files WHERE endpoint = %s" + (" AND container = %s" if container is not None else "")
        sql += "" if include_deleted else " AND deleted_at IS NULL"
        with self._tx(f"count files of {endpoint}") as cur:
            cur.execute(sql, (endpoint,) + ((container,) if container is not None else ()))
            return int(cur.fetchone()["n"])

    def iter_due(self, endpoint: str, container: str, page_size: int = 1000) -> Iterator[list[FileRecord]]:
        after = ""
        while True:  # the literal 'pending' and deleted_at test match the partial index files_processing_due
            with self._tx(f"read files of {endpoint}/{container} due for processing") as cur:
                cur.execute("SELECT * FROM files WHERE endpoint = %s AND container = %s AND processing_status = 'pending' "
                            "AND deleted_at IS NULL AND external_id > %s ORDER BY external_id LIMIT %s",
                            (endpoint, container, after, page_size))
                rows = cur.fetchall()
            if not rows:
                return
            yield [_record(r) for r in rows]
            after = rows[-1]["external_id"]

    def save_processing(self, endpoint: str, records: list[FileRecord]) -> int:
        if not records:
            return 0
        values = [processing_values(r, saving=True) for r in records]
        with self._tx(f"store processing results of {endpoint}") as cur:
            cur.execute(
                "UPDATE files f SET metadata = v.metadata::jsonb, excluded_by = v.excluded_by, "
                "processing_errors = v.processing_errors::jsonb, processing_status = v.processing_status, "
                "processed_key = v.processed_key, processed_at = v.processed_at, "
                "processing_attempts = v.processing_attempts, content_hash = v.content_hash "
                "FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
                "%s::timestamptz[], %s::int[], %s::text[]) AS v (external_id, updated_at, metadata, excluded_by, "
                "processing_errors, processing_status, processed_key, processed_at, processing_attempts, content_hash) "
                "WHERE f.endpoint = %s AND f.external_id = v.external_id AND f.updated_at = v.updated_at "
                "AND f.deleted_at IS NULL AND f.processing_status = 'pending'",
                ([r.external_id for r in records], [r.updated_at for r in records],
                 [json.dumps(r.metadata, default=str, ensure_ascii=False) for r in records],
                 *([v[c] if c != "processing_errors" else json.dumps(v[c] or [], ensure_ascii=False) for v in values]
                   for c in PROCESSING_COLUMNS), endpoint))
            return cur.rowcount

    def requeue(self, endpoint: str, container: str | None = None, statuses: list[str] | None = None) -> int:
        where, args = ["endpoint = %s", "deleted_at IS NULL"], [endpoint]
        if container is not None:
            where.append("container = %s")
            args.append(container)
        if statuses:
            where.append("processing_status = ANY(%s)")
            args.append(list(statuses))
        with self._tx(f"re-queue files of {endpoint}") as cur:
            cur.execute("UPDATE files SET processing_status = 'pending', processing_attempts = 0 WHERE "
                        + " AND ".join(where), args)
            return cur.rowcount

    def processing_counts(self, endpoint: str, container: str | None = None) -> dict[str, int]:
        sql, args = "SELECT processing_status AS s, count(*) AS n FROM files WHERE endpoint = %s AND deleted_at IS NULL", [endpoint]
        if container is not None:
            sql += " AND container = %s"
            args.append(container)
        with self._tx(f"count processing states of {endpoint}") as cur:
            cur.execute(sql + " GROUP BY processing_status", args)
            return {r["s"]: int(r["n"]) for r in cur.fetchall()}

    def processing_counts_by_container(self, endpoint: str) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        with self._tx(f"count processing states of {endpoint}") as cur:
            cur.execute("SELECT container AS c, processing_status AS s, count(*) AS n FROM files WHERE endpoint = %s "
                        "AND deleted_at IS NULL GROUP BY container, processing_status", (endpoint,))
            for r in cur.fetchall():
                counts.setdefault(r["c"], {})[r["s"]] = int(r["n"])
        return counts

    def live_counts(self, endpoint: str) -> dict[str, tuple[int, int]]:
        with self._tx(f"count live files of {endpoint}") as cur:
            cur.execute("SELECT container AS c, count(*) AS n, count(DISTINCT external_id) AS ids FROM files "
                        "WHERE endpoint = %s AND deleted_at IS NULL GROUP BY container", (endpoint,))
            return {r["c"]: (int(r["n"]), int(r["ids"])) for r in cur.fetchall()}

    def cache_get(self, namespace: str, keys: list[str]) -> dict[str, Any]:
        if not keys:
            return {}
        with self._tx(f"read {namespace} cache") as cur:
            cur.execute("SELECT key, value FROM processor_cache WHERE namespace = %s AND key = ANY(%s) AND expires_at > %s",
                        (namespace, list(keys), utcnow()))
            return {r["key"]: r["value"] for r in cur.fetchall()}

    def cache_put(self, namespace: str, values: dict[str, Any], ttl: timedelta) -> None:
        if not values:
            return
        with self._tx(f"cache {namespace} answers") as cur:
            psycopg2.extras.execute_values(
                cur, "INSERT INTO processor_cache (namespace, key, value, expires_at) VALUES %s ON CONFLICT "
                "(namespace, key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at",
                [(namespace, k, _json(v), utcnow() + ttl) for k, v in values.items()])

    def files_by_hash(self, hashes: list[str], endpoint: str | None = None) -> list[FileRecord]:
        if not hashes:
            return []
        sql, args = "SELECT * FROM files WHERE content_hash = ANY(%s) AND deleted_at IS NULL", [list(hashes)]
        if endpoint is not None:
            sql += " AND endpoint = %s"
            args.append(endpoint)
        with self._tx("find files by content hash") as cur:
            cur.execute(sql, args)
            return [_record(r) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and not self._conn.closed:
                self._conn.close()
            self._conn = None
