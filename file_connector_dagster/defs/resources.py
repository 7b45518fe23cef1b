"""The one resource every Dagster piece shares: where connector.yaml is. Everything else (sources,
stores, secrets) is built from it when a run executes, never at definitions load time."""


import os
from functools import lru_cache

from dagster import ConfigurableResource

from ..config import ConnectorConfig, EndpointConfig, load_config
from ..sources import Source, build_source
from ..stores import Store, open_store


@lru_cache(maxsize=8)
def _load_config(path: str, version: tuple[int, int]) -> ConnectorConfig:
    return load_config(path)


def _cached_config(path: str) -> ConnectorConfig:
    """connector.yaml parsed once per version of the file (an edited file is read again)."""
    try:
        st = os.stat(path)
        version = (st.st_mtime_ns, st.st_size)
    except OSError:
        version = (0, 0)  # load_config reports the missing file
    return _load_config(path, version)


_cached_config.cache_clear = _load_config.cache_clear  # type: ignore[attr-defined]


class FileConnectorResource(ConfigurableResource):
    """Opens sources and the store described by connector.yaml (a path, never a secret)."""

    config_path: str

    def connector_config(self) -> ConnectorConfig:
        return _cached_config(self.config_path)

    def endpoint(self, name: str) -> EndpointConfig:
        return self.connector_config().endpoint(name)

    def source(self, endpoint: str) -> Source:
        config = self.connector_config()
        return build_source(config, config.endpoint(endpoint))

    def store(self) -> Store:
        return open_store(self.connector_config())
