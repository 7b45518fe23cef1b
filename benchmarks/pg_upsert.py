"""Upserting 100k records into PostgreSQL through PostgresStore, against a bare COPY of the same rows.

    python benchmarks/pg_upsert.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres] [--records 100000]

Creates its own database (dropped at the end) and prints:
  (a) a bare COPY of the rows into a table shaped like `files` (same columns and indexes, no upsert logic),
  (b) the first load through PostgresStore.apply_page, in pages,
  (c) a re-sync of the same records, all unchanged,
with the ratios b/a (target <= 2) and b/c (target: several times faster), and checks that the re-sync
rewrote no row (n_tup_upd and every row's xmin unchanged). Both (a) and (b) include turning the records
into COPY text, since a real load has to do that too.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from file_connector_dagster.records import ChangePage, FileRecord, PageStats  # noqa: E402
from file_connector_dagster.stores.postgres import PAGE_COLUMNS, PostgresStore, copy_rows  # noqa: E402

ENDPOINT, CONTAINER = "bench", "drive"


def make_records(count: int) -> list[FileRecord]:
    base = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return [
        FileRecord(
            external_id=f"01ABCDEF{n:010d}", title=f"report-{n}.pdf", path=f"projects/p{n % 100}/docs/report-{n}.pdf",
            endpoint=ENDPOINT, container=CONTAINER, file_link=f"https://contoso.sharepoint.com/sites/x/report-{n}.pdf",
            date_created=base + timedelta(minutes=n), date_updated=base + timedelta(minutes=n, seconds=30),
            size=1000 + n, mime_type="application/pdf", change_key=f'"c:{{{n:08d}-AAAA}},1"', project_id="proj",
            user_id="user", metadata={"web_url": f"https://contoso.sharepoint.com/x/{n}", "etag": f'"{{{n}}},1"',
            "parent_path": f"projects/p{n % 100}/docs", "hashes": {"quickXorHash": f"h{n:020d}"}},
        )
        for n in range(count)
    ]


def admin(dsn: str):
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    return conn


def db_dsn(admin_dsn: str, name: str) -> str:
    return admin_dsn.rsplit("/", 1)[0] + "/" + name


def bare_copy(dsn: str, records: list[FileRecord]) -> float:
    """COPY the records into a table with the columns and indexes of `files`, one COPY, one commit."""
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE bare (LIKE files INCLUDING ALL)")
        conn.commit()
        columns = ", ".join(PAGE_COLUMNS)
        cur.execute(f"ALTER TABLE bare ALTER COLUMN endpoint SET DEFAULT '{ENDPOINT}', "
                    f"ALTER COLUMN container SET DEFAULT '{CONTAINER}', ALTER COLUMN first_seen_at SET DEFAULT now(), "
                    "ALTER COLUMN updated_at SET DEFAULT now()")
        conn.commit()
        started = time.perf_counter()
        cur.copy_expert(f"COPY bare ({columns}) FROM STDIN", copy_rows(records))
        conn.commit()
        elapsed = time.perf_counter() - started
        cur.execute("SELECT count(*) FROM bare")
        assert cur.fetchone()[0] == len(records)
    conn.close()
    return elapsed


def through_store(store: PostgresStore, records: list[FileRecord], page_size: int,
                  full_listing: bool) -> tuple[float, PageStats]:
    totals = PageStats()
    started = time.perf_counter()
    for i in range(0, len(records), page_size):
        page = ChangePage(upserts=records[i:i + page_size], cursor=str(i + page_size), full_listing=full_listing,
                          starts_listing=full_listing and i == 0, last=i + page_size >= len(records))
        totals += store.apply_page(ENDPOINT, CONTAINER, page)
    return time.perf_counter() - started, totals


def row_versions(dsn: str) -> tuple[int, int]:
    """(n_tup_upd of files, a checksum over every row's xmin)"""
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")
        cur.execute("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'files'")
        updates = cur.fetchone()[0]
        cur.execute("SELECT sum(hashtext(external_id || ':' || xmin::text)::bigint) FROM files")
        checksum = cur.fetchone()[0]
    conn.close()
    return updates, checksum


def run(admin_dsn: str, records: list[FileRecord], page_size: int, full_listing: bool) -> dict[str, float]:
    """One fresh database: (a) bare COPY, (b) first load, (c) unchanged re-sync."""
    name = f"fc_bench_{uuid.uuid4().hex[:8]}"
    with admin(admin_dsn).cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    dsn = db_dsn(admin_dsn, name)
    try:
        store = PostgresStore(dsn)
        store.migrate()
        result = {"a": bare_copy(dsn, records)}
        result["b"], first = through_store(store, records, page_size, full_listing)
        assert first == PageStats(added=len(records)), first
        time.sleep(0.6)  # let the statistics collector settle before the snapshot
        before = row_versions(dsn)
        result["c"], again = through_store(store, records, page_size, full_listing)
        assert again == PageStats(unchanged=len(records)), again
        time.sleep(0.6)
        after = row_versions(dsn)
        store.close()
        result["rewritten"] = after[0] - before[0] + (after[1] != before[1])
        return result
    finally:
        with admin(admin_dsn).cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a database to connect to for CREATE/DROP DATABASE")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=1000)
    args = parser.parse_args()

    records = make_records(args.records)
    print(f"records: {len(records):,}  page size: {args.page_size}")
    failed = False
    for full_listing, label in ((False, "change pages (a delta feed: SharePoint, Drive)"),
                                (True, "full-listing pages (local folders: every id also goes to listing_seen)")):
        r = run(args.dsn, records, args.page_size, full_listing)
        n = len(records)
        print(f"\n{label}")
        print(f"  (a) bare COPY into an equivalent table : {r['a']:6.2f} s  ({n / r['a']:,.0f} rows/s)")
        print(f"  (b) first load through PostgresStore   : {r['b']:6.2f} s  ({n / r['b']:,.0f} rows/s)")
        print(f"  (c) re-sync, all unchanged             : {r['c']:6.2f} s  ({n / r['c']:,.0f} rows/s)")
        print(f"  b/a = {r['b'] / r['a']:.2f} (target <= 2)   b/c = {r['c'] and r['b'] / r['c']:.2f} "
              f"(re-sync this many times faster)   rows rewritten by the re-sync: {r['rewritten']}")
        failed = failed or bool(r["rewritten"])
    if failed:
        sys.exit("FAIL: a re-sync rewrote rows")


if __name__ == "__main__":
    main()
