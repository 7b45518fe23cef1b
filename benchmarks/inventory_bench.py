"""Report and export memory and time on a large inventory: the same work at N and 10x N files, so a
flat peak shows that memory follows the chunk size, not the inventory.

    python benchmarks/inventory_bench.py [--items 100000] [--store sqlite|postgres]

Prints, per size: fill time, report time, export (csv, jsonl) time, each step's peak traced memory, and
the process's peak RSS so far (it only grows: the 10x row shows whether the larger inventory raised it).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from file_connector_dagster.engine import sync_container  # noqa: E402
from file_connector_dagster.inventory import export, summarize  # noqa: E402
from file_connector_dagster.records import ChangePage, FileRecord, Folder  # noqa: E402
from file_connector_dagster.sources.base import Container, Health, Source  # noqa: E402

NOW = datetime(2026, 11, 29, tzinfo=timezone.utc)


class Synthetic(Source):
    type_name = "synthetic"
    Details = None  # type: ignore[assignment]

    def __init__(self, n: int):
        super().__init__("bench", None)  # type: ignore[arg-type]
        self.n = n

    def containers(self) -> list[Container]:
        return [Container("lib", "lib")]

    def health(self) -> Health:
        return Health(ok=True)

    def sync(self, container: str, cursor: str | None, folders: Mapping[str, Folder]) -> Iterator[ChangePage]:
        for start in range(0, self.n, 1000):
            yield ChangePage(upserts=[
                FileRecord(f"id-{i}", f"file-{i}.{('pdf', 'dwg', 'docx')[i % 3]}", f"F{i % 97}/sub/file-{i}",
                           change_key="v1", size=1000 + i, date_updated=NOW - timedelta(days=i % 1500),
                           metadata={"hashes": {"sha1": f"{i:040x}"}})
                for i in range(start, min(start + 1000, self.n))], cursor=str(start), full_listing=True,
                last=start + 1000 >= self.n)


def measure(step) -> tuple[float, float]:
    tracemalloc.start()
    started = time.perf_counter()
    step()
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return elapsed, peak


def open_store(kind: str, folder: Path):
    if kind == "sqlite":
        from file_connector_dagster.stores.sqlite import SQLiteStore

        store = SQLiteStore(folder / "inv.db")
        store.migrate()
        return store, lambda: None
    import psycopg2

    from file_connector_dagster.stores.postgres import PostgresStore

    name = f"fc_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:5432/{name}")
    store.migrate()

    def drop() -> None:
        admin.cursor().execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()

    return store, drop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    print(f"{'files':>9} {'fill s':>8} {'report s':>9} {'report MB':>10} {'csv s':>7} {'csv MB':>7} "
          f"{'jsonl s':>8} {'jsonl MB':>9} {'peak RSS MB':>12}")
    peaks = []
    for n in (args.items // 10, args.items):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            store, drop = open_store(args.store, folder)
            try:
                started = time.perf_counter()
                sync_container(Synthetic(n), store, "lib")
                fill = time.perf_counter() - started
                summary_box = {}
                report = measure(lambda: summary_box.update(s=summarize(store, "bench", now=NOW)))
                assert summary_box["s"].files == n
                csv = measure(lambda: export(store, "bench", "csv", folder / "x.csv"))
                jsonl = measure(lambda: export(store, "bench", "jsonl", folder / "x.jsonl"))
            finally:
                store.close()
                drop()
        peaks.append(max(report[1], csv[1], jsonl[1]))
        print(f"{n:>9,} {fill:>8.1f} {report[0]:>9.1f} {report[1]:>10.1f} {csv[0]:>7.1f} {csv[1]:>7.1f} "
              f"{jsonl[0]:>8.1f} {jsonl[1]:>9.1f} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:>12.0f}")
    print(f"peak traced memory at {args.items:,} files is {peaks[1] / peaks[0]:.2f}x the peak at "
          f"{args.items // 10:,} (flat is ~1x)")


if __name__ == "__main__":
    main()
