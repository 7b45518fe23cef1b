"""examples/connector.yaml switched from sqlite to postgres to mongo syncs the same tree with the same counts:
choosing a store is a config change only."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from file_connector_dagster.config import parse_config
from file_connector_dagster.engine import sync_container
from file_connector_dagster.sources import build_source
from file_connector_dagster.stores import open_store

from ..servers import drop_mongo_database, mongo_database_name

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _sync_everything(raw: dict, base_dir: Path) -> dict[tuple[str, str], tuple[int, ...]]:
    config = parse_config(raw, base_dir)
    counts = {}
    with open_store(config) as store:
        for endpoint in config.active_endpoints:
            source = build_source(config, endpoint)
            for container in source.containers():
                for run in ("first", "again"):
                    stats = sync_container(source, store, container.key)
                    counts[(endpoint.name, container.key, run)] = (
                        stats.listed, stats.added, stats.updated, stats.unchanged, stats.deleted, stats.errors)
                counts[(endpoint.name, container.key, "stored")] = (store.count_files(endpoint.name, container.key),)
    return counts


def test_example_config_gives_the_same_counts_in_every_store(tmp_path, pg_dsn, mongo_uri, monkeypatch):
    shutil.copytree(EXAMPLES / "data", tmp_path / "data")
    raw = yaml.safe_load((EXAMPLES / "connector.yaml").read_text())
    host, db_name = pg_dsn.rsplit("/", 1)
    monkeypatch.setenv("FC_TEST_PG_DB", db_name)  # the DSN is an environment reference, as in production
    mongo_db = mongo_database_name()
    stores = {
        "sqlite": {"type": "sqlite", "path": "inventory.db"},
        "postgres": {"type": "postgres", "dsn": host + "/${FC_TEST_PG_DB}"},
        "mongo": {"type": "mongo", "uri": mongo_uri, "database": mongo_db},
    }
    try:
        results = {name: _sync_everything({**raw, "store": block}, tmp_path) for name, block in stores.items()}
    finally:
        drop_mongo_database(mongo_uri, mongo_db)
    assert results["sqlite"] == results["postgres"] == results["mongo"]
    firsts = [v for k, v in results["sqlite"].items() if k[2] == "first"]
    assert firsts and all(v[1] > 0 for v in firsts)  # every container found files
    assert all(v[1:3] == (0, 0) and v[4] == 0 for k, v in results["sqlite"].items() if k[2] == "again")
