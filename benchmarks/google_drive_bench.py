"""What a Google Drive sync costs against merely fetching and parsing the same Drive pages.

One shared drive of N files is served by the HTTPS Drive fake in a process of its own
(`python -m tests.fakes.drive`), so its CPU does not compete with this process's GIL. Measured in one
process, one phase after another, for each N:
  (a) floor: a token, changes.getStartPageToken, then files.list page by page with the same `q`, `fields`
      and pageSize as the source (folders, then files), each page JSON-parsed with requests; nothing else;
  (b) ours: GoogleDriveSource through engine.sync_container into PostgresStore (a scratch database);
  (c) a no-change re-sync with a new source (as a scheduled run would start): requests made.
Prints wall time, CPU of this process and of the fake, peak RSS above the phase's start (sampled every
20 ms), requests per route, and the ratio b/a. Running two sizes shows whether memory grows with N.

    python benchmarks/google_drive_bench.py                     # 25,000 and 100,000 files
    python benchmarks/google_drive_bench.py --files 100000 --rounds 3
PostgreSQL: 127.0.0.1:5432 as user postgres (or $FILE_CONNECTOR_TEST_PG_DSN); the database is dropped after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

from file_connector_dagster.engine import sync_container  # noqa: E402
from file_connector_dagster.sources.google_drive import FILES_Q, FOLDERS_Q, GoogleDriveSource  # noqa: E402
from file_connector_dagster.sources.google_drive.client import FILE_FIELDS, FOLDER_FIELDS  # noqa: E402
from file_connector_dagster.sources.google_drive.settings import GoogleDriveDetails  # noqa: E402
from file_connector_dagster.sources.http import json_body, tls_session  # noqa: E402
from file_connector_dagster.stores.postgres import PostgresStore  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
ENDPOINT = "bench"
ADMIN_DSN = os.environ.get("FILE_CONNECTOR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Fake:
    """The Drive fake in its own process."""

    def __init__(self, files: int):
        self.process = subprocess.Popen([sys.executable, "-m", "tests.fakes.drive", "--files", str(files)],
                                        cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            raise SystemExit(f"the Drive fake did not start (exit code {self.process.wait()})")
        self.info: dict[str, Any] = json.loads(line)
        self.session = tls_session(self.info["ca_path"])

    def counts(self) -> dict[str, int]:
        return self.session.get(self.info["counts_url"], timeout=30).json()["counts"]

    def close(self) -> None:
        self.session.close()
        self.process.terminate()
        self.process.wait(timeout=30)


@contextmanager
def measured(name: str, fake: Fake) -> Iterator[dict[str, Any]]:
    row: dict[str, Any] = {}
    start_rss, peak = rss_bytes(), [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    before, fake_cpu, own_cpu = fake.counts(), cpu_seconds(fake.process.pid), cpu_seconds(os.getpid())
    started = time.perf_counter()
    try:
        yield row
    finally:
        row["seconds"] = time.perf_counter() - started
        row["cpu"] = cpu_seconds(os.getpid()) - own_cpu
        row["fake_cpu"] = cpu_seconds(fake.process.pid) - fake_cpu
        stop.set()
        sampler.join()
        row["rss_growth_mb"] = max(0, max(peak[0], rss_bytes()) - start_rss) / 2**20
        after = fake.counts()
        row["routes"] = {k: after[k] - before.get(k, 0) for k in after
                         if k != "requests" and after[k] != before.get(k, 0)}
        print(f"  {name}: {row['seconds']:.2f} s, cpu {row['cpu']:.2f} s (fake {row['fake_cpu']:.2f} s), "
              f"+{row['rss_growth_mb']:.1f} MB RSS, requests {row['routes']}", flush=True)


def details(info: dict[str, Any]) -> GoogleDriveDetails:
    return GoogleDriveDetails.model_validate({"service_account_key": info["key_path"], "shared_drives": [info["drive_id"]],
                                              "api_url": info["api_url"], "ca_bundle": info["ca_path"]})


def floor(info: dict[str, Any]) -> int:
    """(a): the same requests the source makes, each page parsed, nothing kept."""
    source = GoogleDriveSource(ENDPOINT, details(info))
    session = tls_session(info["ca_path"])
    session.headers["Authorization"] = f"Bearer {source.auth.token()}"
    drive = {"corpora": "drive", "driveId": info["drive_id"], "includeItemsFromAllDrives": "true",
             "supportsAllDrives": "true", "pageSize": 1000}
    session.get(f"{info['api_url']}/changes/startPageToken",
                params={"driveId": info["drive_id"], "supportsAllDrives": "true"}).json()
    items = 0
    for q, fields in ((FOLDERS_Q, FOLDER_FIELDS), (FILES_Q, FILE_FIELDS)):
        token = None
        while True:
            params = {**drive, "q": q, "fields": f"nextPageToken,incompleteSearch,files({fields})",
                      **({"pageToken": token} if token else {})}
            body = json_body(session.get(f"{info['api_url']}/files", params=params))  # as the source parses
            items += len(body["files"])
            token = body.get("nextPageToken")
            if not token:
                break
    session.close()
    source.close()
    return items


@contextmanager
def scratch_database() -> Iterator[str]:
    name = f"fc_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(ADMIN_DSN)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def run(files: int, rounds: int) -> dict[str, Any]:
    print(f"{files:,} files in one shared drive", flush=True)
    fake = Fake(files)
    try:
        info = fake.info
        results: dict[str, list[dict[str, Any]]] = {"a": [], "b": [], "c": []}
        for _ in range(rounds):
            with measured("(a) fetch + parse", fake) as row:
                row["items"] = floor(info)
            results["a"].append(row)
            with scratch_database() as dsn:
                store = PostgresStore(dsn)
                store.migrate()
                with measured("(b) ours into PostgreSQL", fake) as row:
                    stats = sync_container(GoogleDriveSource(ENDPOINT, details(info)), store, info["drive_id"])
                    row["listed"], row["pages"] = stats.listed, stats.pages
                results["b"].append(row)
                with measured("(c) no-change re-sync", fake) as row:
                    stats = sync_container(GoogleDriveSource(ENDPOINT, details(info)), store, info["drive_id"])
                    row["listed"] = stats.listed
                results["c"].append(row)
                assert store.count_files(ENDPOINT, info["drive_id"]) == files, "not every file was stored"
                store.close()
        median = {k: sorted(v, key=lambda r: r["seconds"])[len(v) // 2] for k, v in results.items()}
        ratio = statistics.median(b["seconds"] / a["seconds"] for a, b in zip(results["a"], results["b"]))
        print(f"  => b/a = {ratio:.2f} (median of {rounds}); no-change re-sync: "
              f"{sum(median['c']['routes'].values())} request(s) {median['c']['routes']}, "
              f"peak RSS growth during (b): {median['b']['rss_growth_mb']:.1f} MB", flush=True)
        return {"files": files, "ratio": ratio, **median}
    finally:
        fake.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", default="25000,100000", help="comma-separated sizes")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    summary = [run(int(n), args.rounds) for n in args.files.split(",")]
    print("\nfiles      (a) s   (b) s   b/a    re-sync requests   RSS growth (b)")
    for row in summary:
        print(f"{row['files']:>9,}  {row['a']['seconds']:6.2f}  {row['b']['seconds']:6.2f}  {row['ratio']:4.2f}   "
              f"{sum(row['c']['routes'].values()):>16}   {row['b']['rss_growth_mb']:8.1f} MB")


if __name__ == "__main__":
    main()
