"""Ordered schema migrations shared by the SQL stores; each store records the applied version in
schema_version. Add a Migration at the end; never edit one that has shipped."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


def _files_ddl(json_type: str, ts: str, text: str = "TEXT") -> str:
    return f"""
CREATE TABLE files (
    endpoint {text} NOT NULL,
    container {text} NOT NULL,
    external_id {text} NOT NULL,
    title {text} NOT NULL,
    path {text} NOT NULL,
    file_link {text},
    date_created {ts},
    date_updated {ts},
    size BIGINT,
    mime_type {text},
    change_key {text},
    project_id {text},
    user_id {text},
    metadata {json_type} NOT NULL,
    deleted_at {ts},
    first_seen_at {ts} NOT NULL,
    updated_at {ts} NOT NULL,
    excluded_by {text},
    processing_errors {json_type},
    PRIMARY KEY (endpoint, external_id)
)"""


def _common(json_type: str, ts: str, serial: str) -> tuple[str, ...]:
    return (
        _files_ddl(json_type, ts),
        "CREATE INDEX files_endpoint_updated ON files (endpoint, updated_at DESC)",
        "CREATE INDEX files_container_path ON files (endpoint, container, path)",
        "CREATE INDEX files_project ON files (project_id)",
        "CREATE INDEX files_date_updated ON files (date_updated DESC)",
        f"""CREATE TABLE endpoints (
            name TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            project_id TEXT,
            user_id TEXT,
            details {json_type} NOT NULL,
            is_active BOOLEAN NOT NULL,
            updated_at {ts} NOT NULL
        )""",
        f"""CREATE TABLE sync_state (
            endpoint TEXT NOT NULL,
            container TEXT NOT NULL,
            cursor TEXT,
            listing_in_progress BOOLEAN NOT NULL DEFAULT FALSE,
            last_sync_at {ts},
            processed_until {ts},
            updated_at {ts} NOT NULL,
            PRIMARY KEY (endpoint, container)
        )""",
        f"""CREATE TABLE sync_logs (
            id {serial},
            endpoint TEXT NOT NULL,
            container TEXT NOT NULL,
            started {ts} NOT NULL,
            finished {ts},
            status TEXT NOT NULL,
            listed BIGINT NOT NULL DEFAULT 0,
            added BIGINT NOT NULL DEFAULT 0,
            updated BIGINT NOT NULL DEFAULT 0,
            unchanged BIGINT NOT NULL DEFAULT 0,
            deleted BIGINT NOT NULL DEFAULT 0,
            errors BIGINT NOT NULL DEFAULT 0,
            pages BIGINT NOT NULL DEFAULT 0,
            api_calls BIGINT NOT NULL DEFAULT 0,
            error TEXT
        )""",
        "CREATE INDEX sync_logs_endpoint_started ON sync_logs (endpoint, started DESC)",
        "CREATE INDEX sync_logs_status ON sync_logs (status)",
        """CREATE TABLE folders (
            endpoint TEXT NOT NULL,
            container TEXT NOT NULL,
            folder_id TEXT NOT NULL,
            parent_id TEXT,
            name TEXT NOT NULL,
            PRIMARY KEY (endpoint, container, folder_id)
        )""",
        """CREATE TABLE listing_seen (
            endpoint TEXT NOT NULL,
            container TEXT NOT NULL,
            external_id TEXT NOT NULL,
            PRIMARY KEY (endpoint, container, external_id)
        )""",
    )

def _processing_state(ts: str, json_type: str) -> tuple[str, ...]:
    """Per-file processing state replaces the processed_until watermark. Rows the old watermark covered
    and that had no processing errors keep their result; every other row is pending again."""
    return (
        "ALTER TABLE files ADD COLUMN processing_status TEXT",
        "ALTER TABLE files ADD COLUMN processed_key TEXT",
        f"ALTER TABLE files ADD COLUMN processed_at {ts}",
        "ALTER TABLE files ADD COLUMN processing_attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE files ADD COLUMN content_hash TEXT",
        "UPDATE files SET processing_status = 'pending'",
        "UPDATE files SET processing_status = CASE WHEN excluded_by IS NULL THEN 'processed' ELSE 'skipped' END, "
        "processed_key = change_key, processed_at = (SELECT s.processed_until FROM sync_state s "
        "WHERE s.endpoint = files.endpoint AND s.container = files.container) "
        "WHERE (processing_errors IS NULL OR processing_errors = '[]') AND updated_at <= (SELECT s.processed_until "
        "FROM sync_state s WHERE s.endpoint = files.endpoint AND s.container = files.container)",
        "ALTER TABLE sync_state DROP COLUMN processed_until",
        # what is left to do is one probe of this index, whatever the container's size
        "CREATE INDEX files_processing_due ON files (endpoint, container, external_id) "
        "WHERE processing_status = 'pending' AND deleted_at IS NULL",
        "CREATE INDEX files_content_hash ON files (content_hash) WHERE content_hash IS NOT NULL",
        f"""CREATE TABLE processor_cache (
            namespace TEXT NOT NULL,
            key TEXT NOT NULL,
            value {json_type} NOT NULL,
            expires_at {ts} NOT NULL,
            PRIMARY KEY (namespace, key)
        )""",
    )



MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "files, endpoints, sync_state, sync_logs, folders, listing_seen",
        sqlite=_common("TEXT", "TEXT", "INTEGER PRIMARY KEY AUTOINCREMENT"),
        postgres=_common("JSONB", "TIMESTAMPTZ", "BIGSERIAL PRIMARY KEY"),
    ),
    Migration(
        2,
        "sync_state lease: one sync at a time per container",
        sqlite=("ALTER TABLE sync_state ADD COLUMN running_sync TEXT",
                "ALTER TABLE sync_state ADD COLUMN lease_owner TEXT",
                "ALTER TABLE sync_state ADD COLUMN lease_until TEXT"),
        postgres=("ALTER TABLE sync_state ADD COLUMN running_sync TEXT, ADD COLUMN lease_owner TEXT, "
                  "ADD COLUMN lease_until TIMESTAMPTZ",),
    ),
    Migration(
        3,
        "index for reading a container's changes in updated_at order (iter_files keyset pages)",
        sqlite=("CREATE INDEX files_container_updated ON files (endpoint, container, updated_at, external_id)",),
        postgres=("CREATE INDEX files_container_updated ON files (endpoint, container, updated_at, external_id)",),
    ),
    Migration(
        4,
        "sync_state.listing_fresh: a full listing that began on an empty container needs no sweep",
        sqlite=("ALTER TABLE sync_state ADD COLUMN listing_fresh BOOLEAN NOT NULL DEFAULT FALSE",),
        postgres=("ALTER TABLE sync_state ADD COLUMN listing_fresh BOOLEAN NOT NULL DEFAULT FALSE",),
    ),
)



MIGRATIONS += (
    Migration(
        5,
        "per-file processing state (status, change key processed, attempts) instead of processed_until; "
        "content_hash; processor_cache",
        sqlite=_processing_state("TEXT", "TEXT"),
        postgres=_processing_state("TIMESTAMPTZ", "JSONB"),
    ),
)

MIGRATIONS += (
    Migration(
        6,
        "folders.version: a source's marker of a tree node (e.g. a folder's lastModifiedTimeRollup)",
        sqlite=("ALTER TABLE folders ADD COLUMN version TEXT",),
        postgres=("ALTER TABLE folders ADD COLUMN version TEXT",),
    ),
)

MIGRATIONS += (
    Migration(
        7,
        "sync_logs.full_listing and seen: whether a sync finished a complete full listing, and how many distinct "
        "files it saw (the consistency check compares them with the container's live rows)",
        sqlite=("ALTER TABLE sync_logs ADD COLUMN full_listing BOOLEAN NOT NULL DEFAULT FALSE",
                "ALTER TABLE sync_logs ADD COLUMN seen BIGINT"),
        postgres=("ALTER TABLE sync_logs ADD COLUMN full_listing BOOLEAN NOT NULL DEFAULT FALSE, ADD COLUMN seen BIGINT",),
    ),
)

_ENDPOINT_KEYSET = ("DROP INDEX files_endpoint_updated",
                    "CREATE INDEX files_endpoint_updated ON files (endpoint, updated_at DESC, external_id DESC)")
MIGRATIONS += (
    Migration(
        8,
        "files_endpoint_updated keyed (endpoint, updated_at DESC, external_id DESC): an endpoint's keyset pages in "
        "iter_files are a (backward) index range; with updated_at alone each page sorted every row sharing its "
        "updated_at again",
        sqlite=_ENDPOINT_KEYSET,
        postgres=_ENDPOINT_KEYSET,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
