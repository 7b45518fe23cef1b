"""The Dagster UI as a user meets it, in a real browser: `dagster dev` (webserver + daemon) on a temporary
DAGSTER_HOME with the example config, driven through Debian's headless Chromium by Playwright.

Screenshots go to test-artifacts/ui/ (git-ignored; FILE_CONNECTOR_UI_ARTIFACTS overrides it); the README's
images in docs/img/ are copies of them. Needs `chromium` (apt) and `playwright` (the `test` extra):
`make test` installs both.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("FILE_CONNECTOR_UI_ARTIFACTS", REPO / "test-artifacts" / "ui"))
ENDPOINT, GROUP = "example-docs", "example_docs"
CONTAINERS = ["contracts", "drawings", "reports"]  # the first-level folders of examples/data

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency: make test")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} missing: `apt-get install chromium` (make test does it)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(f"{base}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_until(what: str, check, timeout_s: float, server: subprocess.Popen):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (requests.ConnectionError, requests.Timeout, ValueError):
            pass
        assert server.poll() is None, f"dagster dev exited while waiting for {what}"
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


RUNS = """{ runsOrError(limit: 20) { ... on Runs { results {
    runId jobName status tags { key value } } } } }"""

MATERIALIZATIONS = """query($path: [String!]!, $partition: String!) {
  assetOrError(assetKey: {path: $path}) { ... on Asset {
    assetMaterializations(partitions: [$partition], limit: 5) {
      runId partition metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }"""


@pytest.fixture
def dagster_dev(tmp_path, monkeypatch):
    """`dagster dev` on free ports with a copy of the example (its store lands in tmp_path)."""
    shutil.copytree(REPO / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns(".file_connector"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    # the repository's dagster.yaml, with the run queue polled every second instead of every few
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text() + (
        "run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
        "  config: {dequeue_interval_seconds: 1}\n"))
    # the containers as the discovery sensor would add them, so the test does not wait for its first tick
    from dagster import DagsterInstance

    monkeypatch.setenv("DAGSTER_HOME", str(home))  # dagster.yaml reads it
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(f"{GROUP}_containers", CONTAINERS)
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home),
           "FILE_CONNECTOR_CONFIG": str(tmp_path / "examples" / "connector.yaml")}
    log = (tmp_path / "dagster_dev.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml",
                               "-h", "127.0.0.1", "-p", str(port)],
                              cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        # webserver, daemon, code server and run workers are all in dagster dev's process group; their
        # state is thrown away with tmp_path, so no graceful shutdown is needed
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait(timeout=30)
        log.close()


def switches_by_name(page, names: list[str]) -> dict[str, bool]:
    """The on/off switch on each automation row, found by walking up from the row's name."""
    return page.evaluate("""(names) => {
        const out = {};
        for (const sw of document.querySelectorAll('input[type=checkbox]')) {
            if (!sw.parentElement.className.includes('Switch')) continue;
            let row = sw.parentElement;
            while (row && !names.some(n => row.innerText && row.innerText.includes(n))) row = row.parentElement;
            if (!row) continue;
            const hits = names.filter(n => row.innerText.includes(n));
            if (hits.length === 1) out[hits[0]] = sw.checked;
        }
        return out;
    }""", names)


def test_the_ui_shows_the_example_and_runs_a_partition(dagster_dev):
    base, server = dagster_dev
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    nodes_query = f"""{{ assetNodes(group: {{groupName: "{GROUP}", repositoryName: "__repository__",
        repositoryLocationName: "file_connector_dagster.definitions"}}) {{ assetKey {{ path }} }} }}"""
    keys = wait_until("the code location", lambda: {tuple(n["assetKey"]["path"])
                                                     for n in graphql(base, nodes_query)["assetNodes"]}, 60, server)
    assert keys == {(ENDPOINT, "listing"), (ENDPOINT, "files"), (ENDPOINT, "report")}
    print(f"browser test: server up after {time.monotonic() - started:.1f}s")

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        page.set_default_timeout(20_000)

        # the asset graph: one node per asset, titled with what the node is
        page.goto(f"{base}/asset-groups")
        graph = page.locator("svg foreignObject")
        graph.get_by_text("listing", exact=True).wait_for()
        graph.get_by_text("files", exact=True).wait_for()
        graph.get_by_text("report", exact=True).wait_for()
        assert graph.count() == 3  # one node per asset, nothing else in the graph
        assert graph.get_by_text("listing", exact=True).count() == 1
        assert graph.get_by_text("files", exact=True).count() == 1
        page.screenshot(path=str(ARTIFACTS / "asset-graph.png"))

        # the listing asset's partitions: one per container
        page.goto(f"{base}/assets/{ENDPOINT}/listing?view=partitions")
        for container in CONTAINERS:
            page.get_by_text(container, exact=True).first.wait_for()
        page.get_by_text(f"Missing ({len(CONTAINERS)})").wait_for()
        page.screenshot(path=str(ARTIFACTS / "partitions.png"))

        # launch one partition from the UI
        page.get_by_text("drawings", exact=True).first.click()
        page.get_by_role("button", name="Materialize…").first.click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("1 partition", exact=True).wait_for()
        page.screenshot(path=str(ARTIFACTS / "launch-partition.png"))
        dialog.get_by_role("button", name="Launch 1 run").click()  # the run is looked up below, not the toast

        def launched():
            for run in graphql(base, RUNS)["runsOrError"]["results"]:
                tags = {t["key"]: t["value"] for t in run["tags"]}
                if tags.get("dagster/from_ui") == "true" and tags.get("dagster/partition") == "drawings":
                    return run
        print(f"browser test: launched from the UI after {time.monotonic() - started:.1f}s")
        run = wait_until("the launched run", launched, 20, server)
        assert run["jobName"] == f"Sync_{GROUP}"  # a named job, not Dagster's hidden asset job
        run_id = run["runId"]
        run = wait_until("the run's end", lambda: next((
            r for r in graphql(base, RUNS)["runsOrError"]["results"]
            if r["runId"] == run_id and r["status"] in ("SUCCESS", "FAILURE", "CANCELED")), None), 60, server)
        assert run["status"] == "SUCCESS"
        print(f"browser test: run done after {time.monotonic() - started:.1f}s")

        # the counts, as the materialization metadata shows them
        data = graphql(base, MATERIALIZATIONS, {"path": [ENDPOINT, "listing"], "partition": "drawings"})
        latest = next(m for m in data["assetOrError"]["assetMaterializations"] if m["runId"] == run["runId"])
        counts = {e["label"]: e.get("intValue") for e in latest["metadataEntries"]}
        assert counts["listed"] == 2 and counts["added"] == 2 and counts["deleted"] == 0
        page.goto(f"{base}/assets/{ENDPOINT}/listing?view=partitions")
        page.get_by_text("drawings", exact=True).first.click()
        page.get_by_text(run["runId"][:8], exact=True).wait_for()  # the latest run is the one we launched
        text = " ".join(page.inner_text("body").split())
        for label, value in (("listed", 2), ("added", 2), ("unchanged", 0), ("deleted", 0)):
            assert f"{label} {value}" in text, text
        page.screenshot(path=str(ARTIFACTS / "partition-metadata.png"))

        # the run page names the job
        page.goto(f"{base}/runs/{run['runId']}")
        page.get_by_text(f"Sync_{GROUP}").first.wait_for()
        page.get_by_text("Success").first.wait_for()
        page.screenshot(path=str(ARTIFACTS / "run.png"))

        # schedule and sensor are shown running
        page.goto(f"{base}/automation")
        names = [f"discover_{GROUP}", f"sync_{GROUP}_schedule"]
        for name in names:
            page.get_by_text(name, exact=True).wait_for()
        expected = {name: True for name in names}
        try:
            wait_until("both switches on", lambda: switches_by_name(page, names) == expected, 15, server)
        finally:
            page.screenshot(path=str(ARTIFACTS / "automation.png"))
        assert switches_by_name(page, names) == expected
        browser.close()
    print(f"browser test: {time.monotonic() - started:.1f}s after the server started")
