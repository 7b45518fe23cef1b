"""The production dagster.yaml example loads and keeps Dagster's storage in PostgreSQL."""

from __future__ import annotations

import shutil
from pathlib import Path

from dagster import DagsterInstance

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dagster.postgres.yaml"


def test_production_dagster_yaml_uses_postgres(pg_dsn, tmp_path, monkeypatch):
    host_port, db_name = pg_dsn.split("@", 1)[1].rsplit("/", 1)
    host, port = host_port.split(":")
    for name, value in {"HOST": host, "PORT": port, "DB": db_name, "USER": "postgres", "PASSWORD": ""}.items():
        monkeypatch.setenv(f"DAGSTER_PG_{name}", value)
    shutil.copy(EXAMPLE, tmp_path / "dagster.yaml")
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 8
        assert {(limit["key"], limit["limit"]) for limit in concurrency.run_queue_config.tag_concurrency_limits} == {
            ("file_connector/source", 4), ("file_connector/endpoint", 2)}
        assert concurrency.pool_config.default_pool_limit == 4
        assert not instance.telemetry_enabled
        assert instance.get_runs() == []  # the tables exist and answer
    finally:
        instance.dispose()
