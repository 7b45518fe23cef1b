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

        store = PostgresStore(cfg.dsn.resolve("store.dsn: "))
    else:
        from .mongo import MongoStore

        store = MongoStore(cfg.uri.resolve("store.uri: "), cfg.database)
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store


__all__ = ["Store", "open_store"]
