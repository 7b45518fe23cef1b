"""Jobs, schedules and sensors per endpoint (one job per endpoint: a job spanning different
partitions definitions fails validation)."""


import json

from dagster import (
    AssetSelection, AssetsDefinition, Backoff, DefaultSensorStatus, DynamicPartitionsDefinition, Jitter,
    RetryPolicy, RunRequest, in_process_executor, ScheduleEvaluationContext, SensorDefinition, SensorEvaluationContext, SensorResult,
    SkipReason, define_asset_job, schedule, sensor,
)
from dagster import ScheduleDefinition
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from ..engine import error_text
from ..errors import FileConnectorError
from ..config import EndpointConfig
from .assets import group_name
from .resources import FileConnectorResource

# How often a discovery sensor lists an endpoint's containers (README: "Dagster UI").
DISCOVERY_INTERVAL_S = 300

# Network-bound runs retry with exponential backoff and jitter (the CLI's in-process runs do not).
SYNC_RETRY = RetryPolicy(max_retries=3, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def job_name(endpoint: EndpointConfig) -> str:
    # Capitalised on purpose: the UI launches an asset from its page with the first job name in sorted
    # order, and "Sync_..." sorts before Dagster's implicit "__ASSET_JOB" (whose runs show no job).
    return f"Sync_{group_name(endpoint)}"


def build_job(endpoint: EndpointConfig, assets: list[AssetsDefinition],
              retries: bool = True) -> UnresolvedAssetJobDefinition:
    """The endpoint's sync job. In process: the steps are I/O-bound, and a process per step costs seconds."""
    return define_asset_job(
        name=job_name(endpoint),
        selection=AssetSelection.assets(*assets),
        executor_def=in_process_executor,
        op_retry_policy=SYNC_RETRY if retries else None,
        description=f"Sync endpoint {endpoint.name}: listing, then processors.",
        tags={"file_connector/endpoint": endpoint.name},
    )


def build_schedule(endpoint: EndpointConfig, job: UnresolvedAssetJobDefinition,
                   partitions: DynamicPartitionsDefinition) -> ScheduleDefinition:
    """A cron schedule that syncs every known container of the endpoint."""
    assert endpoint.schedule is not None

    @schedule(
        name=f"sync_{group_name(endpoint)}_schedule",
        job=job,
        cron_schedule=endpoint.schedule.cron,
        execution_timezone=endpoint.schedule.timezone,
        description=f"Sync {endpoint.name} on '{endpoint.schedule.cron}' ({endpoint.schedule.timezone}).",
    )
    def _schedule(context: ScheduleEvaluationContext):
        keys = context.instance.get_dynamic_partitions(partitions.name)
        if not keys:
            return SkipReason(f"{endpoint.name} has no containers yet; its discovery sensor adds them")
        tick = context.scheduled_execution_time.isoformat()
        return [RunRequest(run_key=f"{endpoint.name}:{key}:{tick}", partition_key=key) for key in keys]

    return _schedule


def build_discovery_sensor(endpoint: EndpointConfig, job: UnresolvedAssetJobDefinition,
                           partitions: DynamicPartitionsDefinition,
                           interval_s: int = DISCOVERY_INTERVAL_S) -> SensorDefinition:
    """Adds containers that appeared at the source as partitions and requests their first sync."""

    @sensor(
        name=f"discover_{group_name(endpoint)}",
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Find new containers of {endpoint.name} and sync them for the first time.",
    )
    def _sensor(context: SensorEvaluationContext, connector: FileConnectorResource):
        try:
            source = connector.source(endpoint.name)
            try:
                found = [c.key for c in source.containers()]
            finally:
                source.close()
        except FileConnectorError as exc:
            return SkipReason(f"cannot list containers of {endpoint.name}: {error_text(exc)}")
        known = set(context.instance.get_dynamic_partitions(partitions.name))
        new = [key for key in found if key not in known]
        cursor = json.dumps({"containers": sorted(found)})
        if not new:
            return SensorResult(skip_reason=SkipReason(f"no new containers ({len(found)} known)"), cursor=cursor)
        return SensorResult(
            run_requests=[RunRequest(run_key=f"first-sync:{endpoint.name}:{key}", partition_key=key) for key in new],
            dynamic_partitions_requests=[partitions.build_add_request(new)],
            cursor=cursor,
        )

    return _sensor
