"""The real scheduler: `dagster-daemon run` on a temporary instance (the repository's dagster.yaml,
run queue and limits included) launches exactly the expected run for a schedule tick: one run (a
partition range) covering every container."""

import os
import shutil
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from file_connector_dagster.stores.sqlite import SQLiteStore

from .servers import script

REPO = Path(__file__).resolve().parent.parent
CONFIG = """
store: {type: sqlite, path: inv.db}
endpoints:
  - name: minutely
    type: local
    endpoint_details: {roots: share, containers: subfolders}
    schedule: "* * * * *"
"""


@pytest.mark.slow
def test_daemon_schedule_tick_launches_exactly_the_expected_run(tmp_path, monkeypatch):
    for name in ("alpha", "beta"):
        (tmp_path / "share" / name).mkdir(parents=True)
        (tmp_path / "share" / name / f"{name}.txt").write_text(name)
    (tmp_path / "connector.yaml").write_text(CONFIG)
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    (tmp_path / "workspace.yaml").write_text(
        f"load_from:\n  - python_module:\n      module_name: file_connector_dagster.definitions\n"
        f"      working_directory: {REPO}\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("FILE_CONNECTOR_CONFIG", str(tmp_path / "connector.yaml"))
    instance = DagsterInstance.get()
    # the containers are known already, so discovery requests nothing and every run is the schedule's
    instance.add_dynamic_partitions("minutely_containers", ["alpha", "beta"])

    daemon = subprocess.Popen([script("dagster-daemon"), "run", "-w", str(tmp_path / "workspace.yaml")],
                              cwd=tmp_path, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "daemon.log", "w"), start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = instance.get_runs(RunsFilter(tags={"dagster/schedule_name": "sync_minutely_schedule"}))
            if runs and all(r.is_finished for r in runs):
                break
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(1)
        else:
            pytest.fail(f"no finished schedule runs in time: {[(r.run_id, r.status) for r in runs]}\n"
                        + (tmp_path / "daemon.log").read_text()[-3000:])
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(30)

    runs = instance.get_runs()
    by_tick: dict[str, list[str]] = defaultdict(list)
    for run in runs:
        assert run.tags.get("dagster/schedule_name") == "sync_minutely_schedule"  # nothing else ran
        endpoint, rest = run.tags["dagster/run_key"].split(":", 1)
        tick, span = rest.rsplit(":", 1)
        assert (endpoint, span) == ("minutely", "alpha..beta")  # both containers in one run (a range)
        assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) == \
            ("alpha", "beta")
        assert run.tags["file_connector/source"] == "local"  # what the queue's per-provider limit keys on
        assert run.status == DagsterRunStatus.SUCCESS, run.run_id
        by_tick[tick].append(span)
    # every tick that fired launched exactly one run for its containers (a second tick may fire meanwhile)
    assert by_tick and all(spans == ["alpha..beta"] for spans in by_tick.values()), by_tick
    store = SQLiteStore(tmp_path / "inv.db")
    try:
        assert {r.path for page in store.iter_files("minutely") for r in page} == {"alpha.txt", "beta.txt"}
    finally:
        store.close()
    instance.dispose()
