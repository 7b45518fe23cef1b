"""The mass-delete guard as a user meets it: the CLI, connector.yaml and Dagster run config."""

import shutil

from dagster import DagsterInstance, materialize

from file_connector_dagster.cli import main as cli_main
from file_connector_dagster.defs import build_definitions
from file_connector_dagster.defs.assets import listing_key, partitions_for
from file_connector_dagster.config import load_config
from file_connector_dagster.stores.sqlite import SQLiteStore

CONFIG = """
store: {type: sqlite, path: inv.db}
endpoints:
  - name: archive
    type: local
    endpoint_details: {roots: share}
"""


def live_files(workdir) -> int:
    with SQLiteStore(workdir / "inv.db") as store:
        return store.count_files("archive")


def setup(tmp_path, config: str = CONFIG, files: int = 30):
    (tmp_path / "share/sub").mkdir(parents=True)
    for i in range(files):
        (tmp_path / f"share/sub/{i}.txt").write_text(str(i))
    (tmp_path / "connector.yaml").write_text(config)
    return str(tmp_path / "connector.yaml")


def unmount(tmp_path) -> None:
    """The share's mount point is there, empty: the share is not mounted."""
    shutil.rmtree(tmp_path / "share")
    (tmp_path / "share").mkdir()


def test_unmounted_share_fails_the_sync_until_allowed(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    config = setup(tmp_path)
    assert cli_main(["sync", "--config", config]) == 0
    capsys.readouterr()

    unmount(tmp_path)
    assert cli_main(["sync", "--config", config]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2  # the header and one row
    assert out[1].endswith("failed: endpoint 'archive', container 'share': this sync would tombstone 30 files "
                           "(100% of 30 live, more than max_share=0.5); nothing of it was tombstoned. If they really "
                           "are gone, re-run with --allow-mass-delete (run config allow_mass_delete: true, or "
                           "delete_guard.allow_mass_delete in connector.yaml)")
    assert live_files(tmp_path) == 30
    assert cli_main(["status", "--config", config]) == 0
    assert "failed" in capsys.readouterr().out

    assert cli_main(["sync", "--config", config, "--allow-mass-delete"]) == 0
    row = capsys.readouterr().out.strip().splitlines()[1].split()
    assert row[:8] == ["archive", "share", "0", "0", "0", "0", "30", "0"] and row[-1] == "ok"
    assert live_files(tmp_path) == 0


def test_guard_settings_in_connector_yaml(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    # a top-level count limit applies to every endpoint without its own guard
    config = setup(tmp_path, CONFIG + "delete_guard: {max_count: 3}\n", files=12)
    assert cli_main(["sync", "--config", config]) == 0
    for i in range(4):
        (tmp_path / f"share/sub/{i}.txt").unlink()
    assert cli_main(["sync", "--config", config]) == 1
    assert "would tombstone 4 files (33% of 12 live, more than max_count=3)" in capsys.readouterr().out
    assert live_files(tmp_path) == 12

    # the endpoint's own guard wins; allow_mass_delete there is the standing override
    (tmp_path / "connector.yaml").write_text(
        CONFIG + "    delete_guard: {max_count: 3, allow_mass_delete: true}\ndelete_guard: {max_count: 0}\n")
    assert load_config(config).endpoint("archive").delete_guard.allow_mass_delete
    assert cli_main(["sync", "--config", config]) == 0
    assert live_files(tmp_path) == 8


def test_dagster_run_config_allows_one_run(tmp_path):
    config = setup(tmp_path)
    defs = build_definitions(config)
    listing = defs.resolve_assets_def(listing_key("archive"))
    instance = DagsterInstance.ephemeral()
    endpoint = load_config(config).endpoint("archive")
    instance.add_dynamic_partitions(partitions_for(endpoint).name, ["share"])

    def run(allow: bool):
        return materialize([listing], partition_key="share", instance=instance, raise_on_error=False,
                           run_config={"ops": {listing.op.name: {"config": {"allow_mass_delete": allow}}}})

    assert run(False).success
    unmount(tmp_path)
    refused = run(False)
    assert not refused.success and live_files(tmp_path) == 30
    failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
    assert "would tombstone 30 files" in failure.step_failure_data.error.message
    assert run(True).success and live_files(tmp_path) == 0
