"""The Dagster layer: it only wires config into assets, IO managers, jobs, schedules and sensors."""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from dagster import Definitions, in_process_executor
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.execution.build_resources import wrap_resources_for_execution

from ..config import config_path, load_config
from .assets import build_endpoint_assets, partitions_for
from .io_managers import FilesIOManager, ListingsIOManager
from .checks import build_checks, build_checks_job, build_checks_schedule
from .notifications import build_notification_sensors
from .report import build_reports
from .resources import FileConnectorResource
from .triggers import build_discovery_sensor, build_job, build_triggers


@contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """Building definitions allocates a few hundred thousand long-lived objects and no garbage cycles;
    the collector's full passes over them were a quarter of the load time of 500 endpoints and freed
    nothing (docs/benchmarks.md, P4)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build_definitions(path: str | os.PathLike | None = None, retries: bool = True) -> Definitions:
    """Everything for the active endpoints of connector.yaml; no source or store is touched here.

    Args:
        retries: jobs retry network trouble with backoff (the CLI turns it off: it reports and exits).
    """
    with _without_cyclic_gc():
        defs = _build_definitions(path, retries)
        # what a code location does next: the repository and every job, Dagster's implicit asset job included
        defs.get_repository_def().get_all_jobs()
    return defs


def _build_definitions(path: str | os.PathLike | None, retries: bool) -> Definitions:
    resolved = Path(config_path(path)).resolve()
    config = load_config(resolved)
    connector = FileConnectorResource(config_path=str(resolved))
    resources = {
        "connector": connector,
        "listings_io_manager": ListingsIOManager(connector=connector),
        "files_io_manager": FilesIOManager(connector=connector),
    }
    resource_defs = wrap_resources_for_execution(resources)
    assets, jobs, schedules, sensors = [], [], [], []
    asset_checks = build_checks(config)
    for endpoint in config.active_endpoints:
        partitions = partitions_for(endpoint)
        endpoint_assets = build_endpoint_assets(endpoint, config.store.type, partitions)
        # Resolved against the endpoint's own two assets: Dagster resolves an asset job by scanning every asset
        # of the repository, so with many endpoints the load time grows with their square (500 endpoints: 5 s).
        job = build_job(endpoint, endpoint_assets, retries=retries).resolve(
            AssetGraph.from_assets(endpoint_assets), resource_defs=resource_defs)
        assets += endpoint_assets
        jobs.append(job)
        sensors.append(build_discovery_sensor(endpoint, job, partitions))
        endpoint_schedules, endpoint_sensors = build_triggers(endpoint, job, partitions, connector, config.base_dir)
        schedules += endpoint_schedules
        sensors += endpoint_sensors
    sensors += build_notification_sensors(config, jobs)
    if asset_checks:
        # resolved against the checks alone, for the same reason (their target assets are not executed)
        checks_job = build_checks_job().resolve(AssetGraph.from_assets(asset_checks), resource_defs=resource_defs)
        jobs.append(checks_job)
        schedules.append(build_checks_schedule(checks_job))
    return Definitions(
        assets=assets + build_reports(config),
        asset_checks=asset_checks,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        executor=in_process_executor,  # also for runs of assets from several endpoints at once
        resources=resources,
    )
