"""The plugin contract (plain Python, no Dagster): code that acts on sync results, e.g. a notification.

A plugin class sets `type_name` (what `type:` in connector.yaml names), `metadata` and `Options` (a
pydantic model of its settings; secrets as config.Secret, resolved only when the plugin acts). The
hooks get a SyncEvent; by default each hook calls `execute`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

EventName = Literal["success", "failure", "container_added"]
EVENTS: tuple[EventName, ...] = ("success", "failure", "container_added")


@dataclass(frozen=True, slots=True)
class PluginMetadata:
    name: str
    version: str = "0.1.0"
    description: str = ""
    author: str = ""
    dependencies: tuple[str, ...] = ()  # Python distributions the plugin needs (informational)


@dataclass(slots=True)
class SyncEvent:
    """What happened: a container's sync ended (success / failure) or discovery added a container."""

    event: EventName
    endpoint: str
    container: str
    status: str  # success | failed | added
    counts: dict[str, int] = field(default_factory=dict)  # listed, added, updated, deleted, errors, ...
    duration_s: float | None = None
    error: str | None = None  # one line, secrets masked
    run_id: str | None = None
    run_url: str | None = None  # the Dagster run in the UI, when known

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def headline(self) -> str:
        what = {"success": "synced", "failure": "sync FAILED", "container_added": "new container"}[self.event]
        return f"File Connector: {self.endpoint}/{self.container} {what}"


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BasePlugin(ABC):
    """Acts on sync events. A plugin that raises is reported and skipped; it never fails a sync."""

    type_name: ClassVar[str]
    metadata: ClassVar[PluginMetadata]
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel, name: str | None = None):
        """Args:
        options: the validated `Options` of this plugin's connector.yaml entry.
        name: how reports name this instance (the entry's `name`, else its type).
        """
        self.options = options
        self.name = name or self.type_name

    def initialize(self) -> None:
        """Prepare (open clients, check settings); called once before the first event."""

    def cleanup(self) -> None:
        """Release what initialize() took; called once at the end."""

    @abstractmethod
    def execute(self, context: SyncEvent) -> dict[str, Any]:
        """Act on one event.

        Returns:
            What was done, for the report (e.g. {"sent_to": 2}); never secrets.
        """

    def on_sync_success(self, context: SyncEvent) -> dict[str, Any]:
        return self.execute(context)

    def on_sync_failure(self, context: SyncEvent) -> dict[str, Any]:
        return self.execute(context)

    def on_container_added(self, context: SyncEvent) -> dict[str, Any]:
        return self.execute(context)
