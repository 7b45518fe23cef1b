"""The README quotes real names and real output: each quoted Dagster name exists in the example's
definitions, and each quoted error line is what the CLI prints."""

import re
import subprocess
import sys
from pathlib import Path

from dagster import AssetKey

from file_connector_dagster.defs import build_definitions
from file_connector_dagster.defs.triggers import DISCOVERY_INTERVAL_S

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_quoted_dagster_names_exist_in_the_example():
    defs = build_definitions(REPO / "examples" / "connector.yaml")
    repo = defs.get_repository_def()
    quoted = set(re.findall(r"`([A-Za-z0-9_\-/]+)`", README))
    asset_keys = {"/".join(key.path) for key in repo.assets_defs_by_key}
    jobs = {job.name for job in repo.get_all_jobs()}
    assert {"example-docs/listing", "example-docs/files"} <= quoted and {"example-docs/listing", "example-docs/files"} <= asset_keys
    for name in quoted:
        if name.startswith("example-docs/"):
            assert name in asset_keys, name
        elif name.startswith(("Sync_", "sync_")) and name.endswith("_schedule"):
            assert repo.has_schedule_def(name), name
        elif name.startswith("Sync_"):
            assert name in jobs, name
        elif name.startswith("discover_"):
            assert repo.has_sensor_def(name), name
    assert {"Sync_example_docs", "discover_example_docs", "sync_example_docs_schedule"} <= quoted
    assert defs.resolve_assets_def(AssetKey(["example-docs", "listing"])).group_names_by_key[
        AssetKey(["example-docs", "listing"])] == "example_docs"
    assert f"every {DISCOVERY_INTERVAL_S // 60} minutes" in README


def test_quoted_error_lines_are_what_the_cli_prints(tmp_path):
    block = re.search(r"```\n((?:\s*error: .*\n)+)\s*```", README)
    assert block, "README quotes no error output"
    quoted = [line.strip() for line in block.group(1).splitlines()]
    (tmp_path / "connector.yaml").write_text(
        "endpoints:\n  - {name: docs, type: local, endpoint_details: {}, schedule: '61 * * * *'}\n")
    proc = subprocess.run([sys.executable, "-m", "file_connector_dagster.cli", "validate", "--config", "connector.yaml"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == quoted


def _block_after(marker: str) -> list[str]:
    """The lines of the first ``` block after the sentence containing marker."""
    start = README.index(marker)
    block = re.search(r"```\n(.*?)```", README[start:], re.S)
    assert block, marker
    return block.group(1).rstrip("\n").splitlines()


def test_quoted_validate_and_sync_output_is_what_the_cli_prints(tmp_path):
    import shutil

    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns(".file_connector"))
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("DAGSTER_HOME", "GRAPH_CLIENT_SECRET")}
    run = lambda *args: subprocess.run([sys.executable, "-m", "file_connector_dagster.cli", *args,  # noqa: E731
                                        "--config", "examples/connector.yaml"],
                                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    validate = run("validate")
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout.splitlines() == _block_after("`validate` checks the file offline")
    sync = run("sync")
    assert sync.returncode == 0, sync.stderr
    assert sync.stderr == ""  # no warnings on a clean run

    def columns(lines: list[str]) -> list[list[str]]:  # durations vary run to run
        return [[re.sub(r"^\d+\.\d\ds$", "<duration>", cell) for cell in line.split()] for line in lines]

    assert columns(sync.stdout.splitlines()) == columns(_block_after("`sync` lists the folders"))
