"""`file-connector`: validate, sync, status, health and migrate from a terminal.

`sync` syncs each container as the UI's job does: with DAGSTER_HOME set, as a run of the endpoint's job in
that instance; without it, the same engine calls made directly (no Dagster import, nothing to record).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .config import check_environment, config_path, load_config, missing_environment, redact
from .engine import orphaned_endpoints
from .errors import ConfigError, FileConnectorError
from .plugins import PluginManager
from .plugins.manager import sync_event

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130
COUNTS = ("listed", "added", "updated", "unchanged", "deleted", "errors")
# processing outcomes: decided while the listing committed (filters) plus by the files step
OUTCOMES = ("processed", "skipped", "failed", "error", "pending")
STORED_STATUSES = ("pending", "processed", "skipped", "error")  # live files by processing_status (`status`)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _table(headers: Sequence[str], rows: list[Sequence[Any]]) -> str:
    cells = [list(map(str, headers))] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def cmd_validate(args: argparse.Namespace) -> int:
    from .schedules import build_schedule

    config = load_config(args.config)
    label = str(config_path(args.config))
    check_environment(config, label)
    active = config.active_endpoints
    print(f"{label}: OK, {plural(len(config.endpoints), 'endpoint')} ({len(active)} active), "
          f"store {config.store.type}")
    for ep in config.endpoints:
        schedule = "; ".join(build_schedule(ep.name, o).describe() + ("" if o.enabled else " (off)")
                             for o in ep.schedules) or "no schedule"
        procs = ", ".join(p.type for p in ep.processors) or "no processors"
        print(f"  {ep.name}: {ep.type}, {'active' if ep.is_active else 'inactive'}, {schedule}, {procs}")
    for line in missing_environment(config, inactive=True):
        print(f"warning: {label}: {line} (the endpoint is inactive; set it before is_active: true)")
    with PluginManager.from_config(config) as plugins:
        for entry, plugin in plugins.plugins:
            print(f"  plugin {plugin.name}: {entry.type}, on {', '.join(entry.on)}")
        for problem in plugins.problems:
            print(f"{label}: {problem}", file=sys.stderr)
    return EXIT_CONFIG if plugins.problems else EXIT_OK


@dataclass
class _Outcome:
    """One container's sync as the summary table shows it."""

    ok: bool
    listing: dict[str, Any]  # the listing's counts and duration_s ({} when it did not run)
    processing: dict[str, int]  # OUTCOMES: decided while listing plus by the files step ({}: not run)
    error: str | None = None  # one line when not ok
    run_id: str | None = None


class _DirectRuns:
    """Without DAGSTER_HOME: each container's sync is the listing step's and the files step's engine calls
    (engine.commit_changes, processing.commit_processing), made here without Dagster. An ephemeral Dagster
    instance would record nothing that outlives the command, and importing Dagster and building its run
    costs about a second and a half of every sync; the store records the sync (sync_logs) either way."""

    def __init__(self, config: Any, args: argparse.Namespace):
        from .stores import open_store

        self.config, self.args = config, args
        self.store = open_store(config)
        self.registered: set[str] = set()
        self._log = logging.getLogger("file_connector")

    def store_for_plugins(self) -> Any:
        return contextlib.nullcontext(self.store)

    def prepare(self, endpoint: Any, containers: list[str]) -> None:
        from .engine import register_endpoint

        register_endpoint(self.store, endpoint, self.config)  # as the listing step does

    def run(self, endpoint: Any, container: str, source: Any) -> _Outcome:
        from .engine import commit_changes, error_text, open_changes
        from .processing import commit_processing, open_processing
        from .processors.base import build_processors

        def progress(page: Any, stats: Any) -> None:
            if stats.pages % 50 == 0:
                self._log.info("%s/%s: %s pages, %s files", stats.endpoint, stats.container, stats.pages, stats.listed)

        def failed(exc: Exception, listing: dict[str, Any], where: str = "") -> _Outcome:
            # a bug as much as a source or store failure: one line in the table (a traceback with --verbose)
            if self.args.verbose:
                self._log.exception("%s/%s failed", endpoint.name, container)
            return _Outcome(False, listing, {}, where + error_text(exc))

        try:
            guard = endpoint.delete_guard.guard(allow=self.args.allow_mass_delete)
            stats = commit_changes(self.store, open_changes(
                source, container, full=self.args.full, guard=guard, processors=build_processors(endpoint.processors)),
                on_page=progress)
        except Exception as exc:
            return failed(exc, {})
        listing = {**stats.counts(), "duration_s": stats.duration_s}
        try:
            processed = commit_processing(self.store, open_processing(
                self.store, build_processors(endpoint.processors), endpoint.name, container, source,
                logging.getLogger("file_connector.processors")))
        except Exception as exc:
            return failed(exc, listing, f"{endpoint.name}/{container}: ")  # as the files step words it
        outcomes = processed.counts()
        return _Outcome(True, listing, {k: stats.decided.get(k, 0) + outcomes.get(k, 0) for k in OUTCOMES})

    def close(self) -> None:
        self.store.close()


class _DagsterRuns:
    """With DAGSTER_HOME: each container is a run of the endpoint's job in that instance (the one
    `dagster dev` shows), so the UI lists CLI syncs with the others."""

    def __init__(self, path: Any, config: Any, args: argparse.Namespace):
        from dagster import DagsterInstance

        from .defs import build_definitions

        self.args = args
        self.defs = build_definitions(path, retries=False)  # a terminal reports a failure at once
        self.instance = DagsterInstance.get()
        self.log_level = "INFO" if args.verbose else "CRITICAL"  # failures are one line each in the table

    def store_for_plugins(self) -> Any:
        return self.defs.resources["connector"].store()

    def prepare(self, endpoint: Any, containers: list[str]) -> None:
        from .defs.assets import partitions_for

        partitions = partitions_for(endpoint)
        known = set(self.instance.get_dynamic_partitions(partitions.name))
        if new := [c for c in containers if c not in known]:
            self.instance.add_dynamic_partitions(partitions.name, new)

    def run(self, endpoint: Any, container: str, source: Any) -> _Outcome:
        from .defs.assets import files_key, listing_key
        from .defs.notifications import failure_line
        from .defs.triggers import job_name

        job = self.defs.resolve_job_def(job_name(endpoint))  # the UI shows CLI runs under the endpoint's job
        listing_op = self.defs.resolve_assets_def(listing_key(endpoint.name)).op.name
        result = _run_in_thread(lambda: job.execute_in_process(
            partition_key=container, instance=self.instance, raise_on_error=False,
            tags={"file_connector/trigger": "cli"},
            run_config={
                "ops": {listing_op: {"config": {"full": self.args.full,
                                                "allow_mass_delete": self.args.allow_mass_delete}}},
                "loggers": {"console": {"config": {"log_level": self.log_level}}},
            },
        ))
        by_asset = {event.asset_key: {k: v.value for k, v in event.materialization.metadata.items()}
                    for event in result.get_asset_materialization_events()}
        listing = by_asset.get(listing_key(endpoint.name), {})
        processing: dict[str, int] = {}
        if by_asset.get(files_key(endpoint.name)) is not None:
            files = by_asset[files_key(endpoint.name)]
            processing = {k: listing.get(f"{k}_while_listing", 0) + files.get(k, 0) for k in OUTCOMES}
        return _Outcome(result.success, listing, processing,
                        None if result.success else failure_line(result.all_events), result.run_id)

    def close(self) -> None:
        pass


class _Interrupted(Exception):
    def __init__(self, where: str):
        super().__init__(where)
        self.where = where


def _run_in_thread(run: Any) -> Any:
    """run() in a worker thread while this (main) thread keeps SIGINT: Dagster installs its own SIGINT
    handlers only on the main thread, and a KeyboardInterrupt raised inside its code can be swallowed
    (seen: raised in a weakref callback and ignored). Here Ctrl-C sets engine.STOP, the sync stops before
    its next page and the run ends as interrupted."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = run()
        except BaseException as exc:  # re-raised in the main thread
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="file-connector-run", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.1)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def cmd_sync(args: argparse.Namespace) -> int:
    """Ctrl-C stops the whole command: the container being synced is recorded as interrupted (its lease
    released, its cursor at the last committed page), no other container starts, one line, exit 130.
    A second Ctrl-C exits at once (a later sync takes the lease over from the dead process)."""
    from .engine import STOP

    done: list[str] = []
    STOP.clear()

    def on_sigint(signum: int, frame: Any) -> None:
        if STOP.is_set():
            raise KeyboardInterrupt
        STOP.set()

    previous = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    # Start-up (importing Dagster, the definitions, an ephemeral instance) builds a few hundred thousand
    # long-lived objects and next to no garbage: cyclic collections meanwhile are a quarter of its CPU.
    # They resume once the runs are about to start (or when the command ends).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _sync(args, done, gc.enable if collecting else lambda: None)
    except (KeyboardInterrupt, _Interrupted) as exc:
        where = f" during {exc.where}" if isinstance(exc, _Interrupted) and exc.where else ""
        print(f"interrupted{where}: {plural(len(done), 'container')} synced, the rest not started; a re-run "
              "resumes from the last committed page", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if collecting:
            gc.enable()
        STOP.clear()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _sync(args: argparse.Namespace, done: list[str], started_up: Callable[[], None]) -> int:
    from .engine import STOP
    from .sources import build_source

    path = config_path(args.config)
    config = load_config(path)
    endpoints = [config.endpoint(args.endpoint)] if args.endpoint else config.active_endpoints
    if not endpoints:
        print("no active endpoints to sync")
        return EXIT_OK
    from .stores import open_store

    with open_store(config) as store:  # an unreachable or broken store is one line, before any run
        known_containers = {ep.name: store.containers(ep.name) for ep in endpoints}  # those with live files
    if args.verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    runs = _DagsterRuns(path, config, args) if os.environ.get("DAGSTER_HOME") else _DirectRuns(config, args)
    plugins = PluginManager.from_config(config, log=lambda line: print(redact(line), file=sys.stderr)).start()
    started_up()
    rows, failed = [], 0
    try:
        for ep in endpoints:
            if not ep.is_active:
                raise FileConnectorError(f"endpoint {ep.name!r} is inactive (is_active: false)")
            source = build_source(config, ep)
            try:
                failed += _sync_endpoint(args, ep, source, runs, known_containers, plugins, rows, done)
            finally:
                source.close()
    finally:
        runs.close()
    plugins.close()
    print(_table(("endpoint", "container", *COUNTS, *OUTCOMES, "duration", "status"), rows))
    return EXIT_FAILED if failed else EXIT_OK


def _sync_endpoint(args: argparse.Namespace, ep: Any, source: Any, runs: "_DirectRuns | _DagsterRuns",
                   known_containers: dict[str, list[str]], plugins: PluginManager, rows: list, done: list[str]) -> int:
    """Sync the endpoint's containers one after the other, a row each; returns how many failed."""
    from .engine import STOP

    try:
        containers = [c.key for c in source.containers()]
    except FileConnectorError as exc:
        rows.append((ep.name, "-", *["" for _ in COUNTS + OUTCOMES], "", f"failed: {redact(str(exc))}"))
        return 1
    if args.container:
        if args.container not in containers:
            raise FileConnectorError(f"endpoint {ep.name!r} has no container {args.container!r}; "
                                     f"containers: {', '.join(containers) or 'none'}")
        containers = [args.container]
    else:  # containers gone from the source but still holding live files: their sync tombstones them
        containers += [c for c in known_containers.get(ep.name, []) if c not in containers]
    runs.prepare(ep, containers)
    failed = 0
    for container in containers:
        if STOP.is_set():
            raise _Interrupted("")
        outcome = runs.run(ep, container, source)
        if outcome.ok:
            done.append(f"{ep.name}/{container}")
        if STOP.is_set():
            raise _Interrupted("" if outcome.ok else f"{ep.name}/{container}")
        if outcome.ok:
            errors = outcome.processing.get("failed", 0) + outcome.processing.get("error", 0)
            status = f"ok ({plural(errors, 'file')} failed processing)" if errors else "ok"
        else:
            failed += 1
            status = f"failed: {redact(outcome.error or 'the sync failed')}"
        listing = outcome.listing
        rows.append((ep.name, container, *[listing.get(k, "") for k in COUNTS],
                     *[outcome.processing.get(k, "") for k in OUTCOMES],
                     f"{listing['duration_s']:.2f}s" if "duration_s" in listing else "", status))
        if plugins.plugins:
            with runs.store_for_plugins() as store:
                event = sync_event(store, ep.name, container, "success" if outcome.ok else "failure",
                                   error=outcome.error, run_id=outcome.run_id)
            for result in plugins.dispatch(event):
                if not result.ok:
                    print(result.detail, file=sys.stderr)
    return failed


def cmd_status(args: argparse.Namespace) -> int:
    from .stores import open_store

    config = load_config(args.config)
    with open_store(config) as store:
        logs = store.latest_syncs()
        rows = []
        processing: dict[str, dict[str, dict[str, int]]] = {}  # endpoint -> container -> status -> live files
        for log in logs:
            if args.endpoint and log.endpoint != args.endpoint:
                continue
            if log.endpoint not in processing:  # one grouped query per endpoint
                processing[log.endpoint] = store.processing_counts_by_container(log.endpoint)
            by_status = processing[log.endpoint].get(log.container, {})
            rows.append((log.endpoint, log.container, log.status, log.started.strftime("%Y-%m-%d %H:%M:%S"),
                         *[log.counts.get(k, 0) for k in COUNTS], sum(by_status.values()),
                         *[by_status.get(k, 0) for k in STORED_STATUSES], redact(log.error or "")))
        orphaned = set(orphaned_endpoints(store, config))
        orphans = [(name, live) for name in sorted(orphaned) if not args.endpoint or name == args.endpoint
                   if (live := store.count_files(name))]
    rows = [(*row[:2], "orphaned" if row[0] in orphaned else row[2], *row[3:]) for row in rows]
    if not rows and not orphans:
        print(f"no syncs recorded yet in {config.store.type} store")
        return EXIT_OK
    if rows:
        print(_table(("endpoint", "container", "status", "started (UTC)", *COUNTS, "live files",
                      *STORED_STATUSES[:-1], "processing error", "error"), rows))
    for name, live in orphans:
        print(f"endpoint {name!r} is orphaned (not in connector.yaml any more): {live} live files; "
              f"`file-connector prune --endpoint {name}` tombstones them")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from .stores import open_store
    from .stores.protocol import prune_endpoint

    config = load_config(args.config)
    if any(ep.name == args.endpoint for ep in config.endpoints):
        raise ConfigError(f"endpoint {args.endpoint!r} is still in connector.yaml; prune is for endpoints it "
                          "no longer lists (set is_active: false to stop syncing one)")
    with open_store(config) as store:
        if args.endpoint not in orphaned_endpoints(store, config):
            raise FileConnectorError(f"{store.label}: no endpoint named {args.endpoint!r} in the store")
        pruned = prune_endpoint(store, args.endpoint, config.delete_guard.guard(allow=args.allow_mass_delete))
        print(f"endpoint {args.endpoint!r}: {pruned} files tombstoned; {store.count_files(args.endpoint)} live")
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    from .sources import build_source
    from .stores import open_store

    config = load_config(args.config)
    ok = True
    try:
        with open_store(config) as store:
            print(f"store {store.label}: ok")
    except FileConnectorError as exc:
        ok = False
        print(f"store: {redact(str(exc))}")
    endpoints = [config.endpoint(args.endpoint)] if args.endpoint else config.active_endpoints
    for ep in endpoints:
        try:
            source = build_source(config, ep)
            health = source.health()
            source.close()
        except FileConnectorError as exc:
            ok = False
            print(f"endpoint {ep.name}: {redact(str(exc))}")
            continue
        ok = ok and health.ok
        print(f"endpoint {ep.name}: {'ok' if health.ok else 'FAILING'}")
        for check, result in health.checks.items():
            print(f"  {check}: {redact(result)}")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_reprocess(args: argparse.Namespace) -> int:
    from .stores import open_store

    config = load_config(args.config)
    endpoint = config.endpoint(args.endpoint)
    with open_store(config) as store:
        queued = store.requeue(endpoint.name, args.container, args.status or None)
    where = f"container {args.container!r}" if args.container else "all containers"
    which = f" with status {', '.join(args.status)}" if args.status else ""
    print(f"endpoint {endpoint.name}: {queued} files{which} in {where} queued for processing; the next sync "
          f"processes them (file-connector sync --endpoint {endpoint.name})")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from .stores import open_store

    config = load_config(args.config)
    with open_store(config, migrate=False) as store:
        version = store.migrate()
        print(f"{store.label}: schema at version {version}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .inventory import export
    from .stores import open_store

    config = load_config(args.config)
    endpoint = config.endpoint(args.endpoint).name
    with open_store(config) as store:
        written = export(store, endpoint, args.format, args.out, include_deleted=args.include_deleted)
    print(f"{args.out}: {plural(written, 'file')} of endpoint {endpoint} ({args.format})")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS,
                        help="connector.yaml (default: $FILE_CONNECTOR_CONFIG, ./connector.yaml, the example)")
    parser = argparse.ArgumentParser(prog="file-connector", parents=[common],
                                     description="Keep an inventory of files from SharePoint, Drive, ACC and folders.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("validate", parents=[common], help="check connector.yaml offline").set_defaults(func=cmd_validate)
    sync = sub.add_parser("sync", parents=[common], help="sync endpoints now (the same assets the UI runs)")
    sync.add_argument("--endpoint", help="only this endpoint")
    sync.add_argument("--container", help="only this container (needs --endpoint when several are active)")
    sync.add_argument("--full", action="store_true", help="list everything again instead of a delta")
    sync.add_argument("--allow-mass-delete", action="store_true",
                      help="let this sync tombstone more than the delete_guard allows (files really gone)")
    sync.add_argument("--verbose", "-v", action="store_true", help="show the run's log (progress, processors, Dagster's with DAGSTER_HOME)")
    sync.set_defaults(func=cmd_sync)
    status = sub.add_parser("status", parents=[common], help="last sync per endpoint and container")
    status.add_argument("--endpoint")
    status.set_defaults(func=cmd_status)
    health = sub.add_parser("health", parents=[common], help="check credentials and reachability")
    health.add_argument("--endpoint")
    health.set_defaults(func=cmd_health)
    reprocess = sub.add_parser("reprocess", parents=[common],
                               help="queue files for processing again (after a processor's options changed)")
    reprocess.add_argument("--endpoint", required=True)
    reprocess.add_argument("--container", help="only this container")
    reprocess.add_argument("--status", action="append", choices=("processed", "skipped", "error", "pending"),
                           help="only files in this processing status (repeatable; default: all)")
    reprocess.set_defaults(func=cmd_reprocess)
    prune = sub.add_parser("prune", parents=[common],
                           help="tombstone the files of an endpoint removed from connector.yaml")
    prune.add_argument("--endpoint", required=True)
    prune.add_argument("--allow-mass-delete", action="store_true",
                       help="needed when a container would lose more than the delete_guard allows")
    prune.set_defaults(func=cmd_prune)
    sub.add_parser("migrate", parents=[common], help="apply pending store migrations").set_defaults(func=cmd_migrate)
    export = sub.add_parser("export", parents=[common], help="stream an endpoint's inventory to a file")
    export.add_argument("--endpoint", required=True)
    export.add_argument("--format", choices=("csv", "parquet", "jsonl"), default="csv")
    export.add_argument("--include-deleted", action="store_true", help="tombstones too (deleted_at set)")
    export.add_argument("--out", required=True, help="the file to write")
    export.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.config = getattr(args, "config", None)
    try:
        return args.func(args)
    except FileConnectorError as exc:
        for line in redact(str(exc)).splitlines():  # one line per problem
            print(f"error: {line}", file=sys.stderr)
        return EXIT_CONFIG if exc.__class__.__name__ == "ConfigError" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
