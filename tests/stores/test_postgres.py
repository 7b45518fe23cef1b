"""What is particular to PostgreSQL: the tables' types and indexes, JSONB, the COPY path's escaping."""

from __future__ import annotations

import psycopg2

from file_connector_dagster.records import ChangePage, PageStats
from file_connector_dagster.stores.migrations import LATEST_VERSION
from file_connector_dagster.stores.postgres import PostgresStore, _label

from .helpers import ENDPOINT, all_files, rec


def _query(dsn: str, sql: str, args: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()


def test_tables_indexes_and_types(pg_dsn):
    with PostgresStore(pg_dsn) as store:
        assert store.migrate() == LATEST_VERSION
        assert store.migrate() == LATEST_VERSION
    assert _query(pg_dsn, "SELECT version FROM schema_version ORDER BY version") == [(v,) for v in range(1, LATEST_VERSION + 1)]
    indexes = dict(_query(pg_dsn, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"))
    expected = {
        "files_pkey": "(endpoint, external_id)",
        "files_endpoint_updated": "(endpoint, updated_at DESC, external_id DESC)",
        "files_project": "(project_id)",
        "files_date_updated": "(date_updated DESC)",
        "sync_logs_endpoint_started": "(endpoint, started DESC)",
        "sync_logs_status": "(status)",
    }
    for name, columns in expected.items():
        assert name in indexes and indexes[name].endswith(columns), (name, indexes.get(name))
    assert "UNIQUE" in indexes["files_pkey"]
    types = dict(_query(pg_dsn, "SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_name = 'files'"))
    assert types["metadata"] == types["processing_errors"] == "jsonb"
    assert types["updated_at"] == types["deleted_at"] == "timestamp with time zone"
    assert {"files", "endpoints", "sync_state", "sync_logs", "folders", "listing_seen", "schema_version"} <= {
        r[0] for r in _query(pg_dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def test_awkward_values_survive_copy_and_unchanged_rows_keep_their_xmin(pg_dsn):
    awkward = rec("x", path="a\\b/tab\there/new\nline.txt", title="new\nline.txt", change_key=None,
                  metadata={"quote": "\\N is not null", "cr": "\r", "uni": "ü — 東京"}, size=None, date_created=None)
    with PostgresStore(pg_dsn) as store:
        store.migrate()
        store.apply_page(ENDPOINT, "c", ChangePage(upserts=[awkward, rec(1)], cursor="1"))
        stored = all_files(store)["fx"]
        assert (stored.path, stored.title, stored.change_key, stored.metadata, stored.size, stored.date_created) == (
            awkward.path, awkward.title, None, awkward.metadata, None, None)
        before = _query(pg_dsn, "SELECT external_id, xmin::text FROM files ORDER BY 1")
        stats = store.apply_page(ENDPOINT, "c", ChangePage(upserts=[awkward, rec(1)], cursor="2"))
        assert stats.unchanged == 2  # a NULL change key equals a NULL change key
        assert _query(pg_dsn, "SELECT external_id, xmin::text FROM files ORDER BY 1") == before  # not rewritten
    rows = _query(pg_dsn, "SELECT metadata->>'uni', jsonb_typeof(metadata) FROM files WHERE external_id = 'fx'")
    assert rows == [("ü — 東京", "object")]


def test_label_hides_the_password():
    assert _label("postgresql://app:s3cret@db.internal:6543/inventory") == "postgres:db.internal:6543/inventory"
    assert _label("host=db dbname=inv user=app password=s3cret") == "postgres:db:5432/inv"


def test_first_listing_skips_bookkeeping_and_replays_count_right(pg_dsn):
    """A full listing of an empty container writes pages in one statement and keeps no listing_seen rows;
    a replayed page counts as unchanged; the next listing (not fresh) still finds deletions."""
    with PostgresStore(pg_dsn) as store:
        store.migrate()
        pages = [[rec(n) for n in range(k * 100, k * 100 + 100)] for k in range(3)]

        def listing_page(k: int, **flags) -> PageStats:
            return store.apply_page(ENDPOINT, "lib", ChangePage(upserts=pages[k], cursor=str(k), full_listing=True,
                                                                starts_listing=k == 0, last=k == 2, **flags))

        assert listing_page(0).added == 100
        assert _query(pg_dsn, "SELECT count(*) FROM listing_seen") == [(0,)]
        assert _query(pg_dsn, "SELECT listing_fresh FROM sync_state") == [(True,)]
        assert listing_page(1).added == 100
        replay = listing_page(1)  # the run died after committing page 1 and replays it
        assert (replay.added, replay.updated, replay.unchanged) == (0, 0, 100)
        last = listing_page(2)
        assert (last.added, last.deleted) == (100, 0)
        assert _query(pg_dsn, "SELECT listing_fresh, listing_in_progress FROM sync_state") == [(False, False)]
        pages[1] = pages[1][:50]  # 50 files gone before the next listing, which is not fresh
        stats = [listing_page(k) for k in range(3)]
        assert sum(s.unchanged for s in stats) == 250 and stats[-1].deleted == 50
        assert store.count_files(ENDPOINT, "lib") == 250


def test_a_first_listing_page_holding_a_stored_id_is_upserted_instead(pg_dsn):
    """A first listing's pages are COPYed straight into files. A page holding an id that is stored already
    (a file moved in from another container; a page replayed after a crash) fails that COPY, is undone to
    its savepoint and goes through the upsert: nothing is lost or doubled, and the counts say what happened."""
    with PostgresStore(pg_dsn) as store:
        store.migrate()
        store.apply_page(ENDPOINT, "other", ChangePage(upserts=[rec(5, container="other")], cursor="o",
                                                        full_listing=True, starts_listing=True, last=True))
        first = store.apply_page(ENDPOINT, "lib", ChangePage(upserts=[rec(n) for n in range(5)], cursor="0",
                                                              full_listing=True, starts_listing=True))
        assert (first.added, first.updated) == (5, 0)  # the straight COPY
        second = store.apply_page(ENDPOINT, "lib", ChangePage(upserts=[rec(n) for n in range(3, 10)], cursor="1",
                                                               full_listing=True, last=True))
        assert (second.added, second.updated, second.unchanged) == (4, 1, 2)  # 3-4 replayed, 5 moved in
        assert _query(pg_dsn, "SELECT container, count(*), count(DISTINCT external_id) FROM files GROUP BY 1") == [
            ("lib", 10, 10)]
        by_copy, by_upsert = _query(pg_dsn, "SELECT endpoint, container, title, path, size, change_key, metadata, "
                                            "processing_status, deleted_at, first_seen_at = updated_at FROM files "
                                            "WHERE external_id IN (%s, %s) ORDER BY external_id",
                                    (rec(0).external_id, rec(6).external_id))
        assert by_copy[:2] == by_upsert[:2] == (ENDPOINT, "lib") and by_copy[-3:] == by_upsert[-3:] == ("pending", None, True)
