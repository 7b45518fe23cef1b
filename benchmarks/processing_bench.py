"""The files step's cost, against the listing it follows, and content hashing against sha256sum.

    python benchmarks/processing_bench.py [--files 100000] [--hash-files 1000] [--hash-mb 1] [--dsn ...]

(a) For SQLite and PostgreSQL (skipped when it does not answer): a full listing of N files whose
    endpoint has only filters (decided while each page commits), then the files step on it, then a
    re-listing of the same N unchanged files and the files step again. Prints each phase, the ratios
    files step / listing, how many statements the no-work files step ran (SQLite: traced; PostgreSQL: counted
    at the store's cursor) and the plan of its query (the partial index files_processing_due).
(b) Hashing M local files of S MB: `sha256sum` over the same files in the same run (both from the page
    cache: the files are written first and read once before timing), then the content_hash processor
    through process_container into SQLite; prints both in MB/s and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import BaseModel  # noqa: E402

from file_connector_dagster.engine import sync_container  # noqa: E402
from file_connector_dagster.processing import process_container  # noqa: E402
from file_connector_dagster.processors.builtin import Filter, FilterOptions  # noqa: E402
from file_connector_dagster.processors.content_hash import ContentHash, ContentHashOptions  # noqa: E402
from file_connector_dagster.records import ChangePage, FileRecord, Folder  # noqa: E402
from file_connector_dagster.sources.base import Container, Health, Source  # noqa: E402
from file_connector_dagster.sources.local import LocalDetails, LocalSource  # noqa: E402
from file_connector_dagster.stores.base import Store  # noqa: E402
from file_connector_dagster.stores.sqlite import SQLiteStore  # noqa: E402

ENDPOINT, CONTAINER = "bench", "drive"


class Generated(Source):
    """N files in pages of 1000, always a full listing (like a local folder)."""

    type_name = "generated"

    class Details(BaseModel):
        files: int

    def containers(self) -> list[Container]:
        return [Container(CONTAINER, CONTAINER)]

    def health(self) -> Health:
        return Health(ok=True)

    def sync(self, container: str, cursor: str | None, folders: Mapping[str, Folder]) -> Iterator[ChangePage]:
        base = datetime(2024, 1, 1, tzinfo=timezone.utc)
        total, page = self.details.files, 1000
        for start in range(0, total, page):
            records = [FileRecord(
                external_id=f"01ABCDEF{n:010d}", title=f"report-{n}.{'tmp' if n % 10 == 0 else 'pdf'}",
                path=f"projects/p{n % 100}/docs/report-{n}.{'tmp' if n % 10 == 0 else 'pdf'}", file_link=f"https://x.test/{n}",
                date_created=base, date_updated=base + timedelta(minutes=n), size=1000 + n,
                mime_type="application/pdf", change_key=f"v1-{n}", metadata={"web_url": f"https://x.test/{n}"})
                for n in range(start, min(start + page, total))]
            yield ChangePage(upserts=records, cursor=str(start + page), full_listing=True,
                             starts_listing=start == 0, last=start + page >= total)


def timed(label: str, action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    elapsed = time.perf_counter() - started
    print(f"  {label:<52} {elapsed:8.2f} s", flush=True)
    return elapsed, result


def files_step_phases(store: Store, files: int, count_statements, explain) -> None:
    source = Generated(ENDPOINT, Generated.Details(files=files))
    chain = [Filter(FilterOptions(exclude=["*.tmp"], max_bytes=10_000_000))]
    listing, stats = timed(f"first listing, {files} files, filters decided at commit",
                           lambda: sync_container(source, store, CONTAINER, processors=chain))
    print(f"    decided while listing: {stats.decided}")
    step, result = timed("files step after it", lambda: process_container(store, chain, ENDPOINT, CONTAINER))
    print(f"    files step outcomes: {result.outcomes}")
    relist, stats = timed(f"re-listing, {files} unchanged files",
                          lambda: sync_container(source, store, CONTAINER, full=True, processors=chain))
    assert stats.unchanged == files
    before = count_statements()
    idle, result = timed("files step with nothing to do", lambda: process_container(store, chain, ENDPOINT, CONTAINER))
    statements = count_statements() - before
    assert result.pages == 0
    print(f"    statements the no-work files step ran: {statements}")
    print(f"    its query plan: {explain()}")
    # for comparison: the same listing into another container with nothing decided while listing, so the
    # files step reads every row back and writes every result (what it used to cost)
    other = "drive-undecided"
    plain = Generated(ENDPOINT, Generated.Details(files=files))
    plain.containers = lambda: [Container(other, other)]  # type: ignore[method-assign]
    undecided, _ = timed(f"first listing into another container, nothing decided", lambda: sync_container(
        plain, store, other, processors=None))
    readback, result = timed("files step reading back and saving every row", lambda: process_container(
        store, chain, ENDPOINT, other))
    assert result.outcomes["processed"] + result.outcomes["skipped"] == files
    print(f"  ratios: files step / first listing = {step / listing:.4f} (read back instead: "
          f"{readback / undecided:.2f}); listing with filters / without = {listing / undecided:.2f}; "
          f"no-work files step / unchanged re-listing = {idle / relist:.5f}")


def bench_sqlite(files: int, workdir: Path) -> None:
    print(f"SQLite ({workdir / 'bench.db'})")
    store = SQLiteStore(workdir / "bench.db")
    store.migrate()
    traced = [0]
    store.conn.set_trace_callback(lambda statement: traced.__setitem__(0, traced[0] + 1))
    explain = " / ".join(r[3] for r in store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM files WHERE endpoint=? AND container=? AND processing_status = 'pending' "
        "AND deleted_at IS NULL AND external_id > ? ORDER BY external_id LIMIT ?", (ENDPOINT, CONTAINER, "", 500)))
    files_step_phases(store, files, lambda: traced[0], lambda: explain)
    store.close()


def bench_postgres(files: int, admin_dsn: str) -> None:
    import psycopg2

    from file_connector_dagster.stores.postgres import PostgresStore

    try:
        admin = psycopg2.connect(admin_dsn, connect_timeout=3)
    except psycopg2.Error as exc:
        print(f"PostgreSQL: skipped ({str(exc).strip().splitlines()[0]})")
        return
    admin.autocommit = True
    name = f"fc_bench_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    print(f"PostgreSQL ({name})")
    store = PostgresStore(dsn)
    try:
        store.migrate()

        statements = [0]
        tx = store._tx

        def counting_tx(operation: str):  # every store read or write goes through _tx; count what runs in it
            with tx(operation) as cur:
                execute = cur.execute

                def counted(*args, **kwargs):
                    statements[0] += 1
                    return execute(*args, **kwargs)

                cur.execute = counted
                yield cur

        import contextlib
        store._tx = contextlib.contextmanager(counting_tx)  # type: ignore[method-assign]

        def explain() -> str:
            with store._tx("explain") as cur:
                cur.execute("ANALYZE files")
                cur.execute("EXPLAIN SELECT * FROM files WHERE endpoint = %s AND container = %s AND "
                            "processing_status = 'pending' AND deleted_at IS NULL AND external_id > %s "
                            "ORDER BY external_id LIMIT %s", (ENDPOINT, CONTAINER, "", 500))
                return " / ".join(r["QUERY PLAN"].strip() for r in cur.fetchall())

        files_step_phases(store, files, lambda: statements[0], explain)
    finally:
        store.close()
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def bench_hashing(count: int, megabytes: float, workdir: Path) -> None:
    root = workdir / "hash-share"
    root.mkdir()
    size = int(megabytes * 1024 * 1024)
    for n in range(count):
        (root / f"file-{n:05d}.bin").write_bytes(os.urandom(size))
    total_mb = count * size / 1024 / 1024
    paths = sorted(str(p) for p in root.iterdir())
    print(f"Hashing {count} local files of {megabytes:g} MB ({total_mb:.0f} MB; page cache warm for both)")
    subprocess.run(["cat", *paths], stdout=subprocess.DEVNULL, check=True)  # warm the page cache for both
    if shutil.which("sha256sum"):
        baseline, _ = timed("sha256sum (one process, all files)",
                            lambda: subprocess.run(["sha256sum", *paths], stdout=subprocess.DEVNULL, check=True))
    else:
        baseline = float("nan")
        print("  sha256sum not found")
    store = SQLiteStore(workdir / "hash.db")
    store.migrate()
    source = LocalSource("share", LocalDetails(roots=[str(root)]))
    sync_container(source, store, "hash-share")
    for workers in (1, 2, 4):
        store.requeue("share")
        elapsed, result = timed(f"content_hash, concurrency {workers} (list + hash + save)", lambda: process_container(
            store, [ContentHash(ContentHashOptions(concurrency=workers))], "share", "hash-share", source=source))
        assert result.outcomes["processed"] == count, result.outcomes
        print(f"    {total_mb / elapsed:8.1f} MB/s; sha256sum {total_mb / baseline:8.1f} MB/s; "
              f"ratio ours / sha256sum = {baseline / elapsed:.2f}")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--hash-files", type=int, default=1000)
    parser.add_argument("--hash-mb", type=float, default=1.0)
    parser.add_argument("--dsn", default=os.environ.get("FILE_CONNECTOR_TEST_PG_DSN",
                                                        "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--skip", action="append", default=[], choices=("sqlite", "postgres", "hashing"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fc-processing-bench-") as tmp:
        workdir = Path(tmp)
        if "sqlite" not in args.skip:
            bench_sqlite(args.files, workdir)
        if "postgres" not in args.skip:
            bench_postgres(args.files, args.dsn)
        if "hashing" not in args.skip:
            bench_hashing(args.hash_files, args.hash_mb, workdir)


if __name__ == "__main__":
    main()
