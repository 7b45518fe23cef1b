"""What a user sees in the UI: dagster-webserver loading workspace.yaml, after a CLI sync recorded its
runs in the same DAGSTER_HOME. Queried over the webserver's GraphQL API, as the UI does."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from .servers import script

REPO = Path(__file__).resolve().parent.parent

QUERY = """
{
  assetNodes(group: {groupName: "team_share", repositoryName: "__repository__", repositoryLocationName: "file_connector_dagster.definitions"}) {
    assetKey { path }
    partitionKeysByDimension { partitionKeys }
  }
  assetOrError(assetKey: {path: ["team-share", "listing"]}) {
    ... on Asset {
      assetMaterializations(limit: 10) {
        partition
        metadataEntries { label ... on IntMetadataEntry { intValue } }
      }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def home(tmp_path):
    (tmp_path / "share/alpha").mkdir(parents=True)
    (tmp_path / "share/beta").mkdir()
    (tmp_path / "share/alpha/one.txt").write_text("1")
    (tmp_path / "share/alpha/two.txt").write_text("2")
    (tmp_path / "share/beta/three.txt").write_text("3")
    (tmp_path / "connector.yaml").write_text(
        "store: {type: sqlite, path: inv.db}\n"
        "endpoints:\n"
        "  - {name: team-share, type: local, endpoint_details: {roots: share, containers: subfolders}}\n")
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    return tmp_path


def test_ui_shows_one_asset_per_endpoint_with_partitions_and_counts(home):
    env = {**os.environ, "DAGSTER_HOME": str(home), "FILE_CONNECTOR_CONFIG": str(home / "connector.yaml")}
    sync = subprocess.run([script("file-connector"), "sync"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert sync.returncode == 0, sync.stderr
    port = free_port()
    server = subprocess.Popen([script("dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        data = None
        while time.monotonic() < deadline:
            try:
                response = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": QUERY}, timeout=10)
                body = response.json()
                if body.get("data", {}).get("assetNodes"):
                    data = body["data"]
                    break
            except (requests.ConnectionError, ValueError):
                pass
            assert server.poll() is None, server.stderr.read()
            time.sleep(1)
        assert data, "webserver did not answer with the assets"
        nodes = {tuple(n["assetKey"]["path"]): n for n in data["assetNodes"]}
        assert set(nodes) == {("team-share", "listing"), ("team-share", "files"), ("team-share", "report")}
        assert nodes[("team-share", "listing")]["partitionKeysByDimension"][0]["partitionKeys"] == ["alpha", "beta"]
        counts = {
            m["partition"]: {e["label"]: e.get("intValue") for e in m["metadataEntries"]}
            for m in data["assetOrError"]["assetMaterializations"]
        }
        assert counts["alpha"]["listed"] == 2 and counts["alpha"]["added"] == 2
        assert counts["beta"]["listed"] == 1
    finally:
        server.terminate()
        server.wait(timeout=30)
