"""What a sync costs when Dagster's daemon runs it, next to the CLI syncing the same container.

    python benchmarks/run_overhead.py [--containers 8] [--files 3]

Builds a temporary folder tree (N containers of a few files), a temporary DAGSTER_HOME (SQLite instance
storage, queued run coordinator polled every second) and starts `dagster-daemon` on it. Then prints:
  (a) the CLI: `file-connector sync --endpoint bench --container c00` as a whole process, wall time;
  (b) the same container as a run of `Sync_bench` submitted to the queue and launched by the daemon:
      queued -> started (daemon pick-up, run worker process start-up and code load) and
      started -> finished (the steps, in process), wall time;
  (c) all N containers at once as one single-run backfill (one run over the partition range), against
  (d) the same N containers as one run each (what a tick cost before the single-run policy),
with b - a (target: within ~3 s) and the run workers each of (c) and (d) needed.
Each run re-syncs unchanged containers, so the figures are overhead, not listing work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(sys.executable).parent

INSTANCE = """\
storage:
  sqlite:
    base_dir:
      env: DAGSTER_HOME
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
telemetry:
  enabled: false
"""


def wait_for(instance, run_ids: list[str], timeout_s: float = 600) -> list:
    from dagster import DagsterRunStatus

    done = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = [instance.get_run_record_by_id(run_id) for run_id in run_ids]
        if all(r.dagster_run.status in done for r in records):
            bad = [r.dagster_run.run_id for r in records if r.dagster_run.status != DagsterRunStatus.SUCCESS]
            assert not bad, f"runs failed: {bad} (see `dagster debug export` or the UI)"
            return records
        time.sleep(0.2)
    raise TimeoutError(f"runs not finished after {timeout_s}s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--containers", type=int, default=8)
    parser.add_argument("--files", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fc_run_overhead_"))
    home = work / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE)  # no run limit: (d) starts its run workers at once
    names = [f"c{i:02}" for i in range(args.containers)]
    for name in names:
        (work / "share" / name).mkdir(parents=True)
        for j in range(args.files):
            (work / "share" / name / f"doc{j}.txt").write_text(f"{name} {j}\n")
    (work / "connector.yaml").write_text(json.dumps({
        "store": {"type": "sqlite", "path": "inv.db"},
        "endpoints": [{"name": "bench", "type": "local", "endpoint_details": {"roots": "share", "containers": "subfolders"}}],
    }))
    env = {**os.environ, "DAGSTER_HOME": str(home), "FILE_CONNECTOR_CONFIG": str(work / "connector.yaml")}
    os.environ.update(DAGSTER_HOME=str(home), FILE_CONNECTOR_CONFIG=str(work / "connector.yaml"))

    # the first CLI sync adds the partitions and does the listing work once
    subprocess.run([str(SCRIPTS / "file-connector"), "sync"], cwd=REPO, env=env, check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run([str(SCRIPTS / "file-connector"), "sync", "--endpoint", "bench", "--container", names[0]],
                   cwd=REPO, env=env, check=True, capture_output=True)
    cli_s = time.perf_counter() - started

    daemon = subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", "-w", "workspace.yaml"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=(work / "daemon.log").open("w"))
    try:
        from dagster import DagsterInstance
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import WorkspaceFileTarget

        instance = DagsterInstance.get()
        with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(REPO / "workspace.yaml")])) as process:
            context = process.create_request_context()
            location = context.get_code_location(next(iter(context.get_code_location_entries())))
            repo = next(iter(location.get_repositories().values()))
            remote_job = repo.get_full_job("Sync_bench")

            def queue(tags: dict[str, str]) -> str:
                """Create and submit a run as `dagster job launch` does; the daemon dequeues and launches it."""
                from dagster._cli.job import _create_run

                run = _create_run(instance=instance, code_location=location, remote_repo=repo, remote_job=remote_job,
                                  run_config={}, tags=tags, op_selection=None, run_id=None)
                instance.submit_run(run.run_id, context)
                return run.run_id

            # (b) one container through the daemon; the first run also warms the daemon's code server
            wait_for(instance, [queue({"dagster/partition": names[0]})])
            record = wait_for(instance, [queue({"dagster/partition": names[0]})])[0]
            pickup = record.start_time - record.create_timestamp.timestamp()
            worker = record.end_time - record.start_time
            run_s = record.end_time - record.create_timestamp.timestamp()

            # (c) all containers in one run over the partition range
            t0 = time.time()
            ranged = wait_for(instance, [queue({"dagster/asset_partition_range_start": names[0],
                                                "dagster/asset_partition_range_end": names[-1]})])
            range_s = max(r.end_time for r in ranged) - t0
            materialized = instance.get_materialized_partitions(
                __import__("dagster").AssetKey(["bench", "listing"]))
            assert set(names) <= materialized

            # (d) one run per container
            t0 = time.time()
            each = wait_for(instance, [queue({"dagster/partition": name}) for name in names])
            each_s = max(r.end_time for r in each) - t0
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)

    print(f"(a) CLI sync of one container ({args.files} files), whole process: {cli_s:6.2f} s")
    print(f"(b) the same as a daemon-launched run:                 {run_s:6.2f} s "
          f"(queued -> started {pickup:.2f} s: daemon pick-up and run worker start-up; started -> done {worker:.2f} s)   b - a = {run_s - cli_s:+.2f} s")
    print(f"(c) {args.containers} containers, one single-run backfill run:      {range_s:6.2f} s, 1 run worker")
    print(f"(d) {args.containers} containers, one run each:                     {each_s:6.2f} s, "
          f"{len(each)} run workers   d / c = {each_s / range_s:.1f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
