"""A Dagster run opens the store once, migrates it once per process, and closes what it opened."""

from dagster import instance_for_test

from file_connector_dagster import stores
from file_connector_dagster.config import load_config
from file_connector_dagster.defs import build_definitions
from file_connector_dagster.defs.resources import _RUN_STORES
from file_connector_dagster.defs.triggers import job_name
from file_connector_dagster.sources.local import LocalSource
from file_connector_dagster.stores.sqlite import SQLiteStore

CONFIG = """
store: {type: sqlite, path: inv.db}
endpoints:
  - name: team-share
    type: local
    endpoint_details: {roots: share, containers: subfolders}
    processors:
      - {type: glob_filter, exclude: ["*.tmp"]}
"""


def test_a_run_opens_the_store_once_and_closes_its_sources(tmp_path, monkeypatch):
    (tmp_path / "share/alpha").mkdir(parents=True)
    for i in range(3):
        (tmp_path / f"share/alpha/{i}.txt").write_text(str(i))
    (tmp_path / "connector.yaml").write_text(CONFIG)
    calls = {"open": 0, "migrate": 0, "close": 0, "source": 0, "source_close": 0}

    def counting(cls, name, key):
        real = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            calls[key] += 1
            return real(self, *args, **kwargs)
        monkeypatch.setattr(cls, name, wrapper)

    counting(SQLiteStore, "__init__", "open")
    counting(SQLiteStore, "migrate", "migrate")
    counting(SQLiteStore, "close", "close")
    counting(LocalSource, "__init__", "source")
    counting(LocalSource, "close", "source_close")
    monkeypatch.setattr(stores, "_MIGRATED", set())  # as in a fresh process

    defs = build_definitions(tmp_path / "connector.yaml")
    job = defs.resolve_job_def(job_name(load_config(tmp_path / "connector.yaml").endpoint("team-share")))
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("team_share_containers", ["alpha"])
        for run in range(2):
            result = job.execute_in_process(partition_key="alpha", instance=instance)
            assert result.success
            assert calls["open"] == run + 1 and calls["close"] == run + 1  # listing and files steps share it
            assert calls["migrate"] == 1  # the first run migrated; the second trusts that
            assert calls["source"] == calls["source_close"] >= run + 1  # every source built is closed
    assert not _RUN_STORES  # nothing left open after the runs
    with SQLiteStore(tmp_path / "inv.db") as store:
        assert store.count_files("team-share") == 3
