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
