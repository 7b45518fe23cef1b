"""Plugins through Dagster: a real sync run on a temporary instance, then the run status sensors hand it to
a webhook (once per run); a failing run carries its error line; CLI runs call the plugins themselves."""

from __future__ import annotations

import json
import textwrap

import pytest
from dagster import DagsterEventType, build_run_status_sensor_context, instance_for_test

from file_connector_dagster.cli import main as cli_main
from file_connector_dagster.config import load_config
from file_connector_dagster.defs.triggers import job_name
from file_connector_dagster.defs import build_definitions
from file_connector_dagster.defs.resources import FileConnectorResource

from .test_plugins import SECRET, hook_server  # noqa: F401  (fixture)

CONFIG = """
store: {type: sqlite, path: inv.db}
plugins:
  ui_url: http://dagster.example:3000
  use:
    - {type: webhook, url: "${HOOK_URL}", secret: "${HOOK_SECRET}", retries: 0}
endpoints:
  - name: team-share
    type: local
    endpoint_details: {roots: share, containers: subfolders}
"""


@pytest.fixture
def workdir(tmp_path, hook_server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HOOK_URL", hook_server["url"])
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    (tmp_path / "share/alpha").mkdir(parents=True)
    (tmp_path / "share/alpha/a.txt").write_text("a")
    (tmp_path / "share/alpha/b.txt").write_text("b")
    (tmp_path / "connector.yaml").write_text(CONFIG)
    return tmp_path


def run_sensor(defs, name, instance, run, event_type, connector):
    records = instance.get_records_for_run(run.run_id, of_type=event_type).records
    # `with`: the connector resource has a run lifecycle (it opens the run's store once and closes it)
    with build_run_status_sensor_context(
            sensor_name=name, dagster_event=records[-1].event_log_entry.dagster_event, dagster_instance=instance,
            dagster_run=run, resources={"connector": connector}) as context:
        return defs.resolve_sensor_def(name)(context)


def test_success_and_failure_runs_notify_once_each(workdir, hook_server):  # noqa: F811
    defs = build_definitions(workdir / "connector.yaml", retries=False)
    connector = FileConnectorResource(config_path=str(workdir / "connector.yaml"))
    job = defs.resolve_job_def(job_name(load_config(workdir / "connector.yaml").endpoint("team-share")))
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("team_share_containers", ["alpha", "gone"])
        ok = job.execute_in_process(instance=instance, partition_key="alpha")
        assert ok.success
        run_sensor(defs, "file_connector_notify_success", instance, instance.get_run_by_id(ok.run_id),
                   DagsterEventType.RUN_SUCCESS, connector)
        (_, body), = hook_server["bodies"]
        assert body["event"] == "success" and body["endpoint"] == "team-share" and body["container"] == "alpha"
        assert body["counts"]["listed"] == 2 and body["counts"]["added"] == 2
        assert body["run_url"] == f"http://dagster.example:3000/runs/{ok.run_id}"

        import shutil

        shutil.rmtree(workdir / "share")  # the share is unmounted: the sync must fail, not tombstone
        bad = job.execute_in_process(instance=instance, partition_key="gone", raise_on_error=False)
        assert not bad.success
        run_sensor(defs, "file_connector_notify_failure", instance, instance.get_run_by_id(bad.run_id),
                   DagsterEventType.RUN_FAILURE, connector)
        _, body = hook_server["bodies"][1]
        assert body["event"] == "failure" and body["container"] == "gone" and body["status"] == "failed"
        assert body["error"].startswith("endpoint 'team-share': root folder ")
        assert body["error"].endswith("share does not exist or is not a folder")
    assert hook_server["bad_signatures"] == 0 and SECRET not in str(hook_server["bodies"])


def test_no_sensors_without_plugins(tmp_path):
    (tmp_path / "connector.yaml").write_text(textwrap.dedent("""
        endpoints:
          - {name: docs, type: local, endpoint_details: {roots: .}}
    """))
    names = {s.name for s in build_definitions(tmp_path / "connector.yaml").sensors}
    assert not any(n.startswith("file_connector_notify") for n in names)


def test_cli_sync_calls_plugins_and_reports_their_failures(workdir, hook_server, monkeypatch, capsys):  # noqa: F811
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert cli_main(["sync", "--config", str(workdir / "connector.yaml")]) == 0
    (_, body), = hook_server["bodies"]
    # no DAGSTER_HOME: the CLI syncs without Dagster, so there is no run to name
    assert body["event"] == "success" and body["counts"]["added"] == 2 and body["run_id"] is None

    hook_server["fail_first"] = 100  # the hook is down: the sync still succeeds, the failure is one line
    (workdir / "share/alpha/c.txt").write_text("c")
    assert cli_main(["sync", "--config", str(workdir / "connector.yaml")]) == 0
    err = capsys.readouterr().err
    assert "plugin webhook: success for team-share/alpha: RuntimeError: POST to 127.0.0.1 answered HTTP 503" in err
    assert SECRET not in err and "/hooks/" not in err

    hook_server["fail_first"] = 0  # with DAGSTER_HOME the sync is a run of the endpoint's job: the event names it
    monkeypatch.setenv("DAGSTER_HOME", str(workdir))
    (workdir / "share/alpha/d.txt").write_text("d")
    assert cli_main(["sync", "--config", str(workdir / "connector.yaml")]) == 0
    _, body = hook_server["bodies"][-1]
    assert body["event"] == "success" and body["counts"]["added"] == 1 and body["run_id"]


ADDED_PLUGIN = '''
import json
from file_connector_dagster.plugins import BasePlugin, PluginMetadata
from pydantic import BaseModel

class Opts(BaseModel):
    log: str

class Journal(BasePlugin):
    type_name = "journal"
    metadata = PluginMetadata("journal", "0.1")
    Options = Opts

    def execute(self, context):
        with open(self.options.log, "a") as out:
            out.write(json.dumps([context.event, context.endpoint, context.container, context.status]) + "\\n")
        return {"written": 1}

class Grumpy(BasePlugin):
    type_name = "grumpy"
    metadata = PluginMetadata("grumpy", "0.1")

    def on_container_added(self, context):
        raise RuntimeError(f"will not welcome {context.container}")

    def execute(self, context):
        return {}
'''


def test_discovery_hands_each_new_container_to_the_plugins_once(tmp_path, capfd):
    from dagster import SensorResult, build_sensor_context

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins/journal.py").write_text(ADDED_PLUGIN)
    for name in ("alpha", "beta"):
        (tmp_path / "share" / name).mkdir(parents=True)
    journal = tmp_path / "added.jsonl"
    (tmp_path / "connector.yaml").write_text(CONFIG.replace(
        "  use:\n    - {type: webhook, url: \"${HOOK_URL}\", secret: \"${HOOK_SECRET}\", retries: 0}",
        f"  directories: [plugins]\n  use:\n    - {{type: journal, log: '{journal}', on: [container_added]}}\n"
        f"    - {{type: grumpy}}\n    - {{type: journal, name: only-failures, log: '{journal}', on: [failure]}}"))
    defs = build_definitions(tmp_path / "connector.yaml", retries=False)
    sensor = defs.resolve_sensor_def("discover_team_share")

    def tick():
        with build_sensor_context(instance_ref=instance.get_ref(), resources=defs.resources) as context:
            return sensor(context)

    def recorded():
        return [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []

    with instance_for_test() as instance:
        result = tick()  # the grumpy plugin's error is logged; discovery carries on
        assert isinstance(result, SensorResult) and result.dynamic_partitions_requests[0].partition_keys == ["alpha", "beta"]
        assert recorded() == [["container_added", "team-share", "alpha", "added"],
                              ["container_added", "team-share", "beta", "added"]]
        logged = capfd.readouterr().err
        assert "ERROR - plugin grumpy: container_added for team-share/alpha: RuntimeError: will not welcome alpha" in logged
        assert "INFO - plugin journal: beta added: written=1" in logged
        instance.add_dynamic_partitions("team_share_containers", ["alpha", "beta"])  # what the daemon does with it
        tick()
        assert len(recorded()) == 2  # known now: not announced again
        (tmp_path / "share/gamma").mkdir()
        assert [r.partition_key for r in tick().run_requests] == ["gamma"]
        assert recorded()[2:] == [["container_added", "team-share", "gamma", "added"]]
