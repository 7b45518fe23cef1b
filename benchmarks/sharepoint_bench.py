"""How much the SharePoint source adds on top of merely fetching Graph pages, and whether memory stays flat.

Serves one library of N items from the HTTPS Graph fake (in this process, generated lazily) and measures:
  (a) baseline: fetch + JSON-parse every delta page with requests, nothing else;
  (b) the SharePoint source into SQLiteStore (engine.sync_container, full first sync);
  (b') the same into PostgreSQL, when the PostgreSQL store exists and 127.0.0.1:5432 answers
      (a scratch database is created and dropped);
  (c) a no-change re-sync (should be one delta request).
Prints wall time, items/s, the peak RSS growth during each phase, and ratios against (a).

    python benchmarks/sharepoint_bench.py                 # 100,000 items
    python benchmarks/sharepoint_bench.py --items 1000000
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from file_connector_dagster.engine import sync_container  # noqa: E402
from file_connector_dagster.sources.http import tls_session  # noqa: E402
from file_connector_dagster.sources.sharepoint import SharePointDetails, SharePointSource  # noqa: E402
from file_connector_dagster.stores.sqlite import SQLiteStore  # noqa: E402
from tests.fakes.graph import FakeGraph  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


@contextmanager
def measured(results: dict[str, dict[str, float]], name: str) -> Iterator[dict[str, float]]:
    """Wall time and the highest RSS above the phase's starting RSS (sampled every 20 ms)."""
    row: dict[str, float] = {}
    start_rss, peak = rss_bytes(), [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        yield row
    finally:
        row["seconds"] = time.perf_counter() - started
        stop.set()
        sampler.join()
        row["rss_growth_mb"] = max(0, max(peak[0], rss_bytes()) - start_rss) / 2**20
        results[name] = row


def baseline(fake: FakeGraph, drive_id: str, page_size: int) -> tuple[int, int]:
    session = tls_session(fake.tls.ca_path)
    token = session.post(f"{fake.base_url}/{fake.tenant}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": fake.client_id, "client_secret": fake.client_secret,
        "scope": f"{fake.base_url}/.default"}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    url: str | None = f"{fake.graph_url}/drives/{drive_id}/root/delta?$top={page_size}"
    items = pages = 0
    while url:
        body = session.get(url, headers=headers).json()
        items += len(body["value"])
        pages += 1
        url = body.get("@odata.nextLink")
    session.close()
    return items, pages


def postgres_store() -> tuple[Any, Any] | None:
    """(store, cleanup) on a scratch database, or None when PostgreSQL is not available."""
    try:
        import psycopg2

        from file_connector_dagster.stores.postgres import PostgresStore
    except ImportError as exc:
        print(f"PostgreSQL store not importable ({exc}); skipping it")
        return None
    admin_dsn = os.environ.get("FILE_CONNECTOR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"fc_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg2.connect(admin_dsn, connect_timeout=3)
    except psycopg2.Error as exc:
        print(f"PostgreSQL not reachable ({str(exc).strip().splitlines()[0]}); skipping it")
        return None
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    store = PostgresStore(admin_dsn.rsplit("/", 1)[0] + f"/{name}")
    store.migrate()

    def cleanup() -> None:
        store.close()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()

    return store, cleanup


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    results: dict[str, dict[str, float]] = {}
    with FakeGraph() as fake, tempfile.TemporaryDirectory() as tmp:
        drive = fake.add_drive(fake.add_site(), "Documents", items=args.items)
        files = args.items - 1 - drive.n_folders
        os.environ["FC_BENCH_GRAPH_SECRET"] = fake.client_secret
        details = SharePointDetails(
            tenant_id=fake.tenant, client_id=fake.client_id, client_secret="${FC_BENCH_GRAPH_SECRET}",
            site_url=f"https://{fake.sharepoint_host}/sites/eng", authority_host=fake.authority_host,
            graph_url=fake.graph_url, ca_bundle=fake.tls.ca_path, page_size=args.page_size,
            requests_per_second=0)  # pacing off: the fake does not throttle, and we measure our overhead
        print(f"library of {args.items:,} items ({files:,} files, {drive.n_folders:,} folders), "
              f"pages of {args.page_size}, fake Graph in this process")

        with measured(results, "(a) fetch+parse pages") as row:
            items, pages = baseline(fake, drive.id, args.page_size)
            row["items"], row["requests"] = items, pages

        targets: list[tuple[str, Any, Any]] = [("sqlite", SQLiteStore(Path(tmp) / "bench.db"), None)]
        targets[0][1].migrate()
        if not args.no_postgres:
            pg = postgres_store()
            if pg:
                targets.append(("postgres", pg[0], pg[1]))
        for label, store, cleanup in targets:
            try:
                source = SharePointSource("bench", details)
                before = sum(fake.counts.values())
                with measured(results, f"(b) source -> {label}") as row:
                    stats = sync_container(source, store, drive.id)
                    row["items"], row["requests"] = stats.listed, sum(fake.counts.values()) - before
                assert store.count_files("bench", drive.id) == files, "store does not hold every file"
                before = sum(fake.counts.values())
                with measured(results, f"(c) no-change re-sync -> {label}") as row:
                    stats = sync_container(source, store, drive.id)
                    row["items"], row["requests"] = stats.listed, sum(fake.counts.values()) - before
                source.close()
            finally:
                if cleanup:
                    cleanup()
                else:
                    store.close()

    base = results["(a) fetch+parse pages"]["seconds"]
    print(f"\n{'phase':34} {'seconds':>9} {'items/s':>10} {'requests':>9} {'RSS +MB':>8} {'x (a)':>7}")
    for name, row in results.items():
        rate = row["items"] / row["seconds"] if row["seconds"] else 0
        print(f"{name:34} {row['seconds']:9.2f} {rate:10,.0f} {row['requests']:9,.0f} {row['rss_growth_mb']:8.1f} "
              f"{row['seconds'] / base:7.2f}")
    print(f"\npeak RSS of the whole process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
