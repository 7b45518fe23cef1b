"""A database made by an older release upgrades in place: later migrations apply, its state survives."""

from __future__ import annotations

import pytest

from file_connector_dagster.engine import sync_container
from file_connector_dagster.stores.migrations import LATEST_VERSION, MIGRATIONS

from .helpers import ENDPOINT, ListSource, all_files, rec

C = "library"


@pytest.mark.parametrize("store_type", ["sqlite", "postgres"])
def test_upgrade_from_version_1_keeps_rows_and_cursor(store_type, store_factory, monkeypatch):
    import file_connector_dagster.stores.postgres as pg_module
    import file_connector_dagster.stores.sqlite as sqlite_module

    old = store_factory(store_type)
    for module in (sqlite_module, pg_module):
        monkeypatch.setattr(module, "MIGRATIONS", MIGRATIONS[:1])
    assert old.migrate() == 1
    # release 1 wrote a cursor without the later columns (no lease in sync_state yet)
    state = ("INSERT INTO sync_state (endpoint, container, cursor, listing_in_progress, updated_at) "
             "VALUES ('docs', 'library', 'v1-cursor', FALSE, '2026-01-01T00:00:00+00:00')")
    if store_type == "sqlite":
        old.conn.execute(state)
    else:
        with old._tx("release 1 write") as cur:
            cur.execute(state)
    monkeypatch.undo()

    new = store_factory(store_type)
    assert new.migrate() == LATEST_VERSION and new.migrate() == LATEST_VERSION
    assert new.sync_state(ENDPOINT, C).cursor == "v1-cursor"
    new.reset_cursor(ENDPOINT, C)
    stats = sync_container(ListSource({C: [rec(n) for n in range(6)]}, page_size=10), new, C)
    assert stats.status == "success" and len(all_files(new)) == 6
