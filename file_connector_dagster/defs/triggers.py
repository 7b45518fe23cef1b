"""Jobs, schedules and sensors per endpoint (one job per endpoint: a job spanning different
partitions definitions fails validation)."""


import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from dagster import (
    AssetSelection, AssetsDefinition, Backoff, DagsterInstance, DagsterRunStatus, DefaultScheduleStatus,
    DefaultSensorStatus, DynamicPartitionsDefinition, JobDefinition, Jitter, RetryPolicy, RunRequest, RunsFilter,
    ScheduleDefinition, ScheduleEvaluationContext, SensorDefinition,
    SensorEvaluationContext, SensorResult, SkipReason, define_asset_job, in_process_executor, schedule, sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from ..config import EndpointConfig
from ..engine import error_text, retire_container
from ..errors import FileConnectorError
from ..schedules import Decision, ScheduleType, Tick, build_schedule as build_schedule_type
from ..schedules.base import TICK_BUDGET_S
from .assets import group_name
from .notifications import announce_containers
from .resources import FileConnectorResource

# How often a discovery sensor lists an endpoint's containers (README: "Dagster UI"). How long a
# vanished container waits before it is retired: `discovery.vanished_grace_hours` (config.py).
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
        # the run queue's tag limits key on these (docs/deployment.md)
        tags={"file_connector/endpoint": endpoint.name, "file_connector/source": endpoint.type},
    )


def container_runs(containers: list[str], run_key: str, per_run: int = CONTAINERS_PER_RUN,
                   known: list[str] | None = None, tags: dict[str, str] | None = None) -> list[RunRequest]:
    """Run requests for `containers`, `per_run` consecutive ones (in the instance's partition order,
    `known`; default: as given) to a run. Run keys: `<run_key>:<container>` or `<run_key>:<first>..<last>`."""
    wanted = set(containers)
    order = known if known is not None else containers
    segments: list[list[str]] = [[]]
    for key in order:  # a range may only span containers that are all wanted
        if key in wanted:
            segments[-1].append(key)
        elif segments[-1]:
            segments.append([])
    requests = []
    for segment in segments:
        for i in range(0, len(segment), per_run):
            chunk = segment[i:i + per_run]
            if len(chunk) == 1:
                requests.append(RunRequest(run_key=f"{run_key}:{chunk[0]}", partition_key=chunk[0], tags=tags or {}))
            elif chunk:
                requests.append(RunRequest(run_key=f"{run_key}:{chunk[0]}..{chunk[-1]}",
                                           tags={**(tags or {}), RANGE_START: chunk[0], RANGE_END: chunk[-1]}))
    return requests


def _run_requests(endpoint: EndpointConfig, decision: Decision, known: list[str], trigger: str) -> list[RunRequest]:
    return container_runs(decision.containers, f"{endpoint.name}:{decision.basis}", known=known,
                          tags={"file_connector/trigger": trigger})


RUN_BASIS = "file_connector/run_basis"  # a sensor's run key before retries (see _again_after_failure)
_ENDED_BADLY = (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


def _again_after_failure(instance: DagsterInstance, requests: list[RunRequest]) -> list[RunRequest]:
    """A sensor's run key is made of the state that calls for the run, so the same pending changes
    never start two runs. Dagster launches a run key once, ever: if that run failed or was canceled,
    the state has not moved and the key would block the sync until it does. Such a request gets the
    key `<key>:retry-<n>` instead; while a run of the basis is queued, running or done, its own key
    is requested again (and Dagster skips it)."""
    result = []
    for request in requests:
        basis = request.run_key
        filters = RunsFilter(tags={RUN_BASIS: basis})
        latest = instance.get_runs(filters=filters, limit=1)
        key = basis
        if latest and latest[0].status in _ENDED_BADLY:
            key = f"{basis}:retry-{instance.get_runs_count(filters=filters)}"
        elif latest:
            key = latest[0].tags.get("dagster/run_key", basis)
        result.append(request.with_replaced_attrs(run_key=key, tags={**request.tags, RUN_BASIS: basis}))
    return result


def build_triggers(endpoint: EndpointConfig, job: JobDefinition,
                   partitions: DynamicPartitionsDefinition, connector: FileConnectorResource,
                   base_dir: Path = Path(".")) -> tuple[list[ScheduleDefinition], list[SensorDefinition]]:
    """The endpoint's configured schedules: a Dagster schedule for each that ticks on a cron, a
    sensor for each that polls, nothing for manual ones. All switched on unless `enabled: false`.

    Schedules open sources and stores through `connector` directly (a schedule taking a resource
    needs a context manager in every test); sensors take it as a resource."""
    schedules: list[ScheduleDefinition] = []
    sensors: list[SensorDefinition] = []
    for options, suffix in zip(endpoint.schedules, endpoint.schedule_suffixes()):
        kind = build_schedule_type(endpoint.name, options, base_dir)
        name = f"sync_{group_name(endpoint)}_{suffix}"
        description = f"Sync {endpoint.name}: {kind.describe()}."
        if kind.cron:
            schedules.append(_schedule(endpoint, job, partitions, connector, kind, name, description))
        elif kind.check_interval_s:
            sensors.append(_sensor(endpoint, job, partitions, kind, name, description))
    return schedules, sensors


def _schedule(endpoint: EndpointConfig, job: JobDefinition, partitions: DynamicPartitionsDefinition,
              connector: FileConnectorResource, kind: ScheduleType, name: str, description: str) -> ScheduleDefinition:
    @schedule(
        name=name,
        job=job,
        cron_schedule=kind.cron,
        execution_timezone=kind.timezone,
        description=description,
        default_status=DefaultScheduleStatus.RUNNING if kind.options.enabled else DefaultScheduleStatus.STOPPED,
        tags={"file_connector/endpoint": endpoint.name},
    )
    def _tick(context: ScheduleEvaluationContext):
        when = context.scheduled_execution_time or datetime.now(timezone.utc)
        known = context.instance.get_dynamic_partitions(partitions.name)
        tick = Tick(endpoint.name, when.astimezone(ZoneInfo(kind.timezone)), known,
                    open_source=lambda: connector.source(endpoint.name), open_store=connector.store,
                    deadline=time.monotonic() + TICK_BUDGET_S, log=context.log)
        decision = kind.decide(tick)
        return _run_requests(endpoint, decision, known, name) or SkipReason(decision.skip_reason or "nothing to sync")

    return _tick


def _sensor(endpoint: EndpointConfig, job: JobDefinition, partitions: DynamicPartitionsDefinition,
            kind: ScheduleType, name: str, description: str) -> SensorDefinition:
    @sensor(
        name=name,
        job=job,
        minimum_interval_seconds=kind.check_interval_s,
        description=description,
        default_status=DefaultSensorStatus.RUNNING if kind.options.enabled else DefaultSensorStatus.STOPPED,
    )
    def _check(context: SensorEvaluationContext, connector: FileConnectorResource):
        state = json.loads(context.cursor) if context.cursor else {}
        known = context.instance.get_dynamic_partitions(partitions.name)
        tick = Tick(endpoint.name, datetime.now(ZoneInfo(kind.timezone)), known, state,
                    open_source=lambda: connector.source(endpoint.name), open_store=connector.store,
                    deadline=time.monotonic() + TICK_BUDGET_S, log=context.log)
        decision = kind.decide(tick)
        cursor = json.dumps(decision.state if decision.state is not None else state)
        if decision.containers:
            requests = _again_after_failure(context.instance, _run_requests(endpoint, decision, known, name))
            return SensorResult(run_requests=requests, cursor=cursor)
        return SensorResult(skip_reason=SkipReason(decision.skip_reason or "nothing to sync"), cursor=cursor)

    return _check


def build_discovery_sensor(endpoint: EndpointConfig, job: JobDefinition,
                           partitions: DynamicPartitionsDefinition,
                           interval_s: int = DISCOVERY_INTERVAL_S) -> SensorDefinition:
    """Adds containers that appeared at the source as partitions and requests their first sync;
    reports containers that vanished, and after the endpoint's `discovery.vanished_grace_hours`
    tombstones their files and removes their partitions (so schedules stop running them). Cursor:
    {"containers": [...], "vanished": {key: first seen missing}, "retired": {key: when}} (times ISO, UTC)."""
    vanished_grace_s = endpoint.discovery.vanished_grace_hours * 3600

    @sensor(
        name=f"discover_{group_name(endpoint)}",
        job=job,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Find new containers of {endpoint.name} and sync them for the first time; retire vanished ones.",
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
        previous = json.loads(context.cursor) if context.cursor else {}
        known = context.instance.get_dynamic_partitions(partitions.name)
        present = set(found)
        new = [key for key in found if key not in set(known)]
        now = datetime.now(timezone.utc)
        report = Vanished.update(previous.get("vanished", {}), [key for key in known if key not in present],
                                 now, vanished_grace_s)
        retired, notes = [], []
        if report.expired:
            store = connector.store()
            try:
                for key in report.expired:
                    stats = retire_container(store, endpoint.name, key)
                    retired.append(key)
                    notes.append(f"{key} retired: partition removed, {stats.deleted} files tombstoned")
            except FileConnectorError as exc:  # the rest stay for the next tick
                notes.append(f"cannot retire {report.expired[len(retired)]}: {error_text(exc)}")
            finally:
                store.close()
        notes += [f"{key} vanished at the source (since {since}); partition removed after "
                  f"{vanished_grace_s / 3600:g} h" for key, since in report.waiting.items()]
        for note in notes:
            context.log.warning(f"{endpoint.name}: {note}")
        # a container that comes back after it was retired gets a new first-sync run key
        returned = {**previous.get("retired", {}), **{key: now.isoformat(timespec="seconds") for key in retired}}
        cursor = json.dumps({"containers": sorted(found), "retired": returned,
                             "vanished": {k: v for k, v in report.since.items() if k not in retired}})
        requests = []
        if new:
            requests.append(partitions.build_add_request(new))
        if retired:
            requests.append(partitions.build_delete_request(retired))
        if not new:
            summary = "; ".join([f"no new containers ({len(found)} at the source)", *notes])
            return SensorResult(skip_reason=SkipReason(summary), dynamic_partitions_requests=requests, cursor=cursor)
        announce_containers(connector, endpoint.name, new, context.log)  # once: next tick they are partitions
        return SensorResult(
            # the new keys are added in this order at the end, so they form a range
            run_requests=container_runs(new, f"first-sync:{endpoint.name}" + (
                f":after-{max(returned[key] for key in new if key in returned)}" if set(new) & set(returned) else "")),
            dynamic_partitions_requests=requests,
            cursor=cursor,
        )

    return _sensor


@dataclass
class Vanished:
    """Known containers missing at the source: since when, which are past the grace period."""

    since: dict[str, str]  # key -> first tick it was missing (ISO, UTC)
    expired: list[str]
    waiting: dict[str, str]

    @classmethod
    def update(cls, previous: dict[str, str], missing: list[str], now: datetime, grace_s: float) -> "Vanished":
        since = {key: previous.get(key, now.isoformat(timespec="seconds")) for key in missing}
        expired = [key for key, first in since.items()
                   if (now - datetime.fromisoformat(first)).total_seconds() >= grace_s]
        return cls(since, expired, {k: v for k, v in since.items() if k not in expired})
