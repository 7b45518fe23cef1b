"""Asset checks going red for the right reason, and the inventory report, through real Dagster runs."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from dagster import AssetCheckKey, instance_for_test, materialize

from file_connector_dagster import checks
from file_connector_dagster.config import load_config, parse_config
from file_connector_dagster.defs import build_definitions
from file_connector_dagster.defs.assets import files_key, listing_key
from file_connector_dagster.defs.report import report_key
from file_connector_dagster.defs.triggers import job_name
from file_connector_dagster.errors import ConfigError
from file_connector_dagster.records import SyncLog

NOW = datetime(2026, 11, 29, 12, tzinfo=timezone.utc)

CONFIG = """
store: {type: sqlite, path: inv.db}
reports_dir: out/reports
endpoints:
  - name: team-share
    type: local
    endpoint_details: {roots: share, containers: subfolders}
    schedule: "*/30 * * * *"
    checks: {max_error_rate: 0.2}
"""


def log(container, status, age_h, listed=10, errors=0):
    started = NOW - timedelta(hours=age_h)
    return SyncLog("ep", container, started, started + timedelta(seconds=5), status,
                   {"listed": listed, "errors": errors}, None if status == "success" else "boom")


def test_freshness_and_error_rate_rules():
    logs = {"a": [log("a", "failed", 1), log("a", "success", 3)], "b": [log("b", "success", 0.5, 8, 2)]}
    out = checks.freshness(logs, ["a", "b", "c"], timedelta(hours=2), now=NOW)
    assert not out.passed and set(out.failing) == {"a", "c"}
    assert out.failing["c"] == "never synced successfully"
    assert out.failing["a"].startswith("last successful sync 3h ago (2026-11-29T09:00:05+00:00), older than 2h")
    assert out.description == "1 of 3 containers synced within 2h"
    rate = checks.error_rate(logs, ["a", "b", "c"], 0.1)
    assert rate.failing == {"b": "2 of 10 files could not be listed (20.0% > 10.0%)"}
    assert checks.error_rate(logs, ["a", "b"], 0.25).passed
    processing = checks.processing_error_rate({"a": {"processed": 95, "error": 5}, "b": {"processed": 10}}, 0.01)
    assert processing.failing == {"a": "5 of 100 files failed processing (5.0% > 1.0%)"}


def test_consistency_rule_compares_with_the_last_complete_full_listing():
    def synced(status, full=False, seen=None, **counts):
        entry = log("a", status, 1, listed=counts.pop("listed", 10))
        entry.counts.update(counts)
        entry.full_listing, entry.seen, entry.sync_id = full, seen, 7
        return entry

    listing = synced("success", full=True, seen=10, added=10)
    quiet = synced("success")  # a delta that found no change
    live = {"a": (10, 10)}
    assert checks.consistency({"a": [quiet, listing]}, live, ["a"]).description == \
        "1 of 1 containers consistent (1 compared with their last complete full listing)"
    out = checks.consistency({"a": [quiet, listing]}, {"a": (12, 12)}, ["a"])
    assert out.failing == {"a": "2 phantom rows: 12 live rows, but the full listing of 2026-11-29T11:00:05+00:00 "
                                "(sync 7) saw 10 files"}
    assert checks.consistency({"a": [listing]}, {"a": (8, 8)}, ["a"]).passed  # moved to another container since
    # an incremental sync that changed rows since, a running one, or none at all: only duplicates are checked
    for logs in ([synced("success", added=2), listing], [synced("running"), listing], []):
        assert checks.consistency({"a": logs}, {"a": (12, 12)}, ["a"]).description == \
            "1 of 1 containers consistent (0 compared with their last complete full listing)"
    assert checks.consistency({}, {"a": (12, 11)}, ["a"]).failing == \
        {"a": "1 duplicate rows: 12 live rows hold 11 distinct external ids"}


def test_durations_and_schedule_intervals():
    assert checks.parse_duration("90m") == timedelta(minutes=90) and checks.parse_duration(30) == timedelta(seconds=30)
    assert checks.parse_duration("1.5d") == timedelta(hours=36)
    with pytest.raises(ValueError, match="'soon' is not a duration"):
        checks.parse_duration("soon")
    def schedules(value):
        return parse_config({"endpoints": [{"name": "x", "type": "local", "endpoint_details": {"roots": "."},
                                            "schedule": value}]}).endpoints[0].schedule

    assert checks.schedule_interval(schedules("0 * * * *")) == timedelta(hours=1)
    assert checks.schedule_interval(schedules("0 7 * * 1-5")) == timedelta(days=3)  # Fri -> Mon
    assert checks.schedule_interval(schedules({"type": "business_hours", "start_hour": 8, "end_hour": 18})) == \
        timedelta(days=2, hours=14)  # Friday 18:00 -> Monday 08:00
    assert checks.schedule_interval(schedules([{"type": "manual"}, {"cron": "0 6 * * *", "enabled": False}])) is None
    with pytest.raises(ConfigError, match="endpoint 'x': checks.max_age: 'never' is not a duration"):
        parse_config({"endpoints": [{"name": "x", "type": "local", "endpoint_details": {"roots": "."},
                                     "checks": {"max_age": "never"}}]})


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "share/alpha/Level 1").mkdir(parents=True)
    (tmp_path / "share/beta").mkdir()
    (tmp_path / "share/alpha/Level 1/a.pdf").write_bytes(b"x" * 300)
    (tmp_path / "share/alpha/b.dwg").write_bytes(b"y" * 100)
    (tmp_path / "share/beta/c.pdf").write_bytes(b"z" * 50)
    (tmp_path / "connector.yaml").write_text(CONFIG)
    return tmp_path


def evaluations(result) -> dict[str, object]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_checks_go_red_for_the_right_container(workdir):
    defs = build_definitions(workdir / "connector.yaml", retries=False)
    job = defs.resolve_job_def(job_name(load_config(workdir / "connector.yaml").endpoint("team-share")))
    checks_job = defs.resolve_job_def("file_connector_checks")
    assert defs.resolve_schedule_def("file_connector_checks_schedule").cron_schedule == "*/15 * * * *"
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("team_share_containers", ["alpha", "beta"])
        assert job.execute_in_process(instance=instance, partition_key="alpha").success
        found = evaluations(checks_job.execute_in_process(instance=instance))
        assert set(found) == {"freshness", "listing_errors", "processing_errors", "consistency"}
        assert found["processing_errors"].passed
        fresh = found["freshness"]
        assert not fresh.passed and fresh.asset_key == listing_key("team-share")
        assert fresh.description == "1 of 2 containers synced within 1h; e.g. beta: never synced successfully"
        assert fresh.metadata["max_age_s"].value == 3600  # twice the 30-minute schedule
        assert found["listing_errors"].passed

        assert job.execute_in_process(instance=instance, partition_key="beta").success
        found = evaluations(checks_job.execute_in_process(instance=instance))
        assert found["freshness"].passed and found["processing_errors"].passed
        assert found["consistency"].passed and found["consistency"].asset_key == listing_key("team-share")
        assert found["consistency"].description == "2 of 2 containers consistent (2 compared with their last " \
                                                   "complete full listing)"

        # a row nobody listed, written behind the connector's back; and a file of beta that failed processing
        with sqlite3.connect(workdir / "inv.db") as db:
            columns = [c[1] for c in db.execute("PRAGMA table_info(files)")]
            db.execute(f"INSERT INTO files ({','.join(columns)}) SELECT "
                       f"{','.join('external_id || ' + repr('-phantom') if c == 'external_id' else c for c in columns)} "
                       f"FROM files WHERE container = 'alpha' LIMIT 1")
            db.execute("UPDATE files SET processing_status = 'error', processing_errors = '[\"hash: boom\"]' "
                       "WHERE container = 'beta'")
        found = evaluations(checks_job.execute_in_process(instance=instance))
        consistency, processing = found["consistency"], found["processing_errors"]
        assert not consistency.passed and consistency.metadata["failing_containers"].value == 1
        assert "| `alpha` | 1 phantom rows: 3 live rows, but the full listing of " in consistency.metadata["failing"].value
        assert consistency.description.startswith("1 of 2 containers consistent (2 compared with their last complete "
                                                  "full listing); e.g. alpha: 1 phantom rows: 3 live rows")
        assert not processing.passed and processing.asset_key == files_key("team-share")
        assert processing.description == ("1 of 2 containers under 20.0% processing errors; e.g. beta: 1 of 1 files "
                                          "failed processing (100.0% > 20.0%)")
        assert found["freshness"].passed and found["listing_errors"].passed
        check_key = AssetCheckKey(listing_key("team-share"), "freshness")
        assert instance.event_log_storage.get_latest_asset_check_execution_by_key([check_key])[check_key].status.value \
            == "SUCCEEDED"


def test_many_endpoints_share_a_few_check_ops_and_every_check_runs(tmp_path):
    """55 endpoints: their checks come from two multi-asset checks (50 endpoints, then 5), both in the checks job."""
    names = [f"share-{i:03}" for i in range(55)]
    (tmp_path / "connector.yaml").write_text("store: {type: sqlite, path: inv.db}\nendpoints:\n" + "".join(
        f"  - {{name: {n}, type: local, endpoint_details: {{roots: {n}}}}}\n" for n in names))
    defs = build_definitions(tmp_path / "connector.yaml", retries=False)
    checks_job = defs.resolve_job_def("file_connector_checks")
    assert sorted(node.name for node in checks_job.nodes) == ["inventory_checks", "inventory_checks_1"]
    expected = {(key(n), check) for n in names for key, check in
                [(listing_key, "freshness"), (listing_key, "listing_errors"), (listing_key, "consistency"),
                 (files_key, "processing_errors")]}
    assert {(k.asset_key, k.name) for k in checks_job.asset_layer.asset_graph.asset_check_keys} == expected
    with instance_for_test() as instance:  # the second op alone (the first runs in the tests above)
        result = checks_job.execute_in_process(instance=instance, op_selection=["inventory_checks_1"])
    assert result.success
    assert {(e.asset_key, e.check_name) for e in result.get_asset_check_evaluations()} == \
        {(key, check) for key, check in expected if key.path[0] in names[50:]}


def test_report_asset_summarises_and_writes_csv(workdir):
    defs = build_definitions(workdir / "connector.yaml", retries=False)
    job = defs.resolve_job_def(job_name(load_config(workdir / "connector.yaml").endpoint("team-share")))
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("team_share_containers", ["alpha", "beta"])
        for container in ("alpha", "beta"):
            assert job.execute_in_process(instance=instance, partition_key=container).success
        reports = defs.resolve_assets_def(report_key("team-share"))
        result = materialize([reports], instance=instance,
                             selection=[report_key("team-share")])
        assert result.success
        (event,) = result.get_asset_materialization_events()
        meta = event.materialization.metadata
        assert meta["files"].value == 3 and meta["bytes"].value == 450
        by_container = {r.data["container"]: r.data["files"] for r in meta["by_container"].value.records}
        assert by_container == {"alpha": 2, "beta": 1}
        by_type = {r.data["file_type"]: r.data["bytes"] for r in meta["by_file_type"].value.records}
        assert by_type == {".pdf": 350, ".dwg": 100}
        assert "3 files" in meta["summary"].value
    out = workdir / "out/reports/team-share"
    assert (out / "by_top_folder.csv").read_text().splitlines()[0] == "top_folder,files,bytes"
    assert {p.name for p in out.glob("*.csv")} >= {"by_container.csv", "by_age.csv", "largest_files.csv", "flags.csv"}


def test_a_broken_plugin_is_a_red_check_not_a_broken_sync(workdir):
    (workdir / "connector.yaml").write_text(CONFIG.replace("endpoints:", "plugins:\n  - {type: email}\nendpoints:"))
    defs = build_definitions(workdir / "connector.yaml", retries=False)  # the code location still loads
    job = defs.resolve_job_def(job_name(load_config(workdir / "connector.yaml").endpoint("team-share")))
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("team_share_containers", ["alpha"])
        assert job.execute_in_process(instance=instance, partition_key="alpha").success
        plugins = evaluations(defs.resolve_job_def("file_connector_checks").execute_in_process(instance=instance))["plugins"]
        assert not plugins.passed
        assert plugins.description == "plugins[0] (email): host: Field required; plugins[0] (email): to: Field required" \
            or plugins.description.startswith("plugins[0] (email): host: Field required")
