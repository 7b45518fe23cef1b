"""What an Autodesk (ACC / BIM 360) sync costs against merely fetching and parsing the same pages.

One project of N items in F folders is served by the HTTPS APS fake in a process of its own
(`python -m tests.fakes.aps`), so its CPU does not compete with this process's GIL. Measured here, in one
process, one phase after another:
  (a) the floor: walk the same folder tree with requests (topFolders, then every page of every folder's
      contents, depth first), JSON-parse every page, nothing else;
  (b) our AutodeskSource through engine.sync_container into PostgresStore (a scratch database on
      127.0.0.1:5432, created and dropped), then into SQLiteStore unless --no-sqlite;
  (c) a no-change re-sync through our code, with a new source as a scheduled run would start.
Pacing is off in every phase (the fake does not throttle; we measure our own cost, not APS's limits).
Prints wall time, CPU of this process and of the fake, requests, peak RSS growth, and the ratios b/a and
c/b (requests). With --rounds N every phase runs N times and the median round is shown.

    python benchmarks/autodesk_bench.py                        # 50,000 items in 2,000 folders
    python benchmarks/autodesk_bench.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

from file_connector_dagster.engine import sync_container  # noqa: E402
from file_connector_dagster.sources.autodesk import AutodeskDetails, AutodeskSource  # noqa: E402
from file_connector_dagster.sources.http import tls_session  # noqa: E402
from file_connector_dagster.stores.postgres import PostgresStore  # noqa: E402
from file_connector_dagster.stores.sqlite import SQLiteStore  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
ENDPOINT = "bench"
SECRET_ENV = "FC_BENCH_APS_SECRET"


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Fake:
    """The APS fake in its own process: its connection details, request counters and CPU."""

    def __init__(self, items: int, folders: int):
        self.process = subprocess.Popen([sys.executable, "-m", "tests.fakes.aps", "--items", str(items),
                                         "--folders", str(folders), "--port", "0"],
                                        cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            raise SystemExit(f"the APS fake did not start (exit code {self.process.wait()})")
        self.info: dict[str, Any] = json.loads(line)
        self.session = tls_session(self.info["ca_path"])

    def counts(self) -> dict[str, int]:
        return self.session.get(self.info["counts_url"], timeout=30).json()["counts"]

    def close(self) -> None:
        self.session.close()
        self.process.terminate()
        self.process.wait(timeout=30)


@contextmanager
def measured(results: dict[str, list[dict[str, Any]]], name: str, fake: Fake) -> Iterator[dict[str, Any]]:
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
        row["routes"] = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        row["requests"] = sum(row["routes"].values())
        results.setdefault(name, []).append(row)
        print(f"  {name}: {row['seconds']:.2f} s, {row['requests']:,} requests, +{row['rss_growth_mb']:.1f} MB RSS")


def floor(info: dict[str, Any], page_size: int) -> int:
    """(a): the same requests a full sync makes, each page parsed, nothing kept. Returns the items seen."""
    api = info["api_url"]
    session = tls_session(info["ca_path"])
    token = session.post(f"{api}/authentication/v2/token", auth=(info["client_id"], info["client_secret"]),
                         data={"grant_type": "client_credentials", "scope": "data:read"}).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    project = info["project_id"]
    session.get(f"{api}/project/v1/hubs/{info['hub_id']}/projects/{project}").json()
    stack = [f["id"] for f in session.get(f"{api}/project/v1/hubs/{info['hub_id']}/projects/{project}/topFolders")
             .json()["data"]]
    items = 0
    while stack:
        url: str | None = (f"{api}/data/v1/projects/{project}/folders/{quote(stack.pop(), safe='')}/contents"
                           f"?page%5Blimit%5D={page_size}&includeHidden=true")
        while url:
            body = session.get(url, headers={"x-ads-region": "US"}).json()
            for entry in body["data"]:
                if entry["type"] == "folders":
                    stack.append(entry["id"])
                else:
                    items += 1
            url = (body["links"].get("next") or {}).get("href")
    session.close()
    return items


def scratch_database() -> tuple[str, Any]:
    admin_dsn = os.environ.get("FILE_CONNECTOR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"fc_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg2.connect(admin_dsn, connect_timeout=3)
    except psycopg2.Error as exc:
        raise SystemExit(f"PostgreSQL at {admin_dsn} is not reachable ({str(exc).strip().splitlines()[0]})")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()

    return admin_dsn.rsplit("/", 1)[0] + f"/{name}", drop


def source(info: dict[str, Any], page_size: int) -> AutodeskSource:
    details = AutodeskDetails(client_id=info["client_id"], client_secret="${" + SECRET_ENV + "}", hub=info["hub_id"],
                              api_url=info["api_url"], ca_bundle=info["ca_path"], page_size=page_size,
                              projects_requests_per_minute=0, contents_requests_per_minute=0)
    return AutodeskSource(ENDPOINT, details)


def ours(results: dict[str, list[dict[str, Any]]], label: str, store: Any, fake: Fake, page_size: int) -> None:
    info = fake.info
    acc = source(info, page_size)
    with measured(results, f"(b) ours -> {label}", fake) as row:
        stats = sync_container(acc, store, info["project_id"])
        row["items"] = stats.listed
    acc.close()
    stored = store.count_files(ENDPOINT, info["project_id"])
    assert stored == info["items"], f"{label} holds {stored} files, the project {info['items']}"
    acc = source(info, page_size)
    with measured(results, f"(c) no-change re-sync -> {label}", fake) as row:
        stats = sync_container(acc, store, info["project_id"])
        row["items"] = stats.listed
    acc.close()
    assert stats.added == stats.updated == stats.deleted == 0


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--folders", type=int, default=2_000)
    parser.add_argument("--page-size", type=int, default=200)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    fake = Fake(args.items, args.folders)
    info = fake.info
    os.environ[SECRET_ENV] = info["client_secret"]
    print(f"one project of {info['items']:,} items in {info['folders']:,} folders, pages of {args.page_size}, "
          f"APS fake in process {fake.process.pid}, {os.cpu_count()} CPUs")
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}")
            with measured(results, "(a) fetch+parse pages", fake) as row:
                row["items"] = floor(info, args.page_size)
            dsn, drop = scratch_database()
            try:
                store = PostgresStore(dsn)
                store.migrate()
                ours(results, "postgres", store, fake, args.page_size)
                store.close()
            finally:
                drop()
            if not args.no_sqlite:
                with tempfile.TemporaryDirectory() as tmp:
                    store = SQLiteStore(Path(tmp) / "bench.db")
                    store.migrate()
                    ours(results, "sqlite", store, fake, args.page_size)
                    store.close()
    finally:
        fake.close()
    median = {name: sorted(rows, key=lambda r: r["seconds"])[len(rows) // 2] for name, rows in results.items()}
    if args.rounds > 1:
        print("\nall times: " + "; ".join(f"{name}: " + "/".join(f"{r['seconds']:.2f}" for r in rows)
                                         for name, rows in results.items()))
    base = median["(a) fetch+parse pages"]
    print(f"\n{'phase':34} {'seconds':>8} {'items/s':>9} {'requests':>8} {'CPU s':>6} {'fake CPU':>8} {'RSS +MB':>8} {'x (a)':>6}")
    for name, row in median.items():
        rate = row["items"] / row["seconds"] if row["seconds"] else 0
        print(f"{name:34} {row['seconds']:8.2f} {rate:9,.0f} {row['requests']:8,} {row['cpu']:6.1f} "
              f"{row['fake_cpu']:8.1f} {row['rss_growth_mb']:8.1f} {row['seconds'] / base['seconds']:6.2f}")
    for store_name in ("postgres", "sqlite"):
        first, again = median.get(f"(b) ours -> {store_name}"), median.get(f"(c) no-change re-sync -> {store_name}")
        if first and again:
            print(f"{store_name}: first sync b/a = {first['seconds'] / base['seconds']:.2f} (target <= 1.5); "
                  f"no-change re-sync {again['requests']} requests = {100 * again['requests'] / first['requests']:.2f} % "
                  f"of the first sync's {first['requests']:,} (target <= 5 %); routes {again['routes']}")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
