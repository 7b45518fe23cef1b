"""`make bench`: what a user runs, `file-connector sync` with a default config, against baselines in the same run.

One SharePoint library of N items is served by the Graph fake in a process of its own. Every row below is one
process, timed from the outside (wall time, CPU, peak RSS from wait4), so the CLI's start-up counts as it does
for a user:

  fetch+parse   stream the delta pages with $top=999 and JSON-parse them, nothing else
  floor         the same stream, each page COPYed into a temp table, one INSERT ... ON CONFLICT into a table
                shaped like `files` (a thread fetches while the main thread writes), one commit a page
  dlt           dlt's `rest_api` source (benchmarks/dlt_graph.py) into the same PostgreSQL: first load, and the
                re-run with nothing changed (dlt keeps no delta link: it lists and merges everything again)
  P1            `file-connector sync`, first sync of the library, into SQLite, PostgreSQL (N) and MongoDB (small N)
  P2            the same command again, nothing changed
  P3            the same command after 1% of the files changed
  P4            loading the Dagster definitions of a connector.yaml with 500 SharePoint endpoints
  P5            peak RSS of each of these processes, at N and at the small N

It writes docs/benchmarks.md (or --out) with the ratios of this one run and the machine's load.

    python benchmarks/run.py                    # N = 100,000; MongoDB and the P5 comparison at 10,000
    python benchmarks/run.py --items 300000
    python benchmarks/run.py --items 1000000    # long
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET_ENV = "FC_BENCH_GRAPH_SECRET"
PAGE = 999
ADMIN_DSN = os.environ.get("FILE_CONNECTOR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


# -- running one process and measuring it --------------------------------------------------------------
@dataclass
class Run:
    name: str
    seconds: float
    cpu: float
    rss_mb: float
    output: str
    extra: dict[str, Any] = field(default_factory=dict)


def run_process(name: str, cmd: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> Run:
    """Run cmd to completion; wall time, user+system CPU and peak RSS (ru_maxrss) of that process alone."""
    with tempfile.TemporaryFile("w+") as out:
        started = time.perf_counter()
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    if process.returncode != 0:
        raise SystemExit(f"{name}: {' '.join(cmd[:3])} ... exited with {process.returncode}:\n{output[-3000:]}")
    run = Run(name, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, output)
    print(f"  {name}: {seconds:.2f} s, CPU {run.cpu:.1f} s, peak RSS {run.rss_mb:.0f} MB", flush=True)
    return run


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "FILE_CONNECTOR_CONFIG")}
    env.update(extra)
    return env


def script(name: str) -> str:
    return str(Path(sys.executable).parent / name)


# -- the Graph fake and the databases ------------------------------------------------------------------
class Fake:
    """`python -m tests.fakes.graph` in its own process."""

    def __init__(self, items: int):
        self.process = subprocess.Popen([sys.executable, "-m", "tests.fakes.graph", "--items", str(items), "--port", "0"],
                                        cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            raise SystemExit(f"the Graph fake did not start (exit code {self.process.wait()})")
        self.info: dict[str, Any] = json.loads(line)

    def edit(self, count: int) -> int:
        import requests

        url = self.info["counts_url"].replace("/counts", f"/edit?count={count}")
        return int(requests.post(url, verify=self.info["ca_path"], timeout=120).json()["edited"])

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class Databases:
    """Scratch PostgreSQL databases, dropped at the end."""

    def __init__(self) -> None:
        import psycopg2

        try:
            self.admin = psycopg2.connect(ADMIN_DSN, connect_timeout=5)
        except psycopg2.Error as exc:
            raise SystemExit(f"PostgreSQL at {ADMIN_DSN} is not reachable ({str(exc).strip().splitlines()[0]}); "
                             "start it or pass --stores sqlite")
        self.admin.autocommit = True
        self.names: list[str] = []

    def create(self) -> str:
        name = f"fc_bench_{uuid.uuid4().hex[:10]}"
        with self.admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return ADMIN_DSN.rsplit("/", 1)[0] + "/" + name

    def close(self) -> None:
        with self.admin.cursor() as cur:
            for name in self.names:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.close()


def start_mongo(tmp: Path) -> tuple[str, Callable[[], None]]:
    """A MongoDB-wire server (secantusd-py, the test extra; or $FILE_CONNECTOR_TEST_MONGO_URI)."""
    if os.environ.get("FILE_CONNECTOR_TEST_MONGO_URI"):
        return os.environ["FILE_CONNECTOR_TEST_MONGO_URI"], lambda: None
    from tests.servers import MongoServer

    server = MongoServer(tmp / "mongo-data").start()
    return server.uri, server.stop


# -- connector.yaml as a user writes it ----------------------------------------------------------------
def sharepoint_endpoint(info: dict[str, Any], name: str = "sharepoint", drive_id: str | None = None) -> str:
    """The required fields only (the fake's hosts and CA aside): every speed setting at its default."""
    target = f"drive_id: '{drive_id}'" if drive_id else f"site_url: {info['site_url']}"
    return f"""  - name: {name}
    type: sharepoint
    endpoint_details:
      tenant_id: {info['tenant']}
      client_id: {info['client_id']}
      client_secret: ${{{SECRET_ENV}}}
      {target}
      authority_host: "{info['authority_host']}"
      graph_url: {info['graph_url']}
      ca_bundle: {info['ca_path']}
"""


def write_config(path: Path, store: str, endpoints: str) -> Path:
    path.write_text(f"store:\n{store}\nendpoints:\n{endpoints}")
    return path


def store_block(kind: str, tmp: Path, dbs: Databases | None, mongo_uri: str | None) -> str:
    if kind == "sqlite":
        return f"  type: sqlite\n  path: {tmp / f'inventory-{uuid.uuid4().hex[:6]}.db'}"
    if kind == "postgres":
        assert dbs is not None
        return f"  type: postgres\n  dsn: \"{dbs.create()}\""
    assert mongo_uri is not None
    return f"  type: mongo\n  uri: \"{mongo_uri}\"\n  database: fc_bench_{uuid.uuid4().hex[:8]}"


def cli_counts(output: str) -> dict[str, str]:
    """The sync summary's one container row as {column: value}."""
    lines = [line for line in output.splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["endpoint", "container"])
    names = lines[header].split()
    values = lines[header + 1].split(maxsplit=len(names) - 1)
    return dict(zip(names, values))


def stored_files(config: Path) -> int:
    from file_connector_dagster.config import load_config
    from file_connector_dagster.stores import open_store

    with open_store(load_config(config)) as store:
        return sum(store.count_files(log.endpoint, log.container) for log in store.latest_syncs())


# -- the phases ----------------------------------------------------------------------------------------
def baselines(fake: Fake, dbs: Databases | None, label: str) -> dict[str, Run]:
    info = json.dumps(fake.info)
    runs = {"fetch": run_process(f"fetch+parse {label}", [sys.executable, __file__, "_fetch", info])}
    if dbs is not None:
        dsn = dbs.create()
        from file_connector_dagster.stores.postgres import PostgresStore

        with PostgresStore(dsn) as store:  # the floor writes into a table shaped like `files`
            store.migrate()
        runs["floor"] = run_process(f"floor {label}", [sys.executable, __file__, "_floor", info, dsn])
        files = json.loads(runs["floor"].output.strip().splitlines()[-1])["files"]
        assert files == fake.info["files"], f"the floor wrote {files} files of {fake.info['files']}"
    return runs


def cli_phases(fake: Fake, kind: str, tmp: Path, dbs: Databases | None, mongo_uri: str | None, label: str,
               changes: bool = True) -> dict[str, Run]:
    config = write_config(tmp / f"connector-{kind}-{label}.yaml", store_block(kind, tmp, dbs, mongo_uri),
                          sharepoint_endpoint(fake.info))
    env = child_env(**{SECRET_ENV: fake.info["client_secret"]})
    cmd = [script("file-connector"), "sync", "--config", str(config)]
    runs = {"P1": run_process(f"P1 first sync -> {kind} {label}", cmd, env)}
    stored = stored_files(config)
    assert stored == fake.info["files"], f"{kind} holds {stored} files, the library {fake.info['files']}"
    if not changes:
        return _with_counts(runs)
    runs["P2"] = run_process(f"P2 no-change re-sync -> {kind} {label}", cmd, env)
    counts = cli_counts(runs["P2"].output)
    assert counts["added"] == counts["updated"] == counts["deleted"] == "0", counts
    edited = fake.edit(max(1, fake.info["files"] // 100))
    runs["P3"] = run_process(f"P3 1% changed ({edited:,} files) -> {kind} {label}", cmd, env)
    counts = cli_counts(runs["P3"].output)
    assert int(counts["updated"]) == edited and counts["added"] == counts["deleted"] == "0", counts
    return _with_counts(runs)


def _with_counts(runs: dict[str, Run]) -> dict[str, Run]:
    for run in runs.values():
        counts = cli_counts(run.output)
        run.extra = {"listed": int(counts["listed"]), "listing_s": float(counts["duration"].rstrip("s"))}
    return runs


def dlt_phases(fake: Fake, dbs: Databases, tmp: Path) -> dict[str, Run]:
    try:
        import dlt  # noqa: F401
    except ImportError:
        print("  dlt: not installed (pip install -e '.[bench]'); skipped")
        return {}
    # dlt wants a password in the DSN even where the server trusts local connections
    dsn = dbs.create().replace("postgresql://postgres@", "postgresql://postgres:trust@")
    env = child_env(REQUESTS_CA_BUNDLE=fake.info["ca_path"], RUNTIME__LOG_LEVEL="WARNING")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "dlt_graph.py"), json.dumps(fake.info), dsn, str(tmp / "dlt")]
    runs = {"first": run_process("dlt rest_api first load", cmd, env),
            "rerun": run_process("dlt rest_api no-change re-run", cmd, env)}
    for run in runs.values():
        result = json.loads(run.output.strip().splitlines()[-1])
        assert not result["failed"] and result["rows"] == fake.info["items"], result
        run.extra = result
    return runs


def definitions_load(tmp: Path, endpoints: int, info: dict[str, Any]) -> Run:
    blocks = "".join(sharepoint_endpoint(info, f"library-{i:03d}", f"b!drive{i:03d}") for i in range(endpoints))
    config = write_config(tmp / "connector-many.yaml", f"  type: sqlite\n  path: {tmp / 'many.db'}", blocks)
    run = run_process(f"P4 definitions load, {endpoints} endpoints", [sys.executable, __file__, "_defs", str(config)],
                      child_env())
    run.extra = json.loads(run.output.strip().splitlines()[-1])
    return run


# -- the baselines' own processes ----------------------------------------------------------------------
def fetch_main(info: dict[str, Any]) -> None:
    from benchmarks.sharepoint_bench import delta_pages

    print(json.dumps({"items": sum(len(page) for page in delta_pages(info, PAGE))}))


def floor_main(info: dict[str, Any], dsn: str) -> None:
    from benchmarks.sharepoint_bench import hand_pipeline

    print(json.dumps({"files": hand_pipeline(info, PAGE, dsn)}))


def defs_main(config: str) -> None:
    """What `dagster dev` / a code server does at load: import, build the Definitions, resolve the repository."""
    started = time.perf_counter()
    import dagster  # noqa: F401

    from file_connector_dagster.defs import build_definitions

    imported, cpu = time.perf_counter(), time.process_time()
    defs = build_definitions(config)
    built = time.perf_counter()
    repository = defs.get_repository_def()
    jobs = len(repository.get_all_jobs())
    resolved = time.perf_counter()
    print(json.dumps({"import_s": imported - started, "build_s": built - imported, "resolve_s": resolved - built,
                      "cpu_s": time.process_time() - cpu, "jobs": jobs}))


# -- the report ----------------------------------------------------------------------------------------
def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def markdown(args: argparse.Namespace, big: dict[str, Any], small: dict[str, Any], p4: Run | None,
             load: tuple[str, str], started: datetime, elapsed: float) -> str:
    n, m = args.items, args.small_items
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python benchmarks/run.py --items {n}`) on {started:%Y-%m-%d %H:%M} UTC, commit "
        f"`{commit or '?'}`, {os.cpu_count()} CPUs, Python {platform.python_version()}; the whole run took "
        f"{elapsed / 60:.1f} min. Every figure below comes from this one run.",
        "",
        f"Machine load (`uptime`) before: `{load[0]}`; after: `{load[1]}`. The machine is shared (2 cores, other "
        "work running), so absolute times are noisy; the ratios between rows of the same run are what count.",
        "",
        "Every row is one process timed from outside (wall time, CPU, peak RSS), so start-up counts as it does for "
        "a user. The library is served by the Graph fake (`python -m tests.fakes.graph`) in a process of its own; "
        "`file-connector sync` runs with a connector.yaml that gives only what a user must (tenant, client, "
        "secret reference, site; plus the fake's hosts and CA): page size, pacing and everything else at their "
        "defaults, no processors, no DAGSTER_HOME (so the CLI makes the sync's engine calls itself, without Dagster; "
        "with DAGSTER_HOME each container is a run of the endpoint's job, about 1.5 s more: `make bench-runs`).",
        "",
    ]

    def table(title: str, items: int, group: dict[str, Any]) -> None:
        base = group.get("fetch")
        floor = group.get("floor")
        out.extend([f"## {title}: {items:,} items", "",
                    "| run | seconds | listing step | vs floor | vs fetch+parse | CPU s | peak RSS MB |",
                    "|---|---|---|---|---|---|---|"])
        for key, label in (("fetch", "fetch+parse ($top=999)"), ("floor", "floor: COPY + INSERT ... ON CONFLICT"),
                           ("dlt_first", "dlt rest_api -> postgres, first load"),
                           ("dlt_rerun", "dlt rest_api -> postgres, no-change re-run")):
            run = group.get(key)
            if run:
                out.append(f"| {label} | {run.seconds:.2f} | | {ratio(run.seconds, floor and floor.seconds)} | "
                           f"{ratio(run.seconds, base and base.seconds)} | {run.cpu:.1f} | {run.rss_mb:.0f} |")
        for store in ("postgres", "sqlite", "mongo"):
            for phase, label in (("P1", "first sync"), ("P2", "no-change re-sync"), ("P3", "1% changed")):
                run = group.get(store, {}).get(phase)
                if run:
                    out.append(f"| {phase} {label} -> {store} | {run.seconds:.2f} | {run.extra['listing_s']:.2f} | "
                               f"{ratio(run.seconds, floor and floor.seconds)} | "
                               f"{ratio(run.seconds, base and base.seconds)} | {run.cpu:.1f} | {run.rss_mb:.0f} |")
        out.append("")

    table("Library of N", n, big)
    if small:
        table("Small library (MongoDB, and P5 against N)", m, small)
    out.extend(["\"listing step\" is the listing asset's own duration as the CLI prints it (fetch, parse, commit); the "
                "rest of a P row is process start-up and the files step.", ""])
    split = []
    for store in ("postgres", "sqlite"):
        runs = big.get(store, {})
        if runs.get("P1") and runs.get("P2"):
            p1, p2 = runs["P1"], runs["P2"]
            rest = p1.seconds - p1.extra["listing_s"] - p2.seconds
            split.append(f"| {store} | {p1.seconds:.1f} | {p1.extra['listing_s']:.1f} "
                         f"({ratio(p1.extra['listing_s'], big['floor'].seconds if big.get('floor') else None)} the floor) | "
                         f"{p2.seconds:.1f} | {rest:.1f} |")
    if split:
        out.extend([f"Where P1's time goes at {n:,} items (P2, a sync with nothing to do, stands for process start-up, "
                    "the store's few queries and two steps with nothing to do):", "",
                    "| store | P1 | listing step | start-up (= P2) | the rest: the files step |",
                    "|---|---|---|---|---|", *split, ""])

    targets: list[tuple[str, str, str]] = []
    pg = big.get("postgres", {})
    floor = big.get("floor")
    if pg.get("P1") and floor:
        r = pg["P1"].seconds / floor.seconds
        limit = 1.3 if n >= 1_000_000 else 1.5  # issue 8: 1.5x at 300k, 1.3x at 1M
        targets.append((f"P1 -> postgres <= {limit}x the floor (the target is {limit}x at "
                        f"{'1M' if limit == 1.3 else '300k'}; here {n:,})", f"{r:.2f}x", "met" if r <= limit else "missed"))
    if pg.get("P1") and big.get("dlt_first"):
        r = big["dlt_first"].seconds / pg["P1"].seconds
        targets.append(("P1 at least 3x faster than dlt's first load", f"{r:.1f}x faster", "met" if r >= 3 else "missed"))
    if pg.get("P2") and big.get("dlt_rerun"):
        r = big["dlt_rerun"].seconds / pg["P2"].seconds
        targets.append(("P2 at least 50x faster than dlt's no-change re-run", f"{r:.1f}x faster",
                        "met" if r >= 50 else "missed"))
    for store in ("postgres", "sqlite"):
        a, b = small.get(store, {}).get("P1"), big.get(store, {}).get("P1")
        if a and b:
            growth = b.rss_mb - a.rss_mb
            targets.append((f"P5 flat in N ({store}: peak RSS at {m:,} -> {n:,} items)",
                            f"{a.rss_mb:.0f} -> {b.rss_mb:.0f} MB ({growth:+.0f} MB)",
                            "met" if growth <= max(20.0, 0.1 * a.rss_mb) else "missed"))
    if p4:
        total = p4.extra["build_s"] + p4.extra["resolve_s"]
        targets.append((f"P4 definitions load < 2 s ({args.endpoints} endpoints: build + resolve, after imports)",
                        f"{total:.2f} s, of it {p4.extra['cpu_s']:.2f} s CPU (imports before it "
                        f"{p4.extra['import_s']:.2f} s, whole process {p4.seconds:.2f} s, {p4.rss_mb:.0f} MB)",
                        "met" if total < 2 else "missed"))
    out.extend(["## Targets (issue 8)", "", "| target | this run | |", "|---|---|---|"])
    out.extend(f"| {t} | {v} | {s} |" for t, v, s in targets)
    out.extend(["", "Reproduce: `make bench` (100k), or `python benchmarks/run.py --items 300000`. PostgreSQL at "
                "127.0.0.1:5432 (user postgres, or `FILE_CONNECTOR_TEST_PG_DSN`); MongoDB: a secantusd-py server the "
                "run starts (test extra) or `FILE_CONNECTOR_TEST_MONGO_URI`; dlt: the `bench` extra.", ""])
    return "\n".join(out)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("_"):  # one baseline's own process
        mode, rest = sys.argv[1], sys.argv[2:]
        {"_fetch": lambda: fetch_main(json.loads(rest[0])), "_floor": lambda: floor_main(json.loads(rest[0]), rest[1]),
         "_defs": lambda: defs_main(rest[0])}[mode]()
        return
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000, help="items in the library (root and folders included)")
    parser.add_argument("--small-items", type=int, default=10_000,
                        help="the small library: MongoDB, and the other stores' P1 for P5 (0: skip)")
    parser.add_argument("--stores", default="postgres,sqlite,mongo")
    parser.add_argument("--endpoints", type=int, default=500, help="endpoints for P4 (0: skip)")
    parser.add_argument("--no-dlt", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    stores = [s for s in args.stores.split(",") if s]
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    load_before = uptime()
    print(f"load: {load_before}")
    big: dict[str, Any] = {}
    small: dict[str, Any] = {}
    p4 = None
    dbs = Databases() if "postgres" in stores or not args.no_dlt else None
    with tempfile.TemporaryDirectory(prefix="fc-bench-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            fake = Fake(args.items)
            try:
                print(f"library of {fake.info['items']:,} items ({fake.info['files']:,} files)")
                big.update(baselines(fake, dbs if "postgres" in stores else None, f"{args.items:,}"))
                if dbs is not None and not args.no_dlt:
                    runs = dlt_phases(fake, dbs, tmp)
                    big.update({f"dlt_{k}": v for k, v in runs.items()})
                for kind in stores:
                    if kind != "mongo":
                        big[kind] = cli_phases(fake, kind, tmp, dbs, None, f"{args.items:,}")
                if args.endpoints:
                    p4 = definitions_load(tmp, args.endpoints, fake.info)
            finally:
                fake.close()
            if args.small_items:
                fake = Fake(args.small_items)
                stop_mongo: Callable[[], None] = lambda: None
                try:
                    print(f"small library of {fake.info['items']:,} items ({fake.info['files']:,} files)")
                    small.update(baselines(fake, dbs if "postgres" in stores else None, f"{args.small_items:,}"))
                    mongo_uri = None
                    if "mongo" in stores:
                        mongo_uri, stop_mongo = start_mongo(tmp)
                    for kind in stores:
                        small[kind] = cli_phases(fake, kind, tmp, dbs, mongo_uri, f"{args.small_items:,}",
                                                 changes=kind == "mongo")
                finally:
                    stop_mongo()
                    fake.close()
        finally:
            if dbs is not None:
                dbs.close()
    text = markdown(args, big, small, p4, (load_before, uptime()), started, time.perf_counter() - clock)
    Path(args.out).write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
