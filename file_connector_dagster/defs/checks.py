"""Asset checks on each endpoint's listing (freshness, listing errors, consistency), on its files (processing
errors) and, with plugins configured, a check that they all loaded. The rules live in ../checks.py; these only read the store and report.

One multi-asset check serves 50 endpoints (a check definition per endpoint costs seconds of load
time at 500 endpoints; one for all of them is wired in quadratic time in every job holding it);
Dagster runs the subset a run or the UI selects. They run on their own job and schedule, every 15
minutes, not inside the sync runs: a freshness check must also go red when no sync runs at all."""

from datetime import timedelta
from typing import Iterator

from dagster import (
    AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job,
    AssetCheckExecutionContext, AssetCheckKey, AssetCheckResult, AssetCheckSeverity, AssetCheckSpec,
    AssetChecksDefinition, MetadataValue, multi_asset_check,
)

from .. import checks
from ..config import ConnectorConfig, EndpointConfig
from ..plugins import PluginManager
from .assets import endpoint_of, files_key, listing_key, partitions_for
from .resources import FileConnectorResource


def _result(key: AssetCheckKey, outcome: checks.CheckOutcome, **extra: MetadataValue) -> AssetCheckResult:
    metadata = {"failing_containers": MetadataValue.int(len(outcome.failing)), **extra}
    description = outcome.description
    if outcome.failing:
        rows = "\n".join(f"| `{c}` | {why} |" for c, why in sorted(outcome.failing.items())[:100])
        metadata["failing"] = MetadataValue.md(f"| container | why |\n|---|---|\n{rows}")
        first, why = min(outcome.failing.items())
        description += f"; e.g. {first}: {why}"
    return AssetCheckResult(asset_key=key.asset_key, check_name=key.name, passed=outcome.passed,
                            description=description, metadata=metadata, severity=AssetCheckSeverity.ERROR)


def max_age(endpoint: EndpointConfig) -> timedelta:
    """The endpoint's freshness limit: configured, else twice its schedule's interval, else 2 days."""
    if endpoint.checks.max_age is not None:
        return endpoint.checks.max_age
    schedules = endpoint.schedule if isinstance(endpoint.schedule, list) else [endpoint.schedule] if endpoint.schedule else []
    interval = checks.schedule_interval(schedules)
    return 2 * interval if interval else checks.DEFAULT_MAX_AGE


CHECKS_JOB = "file_connector_checks"


def build_checks_job():
    return define_asset_job(CHECKS_JOB, selection=AssetSelection.all_asset_checks(),
                            description="Evaluate every endpoint's inventory checks (freshness, errors, plugins).")


def build_checks_schedule(job) -> ScheduleDefinition:
    return ScheduleDefinition(name=f"{CHECKS_JOB}_schedule", job=job, cron_schedule="*/15 * * * *",
                              default_status=DefaultScheduleStatus.RUNNING,
                              description="Evaluate the inventory checks every 15 minutes.")


# Endpoints per multi-asset check. Dagster 1.13 wires a check op's inputs in time (inputs x checks): one
# op for 500 endpoints (1000 inputs, 2000+ checks) cost 0.2 s in every job holding it; 50 to an op, 20x less.
ENDPOINTS_PER_CHECK_OP = 50


def build_checks(config: ConnectorConfig) -> list[AssetChecksDefinition]:
    endpoints = config.active_endpoints
    return [_build_checks(config, endpoints[i:i + ENDPOINTS_PER_CHECK_OP], i // ENDPOINTS_PER_CHECK_OP)
            for i in range(0, len(endpoints), ENDPOINTS_PER_CHECK_OP)]


def _build_checks(config: ConnectorConfig, endpoints: list[EndpointConfig], number: int) -> AssetChecksDefinition:
    specs = []
    for ep in endpoints:
        key = listing_key(ep.name)
        specs += [
            AssetCheckSpec("freshness", asset=key, blocking=False,
                           description="Every container's last successful sync is younger than the endpoint's "
                                       "max_age (default: twice the schedule's interval, else 2 days)."),
            AssetCheckSpec("listing_errors", asset=key, blocking=False,
                           description=f"Each container's last sync listed all but at most "
                                       f"{ep.checks.max_error_rate:.1%} of its files."),
        ]
        specs.append(AssetCheckSpec("processing_errors", asset=files_key(ep.name), blocking=False,
                                    description=f"In each container at most {ep.checks.max_error_rate:.1%} of the "
                                                f"live files failed processing (status error)."))
        specs.append(AssetCheckSpec("consistency", asset=key, blocking=False,
                                    description="After a complete full listing, each container's live rows are the "
                                                "files that listing saw: no phantom rows, no duplicate external ids."))
        if config.plugins.use:
            specs.append(AssetCheckSpec("plugins", asset=key, blocking=False,
                                        description="Every plugin in connector.yaml loaded and initialized."))

    @multi_asset_check(specs=specs, can_subset=True, name=f"inventory_checks_{number}" if number else "inventory_checks")
    def inventory_checks(context: AssetCheckExecutionContext,
                         connector: FileConnectorResource) -> Iterator[AssetCheckResult]:
        cfg = connector.connector_config()
        selected = sorted(context.selected_asset_check_keys, key=lambda k: (k.asset_key.to_string(), k.name))
        plugin_problems: list[str] | None = None
        with connector.store() as store:
            for key in selected:
                endpoint = cfg.endpoint(endpoint_of(key.asset_key))
                if key.name == "plugins":
                    if plugin_problems is None:
                        with PluginManager.from_config(cfg) as manager:
                            plugin_problems = list(manager.problems)
                            loaded = ", ".join(p.name for _, p in manager.plugins)
                    yield AssetCheckResult(
                        asset_key=key.asset_key, check_name=key.name, passed=not plugin_problems,
                        description="; ".join(plugin_problems) or f"loaded: {loaded}",
                        metadata={"problems": MetadataValue.int(len(plugin_problems))})
                    continue
                containers = context.instance.get_dynamic_partitions(partitions_for(endpoint).name)
                logs = checks.logs_by_container(store, endpoint.name)
                if key.name == "processing_errors":
                    counts = store.processing_counts_by_container(endpoint.name)
                    counts = {c: counts.get(c, {}) for c in containers}
                    yield _result(key, checks.processing_error_rate(counts, endpoint.checks.max_error_rate))
                    continue
                if key.name == "consistency":
                    yield _result(key, checks.consistency(logs, store.live_counts(endpoint.name), containers))
                    continue
                if key.name == "freshness":
                    limit = max_age(endpoint)
                    yield _result(key, checks.freshness(logs, containers, limit),
                                  max_age_s=MetadataValue.int(int(limit.total_seconds())))
                else:
                    yield _result(key, checks.error_rate(logs, containers, endpoint.checks.max_error_rate))

    return inventory_checks
