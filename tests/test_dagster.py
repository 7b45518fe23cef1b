"""The Dagster layer in process: assets + IO managers into the real SQLite store, sensors,
schedules, the CLI, and a definitions load with 500 endpoints."""

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dagster import (
    AssetKey, DagsterInstance, RunRequest, SensorResult, build_schedule_context, build_sensor_context,
    instance_for_test, materialize,
)

from file_connector_dagster.cli import main as cli_main
from file_connector_dagster.defs import build_definitions
from file_connector_dagster.stores.sqlite import SQLiteStore

from .servers import script

CONFIG = """
store: {type: sqlite, path: inv.db}
endpoints:
  - name: team-share
    type: local
    project_id: p-42
    endpoint_details: {roots: share, containers: subfolders}
    schedule: {cron: "0 7 * * 1-5", timezone: Europe/Berlin}
    processors:
      - {type: glob_filter, exclude: ["*.tmp"]}
      - {type: size_limit, max_bytes: 10}
"""


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "share/alpha/sub").mkdir(parents=True)
    (tmp_path / "share/beta").mkdir()
    (tmp_path / "share/alpha/sub/a.txt").write_text("small")
    (tmp_path / "share/alpha/big.bin").write_bytes(b"x" * 100)
    (tmp_path / "share/alpha/scratch.tmp").write_text("t")
    (tmp_path / "share/beta/ü.txt").write_text("b")
    (tmp_path / "connector.yaml").write_text(CONFIG)
    return tmp_path


def rows(workdir: Path) -> dict[str, object]:
    store = SQLiteStore(workdir / "inv.db")
    try:
        return {r.path: r for page in store.iter_files("team-share") for r in page}
    finally:
        store.close()


def test_materialize_partition_writes_store_and_metadata(workdir):
    defs = build_definitions(workdir / "connector.yaml")
    listing = defs.resolve_assets_def(AssetKey(["team-share", "listing"]))
    files = defs.resolve_assets_def(AssetKey(["team-share", "files"]))
    assert listing.partitions_def.name == "team_share_containers"
    assert listing.group_names_by_key[listing.key] == "team_share"
    assert {"local", "sqlite"} <= set(listing.specs_by_key[listing.key].kinds)
    assert listing.specs_by_key[listing.key].tags["file_connector/source"] == "local"
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("team_share_containers", ["alpha", "beta"])
        result = materialize([listing, files], partition_key="alpha", instance=instance)
        assert result.success
        meta = {e.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()}
        assert {k: meta["listing"][k] for k in ("listed", "added", "unchanged", "deleted", "pages")} == \
            {"listed": 3, "added": 3, "unchanged": 0, "deleted": 0, "pages": 1}
        # the endpoint's processors are filters: decided while the listing committed, nothing left to process
        assert (meta["listing"]["processed_while_listing"], meta["listing"]["skipped_while_listing"]) == (1, 2)
        assert {k: meta["files"][k] for k in ("processed", "skipped", "failed", "error", "pending", "pages")} == \
            dict.fromkeys(("processed", "skipped", "failed", "error", "pending", "pages"), 0)
        stored = rows(workdir)
        store = SQLiteStore(workdir / "inv.db")
        assert [tuple(r) for r in store.conn.execute("SELECT name, type, project_id, details FROM endpoints")] == [
            ("team-share", "local", "p-42", json.dumps({"roots": ["share"], "containers": "subfolders", "include": [],
                                                        "exclude": [], "hash": False, "page_size": 1000}))]
        store.close()
        assert stored["big.bin"].excluded_by == "size_limit" and stored["scratch.tmp"].excluded_by == "glob_filter"
        assert stored["sub/a.txt"].excluded_by is None and stored["sub/a.txt"].project_id == "p-42"

        # second run: nothing changed, so nothing to process
        (workdir / "share/alpha/scratch.tmp").unlink()
        result = materialize([listing, files], partition_key="alpha", instance=instance)
        meta = {e.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()}
        assert (meta["listing"]["unchanged"], meta["listing"]["deleted"]) == (2, 1)
        assert meta["files"]["processed"] == 0 and "processed_while_listing" not in meta["listing"]
        # the UI's per-partition view reads these materializations
        latest = instance.get_latest_materialization_event(AssetKey(["team-share", "listing"]))
        assert latest.dagster_event.partition == "alpha"


def test_discovery_sensor_adds_partitions_once(workdir):
    defs = build_definitions(workdir / "connector.yaml")
    sensor = defs.resolve_sensor_def("discover_team_share")
    assert sensor.minimum_interval_seconds == 300
    with instance_for_test() as instance:
        with build_sensor_context(instance_ref=instance.get_ref(), resources=defs.resources) as context:
            result = sensor(context)
        assert isinstance(result, SensorResult)
        # one run for both new containers (a partition range), not one each
        assert [(r.run_key, r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                for r in result.run_requests] == [("first-sync:team-share:alpha..beta", "alpha", "beta")]
        assert result.dynamic_partitions_requests[0].partition_keys == ["alpha", "beta"]
        instance.add_dynamic_partitions("team_share_containers", ["alpha", "beta"])
        (workdir / "share/gamma").mkdir()
        with build_sensor_context(instance_ref=instance.get_ref(), resources=defs.resources) as context:
            result = sensor(context)
        assert [r.partition_key for r in result.run_requests] == ["gamma"]
        assert json.loads(result.cursor)["containers"] == ["alpha", "beta", "gamma"]


def test_schedule_requests_every_container(workdir):
    defs = build_definitions(workdir / "connector.yaml")
    schedule = defs.resolve_schedule_def("sync_team_share_schedule")
    assert schedule.execution_timezone == "Europe/Berlin" and schedule.cron_schedule == "0 7 * * 1-5"
    assert schedule.job_name == "Sync_team_share"
    with instance_for_test() as instance:
        tick = datetime(2026, 11, 27, 6, 0, tzinfo=timezone.utc)
        skipped = schedule.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()))
        assert not skipped.run_requests and "no containers yet" in skipped.skip_message
        instance.add_dynamic_partitions("team_share_containers", ["alpha", "beta"])
        data = schedule.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()))
        assert [(r.run_key, r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                for r in data.run_requests] == [(f"team-share:{tick.isoformat()}:alpha..beta", "alpha", "beta")]
        # many containers: 25 to a run
        instance.add_dynamic_partitions("team_share_containers", [f"c{i:02}" for i in range(60)])
        data = schedule.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()))
        assert [(r.tags.get("dagster/asset_partition_range_start"), r.tags.get("dagster/asset_partition_range_end"),
                 r.partition_key) for r in data.run_requests] == [
            ("alpha", "c22", None), ("c23", "c47", None), ("c48", "c59", None)]


def test_job_per_endpoint_runs_a_partition(workdir):
    defs = build_definitions(workdir / "connector.yaml")
    job = defs.resolve_job_def("Sync_team_share")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("team_share_containers", ["beta"])
        result = job.execute_in_process(partition_key="beta", instance=instance)
        assert result.success
    assert set(rows(workdir)) == {"ü.txt"}


def test_cli_sync_status_and_failure(workdir, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = str(workdir / "connector.yaml")
    assert cli_main(["sync", "--config", config]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.strip().splitlines()]
    assert lines[0][:13] == ["endpoint", "container", "listed", "added", "updated", "unchanged", "deleted", "errors",
                             "processed", "skipped", "failed", "error", "pending"]
    assert lines[1][:13] == ["team-share", "alpha", "3", "3", "0", "0", "0", "0", "1", "2", "0", "0", "0"]
    assert lines[1][-1] == "ok"
    assert lines[2][:8] == ["team-share", "beta", "1", "1", "0", "0", "0", "0"]

    # after a processor config change: re-queue, and the next sync processes exactly those files
    assert cli_main(["reprocess", "--config", config, "--endpoint", "team-share", "--status", "skipped"]) == 0
    assert "team-share: 2 files with status skipped in all containers queued" in capsys.readouterr().out
    assert cli_main(["sync", "--config", config, "--endpoint", "team-share", "--container", "alpha"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    assert lines[1][:13] == ["team-share", "alpha", "3", "0", "0", "3", "0", "0", "0", "2", "0", "0", "0"]

    (workdir / "share/beta/ü.txt").unlink()
    assert cli_main(["sync", "--config", config, "--endpoint", "team-share", "--container", "beta"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    assert lines[1][:8] == ["team-share", "beta", "0", "0", "0", "0", "1", "0"]

    assert cli_main(["sync", "--config", config, "--full"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    assert lines[1][:8] == ["team-share", "alpha", "3", "0", "0", "3", "0", "0"]

    assert cli_main(["status", "--config", config]) == 0
    status = capsys.readouterr().out
    assert "team-share  beta" in status and "success" in status
    header, alpha = status.splitlines()[:2]
    assert header.split()[11:] == ["live", "files", "pending", "processed", "skipped", "processing", "error", "error"]
    assert alpha.split()[11:] == ["3", "0", "1", "2", "0"]  # live files, then by processing status

    # a container that vanished fails clearly, the others still sync, exit code 1
    os.rename(workdir / "share/alpha", workdir / "share/renamed")
    assert cli_main(["sync", "--config", config, "--endpoint", "team-share", "--container", "alpha"]) == 1
    assert "no container 'alpha'" in capsys.readouterr().err


def test_cli_runs_show_under_the_endpoint_job(workdir, capsys, monkeypatch):
    repo_root = Path(__file__).resolve().parent.parent
    home = workdir / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((repo_root / "dagster.yaml").read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    assert cli_main(["sync", "--config", str(workdir / "connector.yaml"), "--endpoint", "team-share"]) == 0
    with DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert sorted((r.job_name, r.tags.get("dagster/partition")) for r in runs) == [
            ("Sync_team_share", "alpha"), ("Sync_team_share", "beta")]
        assert all(r.tags["file_connector/trigger"] == "cli" for r in runs)


def test_cli_sync_failure_is_one_line_in_the_table(workdir, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    (workdir / "connector.yaml").write_text(CONFIG.replace("type: sqlite, path: inv.db",
                                                           "type: postgres, dsn: 'postgresql://u:${FC_NOPE}@h/db'"))
    monkeypatch.delenv("FC_NOPE", raising=False)
    # the store is opened once before any run: a store that cannot be opened is one line, no table
    assert cli_main(["sync", "--config", str(workdir / "connector.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "error: store.dsn: environment variable FC_NOPE is not set\n"


def test_definitions_with_500_endpoints_load_without_io(tmp_path):
    endpoints = [
        {"name": f"ep-{i:03}", "type": "local", "endpoint_details": {"roots": f"/nonexistent/{i}"},
         "schedule": "0 * * * *", "processors": [{"type": "size_limit", "max_bytes": 1000}]}
        for i in range(500)
    ]
    path = tmp_path / "connector.yaml"
    path.write_text(json.dumps({"store": {"type": "postgres", "dsn": "postgresql://x:${FC_UNSET_PW}@nohost/db"},
                                "endpoints": endpoints}))
    started = time.perf_counter()
    defs = build_definitions(path)  # no store, no source, no secret touched
    repo = defs.get_repository_def()
    elapsed = time.perf_counter() - started
    assert len(repo.assets_defs_by_key) == 1500  # listing, files and report per endpoint
    discovery = [s for s in repo.sensor_defs if s.name.startswith("discover_")]  # plus Dagster's automation sensor
    synced = [s for s in repo.schedule_defs if s.name != "file_connector_checks_schedule"]
    assert len(synced) == 500 and len(discovery) == 500 and len(repo.get_all_jobs()) >= 500
    print(f"500 endpoints: definitions built and resolved in {elapsed:.2f}s")
    assert elapsed < 60  # generous: catches I/O or quadratic work, not a benchmark


def test_workspace_yaml_loads_as_dagster_dev_does(workdir):
    repo_root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "FILE_CONNECTOR_CONFIG": str(workdir / "connector.yaml"), "DAGSTER_HOME": str(workdir)}
    (workdir / "dagster.yaml").write_text((repo_root / "dagster.yaml").read_text())
    proc = subprocess.run([script("dagster"), "definitions", "validate", "-w", "workspace.yaml"], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr


def test_config_errors_fail_once_without_retries(workdir, monkeypatch):
    """The job retries network trouble with backoff, but not a mistake that a retry cannot fix."""
    (workdir / "connector.yaml").write_text(CONFIG.replace("type: sqlite, path: inv.db",
                                                           "type: postgres, dsn: 'postgresql://u:${FC_NOPE}@h/db'"))
    monkeypatch.delenv("FC_NOPE", raising=False)
    defs = build_definitions(workdir / "connector.yaml")
    job = defs.resolve_job_def("Sync_team_share")
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("team_share_containers", ["beta"])
        result = job.execute_in_process(partition_key="beta", instance=instance, raise_on_error=False)
    assert not result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in kinds
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "store.dsn: environment variable FC_NOPE is not set" in failure.step_failure_data.error.message


def test_cli_health_validate_and_migrate(workdir, capsys):
    config = str(workdir / "connector.yaml")
    assert cli_main(["validate", "--config", config]) == 0
    assert "OK, 1 endpoint (1 active), store sqlite" in capsys.readouterr().out
    assert cli_main(["migrate", "--config", config]) == 0
    from file_connector_dagster.stores.migrations import LATEST_VERSION
    assert f"schema at version {LATEST_VERSION}" in capsys.readouterr().out
    assert cli_main(["health", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "store sqlite:" in out and "endpoint team-share: ok" in out
    os.rename(workdir / "share", workdir / "gone")
    assert cli_main(["health", "--config", config]) == 1
    assert "endpoint team-share: FAILING" in capsys.readouterr().out


def test_one_run_over_many_containers_syncs_each_on_its_own(workdir):
    """A single-run backfill (or a schedule tick) covers a partition range in one run; each container keeps
    its own sync log and its own materialization counts, and one failing container does not stop the rest."""
    defs = build_definitions(workdir / "connector.yaml", retries=False)  # a held lease is retryable
    listing = defs.resolve_assets_def(AssetKey(["team-share", "listing"]))
    assert listing.backfill_policy.max_partitions_per_run is None  # single run
    job = defs.resolve_job_def("Sync_team_share")
    (workdir / "share/gamma").mkdir()
    (workdir / "share/gamma/g.txt").write_text("g")
    span = {"dagster/asset_partition_range_start": "alpha", "dagster/asset_partition_range_end": "gamma"}
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("team_share_containers", ["alpha", "beta", "gamma"])
        result = job.execute_in_process(instance=instance, tags=span)
        assert result.success
        listed = {(e.asset_key.path[-1], e.partition): e.materialization.metadata["listed"].value
                  for e in result.get_asset_materialization_events() if "listed" in e.materialization.metadata}
        assert listed == {("listing", "alpha"): 3, ("listing", "beta"): 1, ("listing", "gamma"): 1}
        # the filters decide while the listing commits; the files step has its own entry per container
        decided = {e.partition: e.materialization.metadata["processed_while_listing"].value
                   for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "listing"}
        assert decided == {"alpha": 1, "beta": 1, "gamma": 1}
        files = {e.partition: e.materialization.metadata["pending"].value
                 for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "files"}
        assert files == {"alpha": 0, "beta": 0, "gamma": 0}
        store = SQLiteStore(workdir / "inv.db")
        assert sorted((log.container, log.status) for log in store.latest_syncs()) == [
            ("alpha", "success"), ("beta", "success"), ("gamma", "success")]
        store.close()

        # another machine's sync holds beta: alpha and gamma still sync and show as materialized, the run names beta
        from datetime import timedelta

        store = SQLiteStore(workdir / "inv.db")
        store.take_lease("team-share", "beta", "elsewhere:1", datetime.now(timezone.utc) + timedelta(minutes=30),
                         lambda held: True)
        store.close()
        (workdir / "share/gamma/g2.txt").write_text("g2")
        result = job.execute_in_process(instance=instance, tags=span, raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert "1 of 3 containers failed: beta:" in failure.step_failure_data.error.message
        events = [e.dagster_event for e in instance.all_logs(result.run_id) if e.dagster_event]
        added = {e.partition: e.materialization.metadata["added"].value
                 for e in events if e.event_type_value == "ASSET_MATERIALIZATION"}
        assert added == {"alpha": 0, "gamma": 1}
