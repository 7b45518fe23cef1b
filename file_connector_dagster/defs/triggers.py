"""Jobs, schedules and sensors per endpoint (one job per endpoint: a job spanning different
partitions definitions fails validation)."""


import json

from dagster import (
    AssetSelection, AssetsDefinition, Backoff, DefaultScheduleStatus, DefaultSensorStatus, DynamicPartitionsDefinition, Jitter,
    RetryPolicy, RunRequest, ScheduleEvaluationContext, SensorDefinition, SensorEvaluationContext, SensorResult,
    SkipReason, define_asset_job, in_process_executor, schedule, sensor,
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

# A tick syncs up to this many containers in one run (a partition range), each on its own inside it: a
# site of 20 libraries costs one run worker, not 20.
CONTAINERS_PER_RUN = 25
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

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


def container_runs(containers: list[str], run_key: str, per_run: int = CONTAINERS_PER_RUN) -> list[RunRequest]:
    """Run requests for consecutive containers of a dynamic partitions definition (in the instance's
    order), `per_run` containers to a run."""
    requests = []
    for i in range(0, len(containers), per_run):
        chunk = containers[i:i + per_run]
        if len(chunk) == 1:
            requests.append(RunRequest(run_key=f"{run_key}:{chunk[0]}", partition_key=chunk[0]))
        else:
            requests.append(RunRequest(run_key=f"{run_key}:{chunk[0]}..{chunk[-1]}",
                                       tags={RANGE_START: chunk[0], RANGE_END: chunk[-1]}))
    return requests


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
        default_status=DefaultScheduleStatus.RUNNING,  # a schedule written in connector.yaml is meant to run
    )
    def _schedule(context: ScheduleEvaluationContext):
        keys = context.instance.get_dynamic_partitions(partitions.name)
        if not keys:
            return SkipReason(f"{endpoint.name} has no containers yet; its discovery sensor adds them")
        return container_runs(keys, f"{endpoint.name}:{context.scheduled_execution_time.isoformat()}")

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
            # the new keys are added in this order at the end, so they form a range
            run_requests=container_runs(new, f"first-sync:{endpoint.name}"),
            dynamic_partitions_requests=[partitions.build_add_request(new)],
            cursor=cursor,
        )

    return _sensor
