"""How long Dagster definitions take to load for many endpoints with schedules and sensors.

The code location loads them on every start and reload (`dagster dev`, the daemon, each run's
process when runs are not in-process), so the target is under 2 s for 500 endpoints. Each endpoint
gets a mix of the schedule kinds (cron, business hours, conditional sensors, manual, switched off).

    python benchmarks/definitions_bench.py            # 500 endpoints
    python benchmarks/definitions_bench.py --endpoints 2000

Prints the load time of N endpoints, the same without schedules (the baseline: what the triggers
cost on top), and N/10 endpoints (the ratio shows whether loading grows linearly). The comparisons
use CPU time: on a shared machine wall time mostly measures the other processes. "first" is the
first load of the process (a code server loads once: first-use costs such as entry point scans and
pydantic schemas count there); the best of the rounds is what the target is checked against.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

SCHEDULES = [
    "0 * * * *",
    {"cron": "0 6 * * *", "timezone": "Europe/Berlin"},
    {"type": "business_hours", "timezone": "America/New_York", "start_hour": 8, "end_hour": 18,
     "holidays": ["2026-12-24", "2026-12-25"]},
    {"type": "conditional", "condition": "check_file_count", "file_count_threshold": 100},
    [{"type": "business_hours", "timezone": "Europe/Berlin"},
     {"type": "conditional", "condition": "check_external_trigger", "trigger_file": "drop/READY", "name": "on_drop"}],
    {"type": "manual"},
    {"cron": "*/15 * * * *", "enabled": False},
]


def write_config(folder: Path, endpoints: int, schedules: bool) -> Path:
    items = []
    for i in range(endpoints):
        item = {"name": f"ep-{i:05}", "type": "local", "endpoint_details": {"roots": f"/srv/share/{i}",
                                                                             "containers": "subfolders"},
                "processors": [{"type": "size_limit", "max_bytes": 10 ** 9}]}
        if schedules:
            item["schedule"] = SCHEDULES[i % len(SCHEDULES)]
        items.append(item)
    path = folder / f"connector-{endpoints}-{int(schedules)}.yaml"
    # a PostgreSQL store whose password is not set: loading must touch no store, source or secret
    path.write_text(json.dumps({"store": {"type": "postgres", "dsn": "postgresql://x:${FC_BENCH_UNSET}@nohost/db"},
                                "endpoints": items}))
    return path


def load(path: Path, snapshot: bool = False) -> tuple[float, float, dict[str, int]]:
    from file_connector_dagster.defs import build_definitions

    from dagster._core.remote_representation.external_data import RepositorySnap

    started, cpu = time.perf_counter(), time.process_time()
    defs = build_definitions(path)
    repo = defs.get_repository_def()
    repo.get_all_jobs()  # jobs resolve lazily; a code location resolves them all
    if snapshot:  # what the code server hands to the webserver and the daemon: every job, schedule and sensor
        RepositorySnap.from_def(repo)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    counts = {"assets": len(repo.assets_defs_by_key), "jobs": len(repo.get_all_jobs()),
              "schedules": len(repo.schedule_defs), "sensors": len(repo.sensor_defs)}
    return elapsed, cpu, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many loads")
    args = parser.parse_args()

    import file_connector_dagster.defs  # noqa: F401  (imports are not what is measured)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        n, tenth = args.endpoints, max(1, args.endpoints // 10)
        cases = [("baseline: no schedules", n, False, False),
                 ("with schedules and sensors", n, True, False),
                 (f"a tenth ({tenth}), with schedules", tenth, True, False),
                 ("with schedules, + repository snapshot", n, True, True)]
        results = {}
        for label, endpoints, schedules, snapshot in cases:
            path = write_config(folder, endpoints, schedules)
            times, cpus = [], []
            for _ in range(args.rounds):
                elapsed, cpu, counts = load(path, snapshot)
                times.append(elapsed)
                cpus.append(cpu)
            results[label] = min(cpus)
            print(f"{label:40} {endpoints:5} endpoints {min(cpus):6.2f} s CPU {min(times):6.2f} s wall "
                  f"(best of {args.rounds}; first {cpus[0]:.2f} s CPU; "
                  + ", ".join(f"{v} {k}" for k, v in counts.items()) + ")", flush=True)
    base, full, small, snap = (results[case[0]] for case in cases)
    print(f"schedules and sensors cost {full / base:.2f}x the baseline; {n} endpoints take {full / small:.1f}x the "
          f"CPU of {tenth} (10x is linear); the snapshot adds {snap / full:.2f}x; "
          f"target < 2 s CPU for definitions: {'met' if full < 2 else 'MISSED'}")


if __name__ == "__main__":
    main()
