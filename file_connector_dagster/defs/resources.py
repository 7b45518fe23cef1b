"""The one resource every Dagster piece shares: where connector.yaml is. Everything else (sources,
stores, secrets) is built from it when a run executes, never at definitions load time."""


import os
import threading
from functools import lru_cache
from typing import Any

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

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


class _RunStore:
    """A step's handle on its run's one open store: close() leaves it open for the run's other steps
    (the resource closes it when the run's resources are torn down)."""

    def __init__(self, store: Store):
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def close(self) -> None:
        pass

    def __enter__(self) -> "_RunStore":
        return self

    def __exit__(self, *exc: object) -> None:
        pass


# (run id, config path) -> [the open store or None, how many resource instances of that run use it]
_RUN_STORES: dict[tuple[str, str], list[Any]] = {}
_RUN_STORES_LOCK = threading.Lock()


class FileConnectorResource(ConfigurableResource):
    """Opens sources and the store described by connector.yaml (a path, never a secret). Within a run the
    store is opened once, on first use, shared by the run's steps and IO managers in this process, and
    closed when the run's resources are torn down."""

    config_path: str
    _run_key: tuple[str, str] | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        run = getattr(context, "run", None)
        run_id = getattr(run, "run_id", None)
        if run_id:  # sensors and schedules evaluate without a run: they open and close their own
            self._run_key = (run_id, self.config_path)
            with _RUN_STORES_LOCK:
                _RUN_STORES.setdefault(self._run_key, [None, 0])[1] += 1

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._run_key is None:
            return
        with _RUN_STORES_LOCK:
            entry = _RUN_STORES.get(self._run_key)
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            del _RUN_STORES[self._run_key]
        if entry[0] is not None:
            entry[0].close()

    def connector_config(self) -> ConnectorConfig:
        return _cached_config(self.config_path)

    def endpoint(self, name: str) -> EndpointConfig:
        return self.connector_config().endpoint(name)

    def source(self, endpoint: str) -> Source:
        config = self.connector_config()
        return build_source(config, config.endpoint(endpoint))

    def store(self) -> Store:
        """The run's store (its close() is for the run's end); outside a run, a store the caller closes."""
        if self._run_key is None:
            return open_store(self.connector_config())
        with _RUN_STORES_LOCK:
            entry = _RUN_STORES.setdefault(self._run_key, [None, 1])
            if entry[0] is None:
                entry[0] = open_store(self.connector_config())
            return _RunStore(entry[0])  # type: ignore[return-value]
