"""Stores: where listings live. `open_store` picks one from connector.yaml's `store:` block."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Store

if TYPE_CHECKING:
    from ..config import ConnectorConfig


def open_store(config: "ConnectorConfig", migrate: bool = True) -> Store:
    """Open the configured store (resolving environment references now) and apply pending migrations
    (once per database per process)."""
    cfg = config.store
    if cfg.type == "sqlite":
        from .sqlite import SQLiteStore

        store: Store = SQLiteStore(config.resolve_path(cfg.path), busy_timeout_s=cfg.busy_timeout_s)
    elif cfg.type == "postgres":
        from .postgres import PostgresStore

        dsn, password = cfg.dsn.resolve_parts("store.dsn: ")
        store = PostgresStore(dsn, password=password)
    else:
        from .mongo import MongoStore

        uri, password = cfg.uri.resolve_parts("store.uri: ")
        store = MongoStore(uri, cfg.database, password=password)
    if migrate and _schema_key(store) not in _MIGRATED:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        _MIGRATED.add(_schema_key(store))
    return store


# Databases this process has migrated already: a run opens the store in several steps, and migrating takes
# a lock (PostgreSQL's advisory lock) that every other process opening the store would wait on.
_MIGRATED: set[str] = set()


def _schema_key(store: Store) -> str:
    return getattr(store, "schema_key", store.label)


__all__ = ["Store", "open_store"]
