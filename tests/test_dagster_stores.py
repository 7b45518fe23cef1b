"""The example config through Dagster (the CLI's in-process materializations) into every store."""

import shutil
from pathlib import Path

import pytest
import yaml

from file_connector_dagster.cli import main as cli_main
from file_connector_dagster.config import load_config
from file_connector_dagster.stores import open_store

from .servers import drop_mongo_database, mongo_database_name

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("store_type", ["sqlite", "postgres", "mongo"])
def test_example_synced_through_dagster_into_each_store(store_type, tmp_path, request, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    shutil.copytree(EXAMPLES / "data", tmp_path / "data")
    raw = yaml.safe_load((EXAMPLES / "connector.yaml").read_text())
    if store_type == "postgres":
        raw["store"] = {"type": "postgres", "dsn": request.getfixturevalue("pg_dsn")}
    elif store_type == "mongo":
        database = mongo_database_name()
        uri = request.getfixturevalue("mongo_uri")
        request.addfinalizer(lambda: drop_mongo_database(uri, database))
        raw["store"] = {"type": "mongo", "uri": uri, "database": database}
    path = tmp_path / "connector.yaml"
    path.write_text(yaml.safe_dump(raw))

    assert cli_main(["sync", "--config", str(path)]) == 0
    first = capsys.readouterr().out
    (tmp_path / "data/reports/week-47.md").unlink()
    (tmp_path / "data/reports/week-48.md").write_text("# next week")
    assert cli_main(["sync", "--config", str(path)]) == 0
    second = capsys.readouterr().out

    def row(out: str, container: str) -> list[str]:
        return next(line.split()[2:8] for line in out.splitlines() if line.split()[:2] == ["example-docs", container])

    #                                    listed added updated unchanged deleted errors
    assert row(first, "contracts") == ["2", "2", "0", "0", "0", "0"]
    assert row(first, "drawings") == ["2", "2", "0", "0", "0", "0"]
    assert row(first, "reports") == ["3", "3", "0", "0", "0", "0"]
    assert row(second, "contracts") == ["2", "0", "0", "2", "0", "0"]
    assert row(second, "reports") == ["3", "1", "0", "2", "1", "0"]
    with open_store(load_config(path)) as store:
        reports = {r.path: r for page in store.iter_files("example-docs", "reports") for r in page}
        assert set(reports) == {"week-47.md", "week-48.md", "progress.csv", "設計メモ.txt"}
        assert reports["week-47.md"].deleted_at is not None and reports["week-48.md"].deleted_at is None
        assert reports["設計メモ.txt"].metadata["hashes"]["sha256"]
        assert [log.status for log in store.latest_syncs()] == ["success"] * 3
