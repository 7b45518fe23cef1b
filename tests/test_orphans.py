"""Endpoints removed or renamed in connector.yaml: status shows them orphaned, prune tombstones them
(through the mass-delete guard) and the endpoints table marks them inactive."""

import pytest

from file_connector_dagster.cli import main as cli_main
from file_connector_dagster.stores.sqlite import SQLiteStore

CONFIG = """
store: {type: sqlite, path: inv.db}
endpoints:
  - name: NAME
    type: local
    endpoint_details: {roots: share}
"""


@pytest.fixture
def renamed(tmp_path, capsys, monkeypatch):
    """`docs` synced 12 files, then the endpoint was renamed `documents` and synced again."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    (tmp_path / "share").mkdir()
    for i in range(12):
        (tmp_path / f"share/{i}.txt").write_text(str(i))
    config = tmp_path / "connector.yaml"
    config.write_text(CONFIG.replace("NAME", "docs"))
    assert cli_main(["sync", "--config", str(config)]) == 0
    config.write_text(CONFIG.replace("NAME", "documents"))
    assert cli_main(["sync", "--config", str(config)]) == 0
    capsys.readouterr()
    return str(config)


def stored(tmp_path):
    with SQLiteStore(tmp_path / "inv.db") as store:
        return ({e.name: e.is_active for e in store.endpoints()},
                {name: store.count_files(name) for name in ("docs", "documents")})


def test_a_renamed_endpoint_is_orphaned_then_pruned(renamed, tmp_path, capsys):
    active, live = stored(tmp_path)
    assert active == {"docs": False, "documents": True}  # written by the sync after the rename
    assert live == {"docs": 12, "documents": 12}  # every file twice until the old name is pruned

    assert cli_main(["status", "--config", renamed]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in out[1:3]] == [["docs", "share", "orphaned"], ["documents", "share", "success"]]
    assert out[-1] == ("endpoint 'docs' is orphaned (not in connector.yaml any more): 12 live files; "
                       "`file-connector prune --endpoint docs` tombstones them")

    # guarded like a mass deletion: all 12 files of its container would go
    assert cli_main(["prune", "--config", renamed, "--endpoint", "docs"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would tombstone 12 files (100% of 12 live" in err[0] and "--allow-mass-delete" in err[0]
    assert stored(tmp_path)[1] == {"docs": 12, "documents": 12}

    assert cli_main(["prune", "--config", renamed, "--endpoint", "docs", "--allow-mass-delete"]) == 0
    assert capsys.readouterr().out.strip() == "endpoint 'docs': 12 files tombstoned; 0 live"
    assert stored(tmp_path) == ({"docs": False, "documents": True}, {"docs": 0, "documents": 12})
    assert cli_main(["status", "--config", renamed]) == 0
    assert "prune" not in capsys.readouterr().out  # no live files left: nothing to tell


def test_prune_refuses_a_configured_or_unknown_endpoint(renamed, capsys):
    assert cli_main(["prune", "--config", renamed, "--endpoint", "documents"]) == 2
    assert "endpoint 'documents' is still in connector.yaml" in capsys.readouterr().err
    assert cli_main(["prune", "--config", renamed, "--endpoint", "nope"]) == 1
    assert "no endpoint named 'nope' in the store" in capsys.readouterr().err
