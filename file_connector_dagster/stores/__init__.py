"""Stores: where listings live. `open_store` picks one from connector.yaml's `store:` block."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Store

if TYPE_CHECKING:
    from ..config import ConnectorConfig


def open_store(config: "ConnectorConfig", migrate: bool = True) -> Store:
    """Open the configured store (resolving environment references now) and apply pending migrations."""
    cfg = config.store
    if cfg.type == "sqlite":
        from .sqlite import SQLiteStore

        store: Store = SQLiteStore(config.resolve_path(cfg.path))
    elif cfg.type == "postgres":
        from .postgres import PostgresStore

        dsn, password = cfg.dsn.resolve_parts("store.dsn: ")
        store = PostgresStore(dsn, password=password)
    else:
        from .mongo import MongoStore

        uri, password = cfg.uri.resolve_parts("store.uri: ")
        store = MongoStore(uri, cfg.database, password=password)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


__all__ = ["Store", "open_store"]
