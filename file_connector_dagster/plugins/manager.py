"""Finding, starting and calling plugins. Whatever a plugin does wrong (fails to import, to initialize,
or to handle an event) becomes one line in `problems` / an outcome, never an exception for the caller:
a notification must not break a sync or the code location."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pydantic import ValidationError

from ..config import redact
from ..registry import Registry
from .base import BasePlugin, SyncEvent

if TYPE_CHECKING:
    from ..config import ConnectorConfig, PluginEntry

PLUGINS: Registry[type[BasePlugin]] = Registry(
    "plugin type", "file_connector.plugins", BasePlugin,
    builtins=("file_connector_dagster.plugins.email", "file_connector_dagster.plugins.webhook"))


def register_plugin(type_name: str, cls: type[BasePlugin]) -> None:
    """Make `type: <type_name>` under `plugins:` in connector.yaml build `cls`."""
    PLUGINS.register(type_name, cls)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def plugin_types(directories: list[Path] = (), problems: list[str] | None = None) -> dict[str, type[BasePlugin]]:
    """Built-ins, `register_plugin` calls and the `file_connector.plugins` entry points, then plugin classes
    found in the given directories (each *.py file; the working directory is never searched). Load failures
    go to problems."""
    problems = problems if problems is not None else []
    types = PLUGINS.types()
    for name, why in PLUGINS.broken().items():
        problems.append(redact(f"plugin type {name!r}: {why}"))
    for directory in directories:
        if not directory.is_dir():
            problems.append(f"plugin directory {directory}: not a directory")
            continue
        for file in sorted(directory.glob("*.py")):
            if file.name.startswith("_"):
                continue
            try:
                module = _import_file(file)
            except Exception as exc:
                problems.append(f"plugin file {file}: cannot import: {_one_line(exc)}")
                continue
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BasePlugin) and cls.__module__ == module.__name__ and getattr(cls, "type_name", None):
                    types.setdefault(cls.type_name, cls)
    return types


def _import_file(file: Path) -> Any:
    name = "file_connector_plugin_" + hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@dataclass(slots=True)
class PluginOutcome:
    plugin: str
    ok: bool
    detail: str  # what the plugin reported, or its error line


class PluginManager:
    """The configured plugins of one connector.yaml, started once and called per event."""

    def __init__(self, entries: list["PluginEntry"], directories: list[Path],
                 log: Callable[[str], None] | None = None):
        self.entries = entries
        self.directories = directories
        self.log = log or (lambda message: None)
        self.problems: list[str] = []
        self.plugins: list[tuple["PluginEntry", BasePlugin]] = []
        self._started = False

    @classmethod
    def from_config(cls, config: "ConnectorConfig", log: Callable[[str], None] | None = None) -> "PluginManager":
        return cls(config.plugins.use, [config.resolve_path(d) for d in config.plugins.directories], log)

    def start(self) -> "PluginManager":
        """Load, validate and initialize every configured plugin; each failure is a problem, and skipped."""
        if self._started:
            return self
        self._started = True
        types = plugin_types(self.directories, self.problems)
        for i, entry in enumerate(self.entries):
            label = f"plugins[{i}] ({entry.name or entry.type})"
            cls = types.get(entry.type)
            if cls is None:
                self.problems.append(f"{label}: unknown plugin type {entry.type!r}; known types: "
                                     f"{', '.join(sorted(types)) or 'none'}")
                continue
            try:
                options = cls.Options.model_validate(entry.model_extra or {})
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                self.problems.append(f"{label}: {where + ': ' if where else ''}"
                                     f"{first['msg'].removeprefix('Value error, ')}")
                continue
            try:
                plugin = cls(options, name=entry.name or entry.type)
                plugin.initialize()
            except Exception as exc:
                self.problems.append(f"{label}: initialize failed: {_one_line(exc)}")
                continue
            self.plugins.append((entry, plugin))
        for problem in self.problems:
            self.log(problem)
        return self

    def dispatch(self, event: SyncEvent) -> list[PluginOutcome]:
        """Call the matching hook of every plugin that listens to this endpoint and event."""
        self.start()
        outcomes = []
        hook_name = {"success": "on_sync_success", "failure": "on_sync_failure",
                     "container_added": "on_container_added"}[event.event]
        for entry, plugin in self.plugins:
            if event.event not in entry.on or (entry.endpoints is not None and event.endpoint not in entry.endpoints):
                continue
            try:
                result = getattr(plugin, hook_name)(event) or {}
                outcomes.append(PluginOutcome(plugin.name, True, redact(", ".join(f"{k}={v}" for k, v in result.items()))))
            except Exception as exc:
                line = f"plugin {plugin.name}: {event.event} for {event.endpoint}/{event.container}: {_one_line(exc)}"
                self.log(line)
                outcomes.append(PluginOutcome(plugin.name, False, line))
        return outcomes

    def close(self) -> None:
        for _, plugin in self.plugins:
            try:
                plugin.cleanup()
            except Exception as exc:
                self.log(f"plugin {plugin.name}: cleanup failed: {_one_line(exc)}")
        self.plugins = []
        self._started = False

    def __enter__(self) -> "PluginManager":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def sync_event(store: Any, endpoint: str, container: str, event: str, *, since: Any = None,
               error: str | None = None, run_id: str | None = None, run_url: str | None = None) -> SyncEvent:
    """The event for a container's sync that just ended, with the counts its sync_logs row recorded.

    Args:
        since: ignore log rows that started before this (a run that failed before syncing has none).
        error: the run's own error line, used when the sync left no log row.
    """
    log = next((row for row in store.sync_logs(endpoint, limit=1000) if row.container == container), None)
    if log is not None and since is not None and log.started < since:
        log = None
    counts = {k: v for k, v in (log.counts if log else {}).items() if k in ("listed", "added", "updated", "deleted", "errors")}
    duration = (log.finished - log.started).total_seconds() if log and log.finished else None
    line = None
    if event == "failure":
        line = redact((error or (log.error if log else None) or "the run failed").strip().splitlines()[0])
    return SyncEvent(event=event, endpoint=endpoint, container=container,  # type: ignore[arg-type]
                     status="success" if event == "success" else "failed", counts=counts, duration_s=duration,
                     error=line, run_id=run_id, run_url=run_url)
