"""SQLite specifics: the keyset pages of iter_files are index ranges, never a sort of the rows that share an
updated_at (a sweep or a move gives thousands of rows one updated_at; sorting them again for every page made
reading 100k such rows take 10x longer)."""

from __future__ import annotations

from file_connector_dagster.records import ChangePage
from file_connector_dagster.stores.sqlite import SQLiteStore

from .helpers import ENDPOINT, all_files, rec

PAGE = ("SELECT * FROM files WHERE endpoint=? {container} AND deleted_at IS NULL AND (updated_at, external_id) > (?, ?) "
        "ORDER BY updated_at, external_id LIMIT ?")


def test_iter_files_pages_are_index_ranges(tmp_path):
    store = SQLiteStore(tmp_path / "inv.db")
    store.migrate()
    for container, args in (("AND container=?", (ENDPOINT, "lib", "t", "x", 10)), ("", (ENDPOINT, "t", "x", 10))):
        plan = [row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + PAGE.format(container=container), args)]
        assert len(plan) == 1 and plan[0].startswith("SEARCH files USING INDEX") and \
            "(updated_at,external_id)>(?,?)" in plan[0], plan

    # and they still page correctly through rows that share one updated_at
    store.apply_page(ENDPOINT, "lib", ChangePage(upserts=[rec(n) for n in range(50)], cursor="c"))
    store.conn.execute("UPDATE files SET updated_at = '2026-11-29T10:00:00.000000+00:00'")
    pages = list(store.iter_files(ENDPOINT, page_size=7))
    assert [len(p) for p in pages] == [7] * 7 + [1]
    assert [r.external_id for p in pages for r in p] == sorted(f"f{n}" for n in range(50))
    assert len(all_files(store)) == 50
    store.close()
