"""What a SharePoint sync costs against merely fetching the Graph pages and against a hand-written pipeline.

One library of N items is served by the HTTPS Graph fake in a process of its own (`python -m tests.fakes.graph`),
so its CPU does not compete with this process's GIL. Measured here, in one process, one phase after another:
  (a) baseline: fetch + JSON-parse every delta page with requests, nothing else;
  (h) a hand-written streaming pipeline into PostgreSQL: a thread fetches and parses pages into a bounded queue,
      the main thread COPYs each page into a temp table and runs one INSERT ... ON CONFLICT (endpoint,
      external_id) DO UPDATE into a table shaped like `files` (paths from a folder dict, same columns);
  (b) our SharePointSource through engine.sync_container into PostgresStore, then into SQLiteStore;
  (c) a no-change re-sync through our code, with a new source (as a scheduled run would start), per store.
PostgreSQL: a scratch database on 127.0.0.1:5432 (user postgres, or $FILE_CONNECTOR_TEST_PG_DSN), created and
dropped. Prints wall time, CPU of this process and of the fake, peak RSS (sampled every 20 ms) above the phase's
start and in absolute terms, and the ratios b/a and b/h. With --rounds N every phase runs N times (fresh database
and store each round) and the round with the median time is shown: other work on the machine makes single runs noisy.

    python benchmarks/sharepoint_bench.py                  # 100,000 items
    python benchmarks/sharepoint_bench.py --rounds 3       # the median of three rounds
    python benchmarks/sharepoint_bench.py --items 1000000  # a few minutes
"""

from __future__ import annotations

import argparse
import json
import os
import queue
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402
import requests  # noqa: E402

from file_connector_dagster.engine import sync_container  # noqa: E402
from file_connector_dagster.sources.http import json_body, tls_session  # noqa: E402
from file_connector_dagster.sources.sharepoint import SharePointDetails, SharePointSource  # noqa: E402
from file_connector_dagster.stores.postgres import PostgresStore  # noqa: E402
from file_connector_dagster.stores.sqlite import SQLiteStore  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
ENDPOINT = "bench"
SECRET_ENV = "FC_BENCH_GRAPH_SECRET"


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    """user + system CPU of a process (the fake's, or our own)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class Fake:
    """The Graph fake in its own process: its connection details, request counters and CPU."""

    def __init__(self, items: int):
        self.process = subprocess.Popen([sys.executable, "-m", "tests.fakes.graph", "--items", str(items), "--port", "0"],
                                         cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            raise SystemExit(f"the Graph fake did not start (exit code {self.process.wait()})")
        self.info: dict[str, Any] = json.loads(line)
        self.session = tls_session(self.info["ca_path"])

    def counts(self) -> dict[str, int]:
        return self.session.get(self.info["counts_url"], timeout=30).json()["counts"]

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def close(self) -> None:
        self.session.close()
        self.process.terminate()
        self.process.wait(timeout=30)


@contextmanager
def measured(results: dict[str, list[dict[str, Any]]], name: str, fake: Fake) -> Iterator[dict[str, Any]]:
    """Wall time, CPU of this process and of the fake, and the highest RSS (sampled every 20 ms)."""
    row: dict[str, Any] = {}
    start_rss, peak = rss_bytes(), [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    counts_before, fake_cpu, own_cpu = fake.counts(), fake.cpu(), cpu_seconds(os.getpid())
    started = time.perf_counter()
    try:
        yield row
    finally:
        row["seconds"] = time.perf_counter() - started
        row["cpu"] = cpu_seconds(os.getpid()) - own_cpu
        row["fake_cpu"] = fake.cpu() - fake_cpu
        stop.set()
        sampler.join()
        peak_rss = max(peak[0], rss_bytes())
        row["rss_growth_mb"] = max(0, peak_rss - start_rss) / 2**20
        row["rss_peak_mb"] = peak_rss / 2**20
        after = fake.counts()
        row["routes"] = {k: after.get(k, 0) - counts_before.get(k, 0)  # type: ignore[assignment]
                         for k in after if after.get(k, 0) != counts_before.get(k, 0)}
        row["requests"] = sum(row["routes"].values())
        results.setdefault(name, []).append(row)
        print(f"  {name}: {row['seconds']:.2f} s, +{row['rss_growth_mb']:.1f} MB RSS")


# -- (a) fetch + parse -------------------------------------------------------------------------------
def graph_session(info: dict[str, Any]) -> requests.Session:
    session = tls_session(info["ca_path"])
    token = session.post(f"{info['base_url']}/{info['tenant']}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": info["client_id"], "client_secret": info["client_secret"],
        "scope": f"{info['base_url']}/.default"}).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def delta_pages(info: dict[str, Any], page_size: int) -> Iterator[list[dict[str, Any]]]:
    session = graph_session(info)
    url: str | None = f"{info['graph_url']}/drives/{info['drive_id']}/root/delta?$top={page_size}"
    while url:
        body = json_body(session.get(url))  # parsed as the source parses its pages
        yield body["value"]
        url = body.get("@odata.nextLink")
    session.close()


def baseline(info: dict[str, Any], page_size: int) -> int:
    return sum(len(page) for page in delta_pages(info, page_size))


# -- (h) the hand-written pipeline -------------------------------------------------------------------
HAND_COLUMNS = ("external_id, title, path, file_link, date_created, date_updated, size, mime_type, change_key, "
                "metadata")
HAND_UPSERT = f"""
INSERT INTO hand_files (endpoint, container, {HAND_COLUMNS}, first_seen_at, updated_at)
SELECT %(endpoint)s, %(container)s, {HAND_COLUMNS}, now(), now() FROM hand_page
ON CONFLICT (endpoint, external_id) DO UPDATE SET title = EXCLUDED.title, path = EXCLUDED.path,
    file_link = EXCLUDED.file_link, date_created = EXCLUDED.date_created, date_updated = EXCLUDED.date_updated,
    size = EXCLUDED.size, mime_type = EXCLUDED.mime_type, change_key = EXCLUDED.change_key,
    metadata = EXCLUDED.metadata, updated_at = EXCLUDED.updated_at, deleted_at = NULL"""


def _copy_text(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def hand_pipeline(info: dict[str, Any], page_size: int, dsn: str) -> int:
    """Prefetch thread -> bounded queue -> per page: COPY into a temp table, one INSERT ... ON CONFLICT, commit."""
    pages: queue.Queue[list[dict[str, Any]] | BaseException | None] = queue.Queue(maxsize=4)

    def fetch() -> None:
        try:
            for page in delta_pages(info, page_size):
                pages.put(page)
            pages.put(None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            pages.put(exc)

    conn = psycopg2.connect(dsn)
    cur = conn.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS hand_files (LIKE files INCLUDING ALL)")
    cur.execute(f"CREATE TEMPORARY TABLE hand_page (external_id TEXT, title TEXT, path TEXT, file_link TEXT, "
                f"date_created TIMESTAMPTZ, date_updated TIMESTAMPTZ, size BIGINT, mime_type TEXT, change_key TEXT, "
                f"metadata JSONB) ON COMMIT DELETE ROWS")
    conn.commit()
    scope = {"endpoint": ENDPOINT, "container": info["drive_id"]}
    folders: dict[str, str] = {}  # folder id -> path ('' for the root)
    files = 0
    threading.Thread(target=fetch, name="hand-prefetch", daemon=True).start()
    while (page := pages.get()) is not None:
        if isinstance(page, BaseException):
            raise page
        lines = []
        for item in page:
            parent = folders.get((item.get("parentReference") or {}).get("id"), "")
            name = item.get("name", "")
            path = f"{parent}/{name}" if parent else name
            if "root" in item:
                folders[item["id"]] = ""
            elif "folder" in item:
                folders[item["id"]] = path
            elif "file" in item:
                meta = {"etag": item.get("eTag"), "ctag": item.get("cTag"), "web_url": item.get("webUrl"),
                        "hashes": item["file"].get("hashes", {}), "drive_id": info["drive_id"],
                        "library": info["library"], "parent_path": parent}
                lines.append("\t".join((
                    item["id"], _copy_text(name), _copy_text(path), _copy_text(item.get("webUrl", "")),
                    item["createdDateTime"], item["lastModifiedDateTime"], str(item.get("size", 0)),
                    item["file"].get("mimeType", ""), _copy_text(item.get("cTag") or item.get("eTag") or ""),
                    _copy_text(json.dumps(meta, ensure_ascii=False)))))
        if lines:
            lines.append("")
            cur.copy_expert(f"COPY hand_page ({HAND_COLUMNS}) FROM STDIN", _StringReader("\n".join(lines)))
            cur.execute(HAND_UPSERT, scope)
            files += len(lines) - 1
        conn.commit()
    conn.close()
    return files


class _StringReader:
    """A file-like str for copy_expert without io.StringIO's copy."""

    def __init__(self, text: str):
        self.text, self.offset = text, 0

    def read(self, size: int = -1) -> str:
        end = len(self.text) if size < 0 else self.offset + size
        chunk, self.offset = self.text[self.offset:end], min(end, len(self.text))
        return chunk

    readline = read


# -- our code --------------------------------------------------------------------------------------
def scratch_database() -> tuple[str, Any]:
    """(dsn of a new database, drop it)."""
    admin_dsn = os.environ.get("FILE_CONNECTOR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"fc_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg2.connect(admin_dsn, connect_timeout=3)
    except psycopg2.Error as exc:
        raise SystemExit(f"PostgreSQL at {admin_dsn} is not reachable ({str(exc).strip().splitlines()[0]}); "
                         "start it (pg_ctlcluster --skip-systemctl-redirect 15 main start) or use --no-postgres")
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()

    return admin_dsn.rsplit("/", 1)[0] + f"/{name}", drop


def source(info: dict[str, Any], page_size: int) -> SharePointSource:
    details = SharePointDetails(
        tenant_id=info["tenant"], client_id=info["client_id"], client_secret="${" + SECRET_ENV + "}",
        drive_id=info["drive_id"], authority_host=info["authority_host"], graph_url=info["graph_url"],
        ca_bundle=info["ca_path"], page_size=page_size,
        requests_per_second=0)  # pacing off: the fake does not throttle, and we measure our own cost
    return SharePointSource(ENDPOINT, details)


def ours(results: dict[str, list[dict[str, Any]]], label: str, store: Any, fake: Fake, page_size: int) -> None:
    info = fake.info
    sharepoint = source(info, page_size)
    with measured(results, f"(b) ours -> {label}", fake) as row:
        stats = sync_container(sharepoint, store, info["drive_id"])
        row["items"] = stats.listed
    sharepoint.close()
    stored = store.count_files(ENDPOINT, info["drive_id"])
    assert stored == info["files"], f"{label} holds {stored} files, the library {info['files']}"
    sharepoint = source(info, page_size)
    with measured(results, f"(c) no-change re-sync -> {label}", fake) as row:
        stats = sync_container(sharepoint, store, info["drive_id"])
        row["items"] = stats.listed
    sharepoint.close()
    assert stats.counts()["added"] == stats.counts()["updated"] == stats.counts()["deleted"] == 0


def report(all_rounds: dict[str, list[dict[str, Any]]], info: dict[str, Any]) -> None:
    results = {name: dict(sorted(rows, key=lambda r: r["seconds"])[len(rows) // 2]) for name, rows in all_rounds.items()}
    for name, rows in all_rounds.items():  # memory: the worst round (later rounds reuse what the first one grew)
        results[name]["rss_growth_mb"] = max(r["rss_growth_mb"] for r in rows)
        results[name]["rss_peak_mb"] = max(r["rss_peak_mb"] for r in rows)
    rounds = max(len(rows) for rows in all_rounds.values())
    if rounds > 1:
        print(f"\nmedian of {rounds} rounds; all times: " + "; ".join(
            f"{name.split(' ')[0]}{' ' + name.split('-> ')[1] if '-> ' in name else ''} "
            + "/".join(f"{r['seconds']:.2f}" for r in rows) for name, rows in all_rounds.items()))
    base = results["(a) fetch+parse pages"]["seconds"]
    hand = results.get("(h) hand pipeline -> postgres", {}).get("seconds")
    print(f"\n{'phase':32} {'seconds':>8} {'items/s':>9} {'requests':>8} {'CPU s':>6} {'fake CPU':>8} "
          f"{'RSS +MB':>8} {'peak MB':>8} {'x (a)':>6} {'x (h)':>6}")
    for name, row in results.items():
        rate = row["items"] / row["seconds"] if row["seconds"] else 0
        vs_hand = f"{row['seconds'] / hand:6.2f}" if hand and not name.startswith(("(a)", "(c)")) else f"{'':6}"
        print(f"{name:32} {row['seconds']:8.2f} {rate:9,.0f} {row['requests']:8,} {row['cpu']:6.1f} "
              f"{row['fake_cpu']:8.1f} {row['rss_growth_mb']:8.1f} {row['rss_peak_mb']:8.1f} "
              f"{row['seconds'] / base:6.2f} {vs_hand}")
    for name, row in results.items():
        if name.startswith("(c)"):
            routes = ", ".join(f"{k} {v}" for k, v in sorted(row["routes"].items()))
            print(f"{name}: {row['requests']} requests ({routes})")
    print(f"\nbaseline (a) {info['items']:,} items in {base:.2f} s; "
          + "; ".join(f"{name.split('-> ')[1]}: b/a {row['seconds'] / base:.2f}"
                      + (f", b/h {row['seconds'] / hand:.2f}" if hand else "")
                      for name, row in results.items() if name.startswith("(b)")))
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def one_round(results: dict[str, list[dict[str, Any]]], fake: Fake, args: argparse.Namespace) -> None:
    """Every phase once, on a new scratch database and a new SQLite file."""
    info = fake.info
    with measured(results, "(a) fetch+parse pages", fake) as row:
        row["items"] = baseline(info, args.page_size)
    if not args.no_postgres:
        dsn, drop = scratch_database()
        try:
            store = PostgresStore(dsn)
            store.migrate()
            with measured(results, "(h) hand pipeline -> postgres", fake) as row:
                row["items"] = hand_pipeline(info, args.page_size, dsn)
            assert row["items"] == info["files"]
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


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="items in the library (root and folders included)")
    parser.add_argument("--page-size", type=int, default=200)
    parser.add_argument("--no-postgres", action="store_true", help="skip (h) and PostgreSQL, measure SQLite only")
    parser.add_argument("--no-sqlite", action="store_true")

    parser.add_argument("--rounds", type=int, default=1, help="run every phase this many times, show the median")
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {}
    fake = Fake(args.items)
    info = fake.info
    os.environ[SECRET_ENV] = info["client_secret"]
    print(f"library of {info['items']:,} items ({info['files']:,} files, {info['folders']:,} folders), pages of "
          f"{args.page_size}, Graph fake in process {fake.process.pid}, {os.cpu_count()} CPUs")
    try:
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}")
            one_round(results, fake, args)
    finally:
        fake.close()
    report(results, info)


if __name__ == "__main__":
    main()
