"""The Dagster layer: it only wires config into assets, IO managers, jobs, schedules and sensors."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import Definitions, in_process_executor

from ..config import config_path, load_config
from .assets import build_endpoint_assets, partitions_for
from .io_managers import FilesIOManager, ListingsIOManager
from .notifications import build_notification_sensors
from .resources import FileConnectorResource
from .triggers import build_discovery_sensor, build_job, build_schedule


def build_definitions(path: str | os.PathLike | None = None, retries: bool = True) -> Definitions:
    """Everything for the active endpoints of connector.yaml; no source or store is touched here.

    Args:
        retries: jobs retry network trouble with backoff (the CLI turns it off: it reports and exits).
    """
    resolved = Path(config_path(path)).resolve()
    config = load_config(resolved)
    connector = FileConnectorResource(config_path=str(resolved))
    assets, jobs, schedules, sensors = [], [], [], []
    for endpoint in config.active_endpoints:
        partitions = partitions_for(endpoint)
        endpoint_assets = build_endpoint_assets(endpoint, config.store.type, partitions)
        job = build_job(endpoint, endpoint_assets, retries=retries)
        assets += endpoint_assets
        jobs.append(job)
        sensors.append(build_discovery_sensor(endpoint, job, partitions))
        if endpoint.schedule:
            schedules.append(build_schedule(endpoint, job, partitions))
    sensors += build_notification_sensors(config, jobs)
    return Definitions(
        assets=assets,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        executor=in_process_executor,  # also for runs of assets from several endpoints at once
        resources={
            "connector": connector,
            "listings_io_manager": ListingsIOManager(connector=connector),
            "files_io_manager": FilesIOManager(connector=connector),
        },
    )
