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


@pytest.mark.parametrize("store_type", ["sqlite", "postgres"])
def test_upgrade_to_per_file_processing_state(store_type, store_factory, monkeypatch):
    """Version 5 replaces the processed_until watermark: rows it covered keep their result, rows after it,
    rows with processing errors and rows of never-processed containers are pending."""
    import file_connector_dagster.stores.postgres as pg_module
    import file_connector_dagster.stores.sqlite as sqlite_module

    old = store_factory(store_type)
    for module in (sqlite_module, pg_module):
        monkeypatch.setattr(module, "MIGRATIONS", MIGRATIONS[:4])
    assert old.migrate() == 4
    statements = [
        "INSERT INTO sync_state (endpoint, container, cursor, processed_until, updated_at) VALUES "
        "('docs', 'library', 'c', '2026-01-02T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
    ]
    for n, (updated, excluded, errors, container) in enumerate([
            ("2026-01-01", None, "[]", C), ("2026-01-01", "glob_filter", "[]", C), ("2026-01-01", None, '["x: boom"]', C),
            ("2026-01-03", None, "[]", C), ("2026-01-01", None, "[]", "other")]):
        statements.append(
            "INSERT INTO files (endpoint, container, external_id, title, path, metadata, first_seen_at, updated_at, "
            f"change_key, excluded_by, processing_errors) VALUES ('docs', '{container}', 'f{n}', 'f{n}', 'f{n}', '{{}}', "
            f"'{updated}T00:00:00+00:00', '{updated}T00:00:00+00:00', 'v1', "
            f"{'NULL' if excluded is None else repr(excluded)}, '{errors}')")
    if store_type == "sqlite":
        for statement in statements:
            old.conn.execute(statement)
    else:
        with old._tx("release 4 writes") as cur:
            for statement in statements:
                cur.execute(statement)
    monkeypatch.undo()

    new = store_factory(store_type)
    assert new.migrate() == LATEST_VERSION
    files = all_files(new)
    assert {k: (f.processing_status, f.processed_key) for k, f in files.items()} == {
        "f0": ("processed", "v1"), "f1": ("skipped", "v1"), "f2": ("pending", None), "f3": ("pending", None),
        "f4": ("pending", None)}
    assert [r.external_id for p in new.iter_due(ENDPOINT, C) for r in p] == ["f2", "f3"]
