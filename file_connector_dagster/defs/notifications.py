"""Run status sensors that hand each finished sync run to the configured plugins (once per run: a run
status sensor sees each run once). CLI runs are skipped here: the CLI calls the plugins itself. The
discovery sensor hands the containers it adds to them too (announce_containers)."""

from __future__ import annotations

import re

from dagster import (
    DagsterEventType, DagsterRunStatus, DefaultSensorStatus, RunStatusSensorContext, SensorDefinition, run_failure_sensor,
    run_status_sensor,
)

from ..config import ConnectorConfig, EndpointConfig, redact
from ..plugins import PluginManager
from ..plugins.base import SyncEvent
from ..plugins.manager import sync_event
from .assets import partitions_for
from .resources import FileConnectorResource

CLI_TRIGGER = "cli"


def failure_line(events) -> str:
    """The first step failure of a run's events as one line (the root cause, our error prefix dropped)."""
    for event in events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            while error.cause is not None:
                error = error.cause
            message = error.message.strip().splitlines()[0] if error.message.strip() else error.cls_name
            message = message.removeprefix("dagster._core.definitions.events.Failure: ")
            if error.cls_name in ("ConfigError", "SourceError", "StoreError"):
                message = re.sub(rf"^(?:[\w.]+\.)?{error.cls_name}: ", "", message)
            return redact(message)
    return "run failed"


def _containers(context: RunStatusSensorContext, endpoint: EndpointConfig) -> list[str]:
    """The containers a run synced: its partition, or each key of a single-run backfill's range."""
    tags = context.dagster_run.tags
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    name = partitions_for(endpoint).name
    if start and end:
        keys = context.instance.get_dynamic_partitions(name)
        if start in keys and end in keys:
            return keys[keys.index(start): keys.index(end) + 1]
    return []


def _notify(context: RunStatusSensorContext, connector: FileConnectorResource, event: str) -> None:
    run = context.dagster_run
    endpoint = run.tags.get("file_connector/endpoint")
    if not endpoint or run.tags.get("file_connector/trigger") == CLI_TRIGGER:
        return
    config = connector.connector_config()
    if endpoint not in {ep.name for ep in config.endpoints}:
        return
    error = None
    if event == "failure":
        records = context.instance.get_records_for_run(run.run_id, of_type=DagsterEventType.STEP_FAILURE).records
        error = failure_line(r.event_log_entry.dagster_event for r in records)
    base_url = config.plugins.ui_url
    run_url = f"{base_url.rstrip('/')}/runs/{run.run_id}" if base_url else None
    stats = context.instance.get_run_stats(run.run_id)
    since = None
    if stats.start_time:
        from datetime import datetime, timezone

        since = datetime.fromtimestamp(stats.start_time, timezone.utc)
    with PluginManager.from_config(config, log=context.log.error) as manager:  # it logs each problem and failure
        with connector.store() as store:
            for container in _containers(context, config.endpoint(endpoint)) or ["-"]:
                outcome = manager.dispatch(sync_event(store, endpoint, container, event, since=since, error=error,
                                                      run_id=run.run_id, run_url=run_url))
                for o in outcome:
                    if o.ok:
                        context.log.info(f"plugin {o.plugin}: {o.detail}")


def announce_containers(connector: FileConnectorResource, endpoint: str, containers: list[str], log) -> None:
    """Hand each container discovery has just added to the plugins' on_container_added (only when plugins
    are configured). A plugin that fails is logged, never raised: discovery goes on."""
    config = connector.connector_config()
    if not config.plugins.use or not containers:
        return
    with PluginManager.from_config(config, log=log.error) as manager:  # it logs each problem and failure
        for container in containers:
            for o in manager.dispatch(SyncEvent(event="container_added", endpoint=endpoint, container=container,
                                                status="added")):
                if o.ok:
                    log.info(f"plugin {o.plugin}: {container} added: {o.detail}")


def build_notification_sensors(config: ConnectorConfig, jobs: list) -> list[SensorDefinition]:
    """Two sensors (success, failure) over the endpoints' sync jobs, only when plugins are configured."""
    if not config.plugins.use or not jobs:
        return []

    @run_status_sensor(run_status=DagsterRunStatus.SUCCESS, name="file_connector_notify_success",
                       monitored_jobs=jobs, default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
                       description="Hand each successful sync run to the configured plugins.")
    def notify_success(context: RunStatusSensorContext, connector: FileConnectorResource):
        _notify(context, connector, "success")

    @run_failure_sensor(name="file_connector_notify_failure", monitored_jobs=jobs,
                        default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
                        description="Hand each failed sync run to the configured plugins.")
    def notify_failure(context: RunStatusSensorContext, connector: FileConnectorResource):
        _notify(context, connector, "failure")

    return [notify_success, notify_failure]
