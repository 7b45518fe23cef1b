"""The schedule contract and registry (plain Python, no Dagster).

A schedule type answers one question: at this tick, should syncs start, and for which containers?
It declares how often it wants to be asked: `cron` (a time-based Dagster schedule in `timezone`),
`check_interval_s` (a Dagster sensor that polls), or neither (manual: nothing runs by itself).
The Dagster layer (defs/triggers.py) wraps every schedule type the same way, built-ins included.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..registry import Registry

if TYPE_CHECKING:
    from ..sources.base import Source
    from ..stores.base import Store


# Dagster gives a schedule or sensor tick 60 s; a decision (probes, trigger requests) stays well inside.
TICK_BUDGET_S = 40.0


class ScheduleOptions(BaseModel):
    """Options every schedule takes; a type's own options subclass this."""

    model_config = ConfigDict(extra="forbid")

    type: str
    enabled: bool = True  # false: defined, but switched off until someone starts it in the UI
    name: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,40}$")  # suffix of the Dagster name


class TimezoneOptions(ScheduleOptions):
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
            raise ValueError(f"unknown time zone {value[:80]!r}") from None
        return value


@dataclass
class Tick:
    """What a schedule type sees when it is asked.

    Attributes:
        endpoint: the endpoint's name.
        time: the scheduled time (schedules) or now (sensors), aware, in the schedule's time zone.
        containers: the endpoint's known containers (its Dagster partitions).
        state: what the previous Decision kept (sensors' cursor); empty for time-based schedules.
        open_source, open_store: open the endpoint's source and the store, for conditions that look.
        deadline: time.monotonic() by which the decision must be made (Dagster's tick timeout).
    """

    endpoint: str
    time: datetime
    containers: list[str]
    state: dict[str, Any] = field(default_factory=dict)
    open_source: Callable[[], "Source"] | None = None
    open_store: Callable[[], "Store"] | None = None
    deadline: float | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("file_connector.schedules"))

    @property
    def time_basis(self) -> str:
        """The tick time in UTC, ISO: the default run-key basis (one run per container and tick)."""
        return self.time.astimezone(timezone.utc).isoformat()


@dataclass
class Decision:
    """The answer for one tick.

    Attributes:
        containers: the containers to sync now (the Dagster layer puts consecutive ones into one run).
        basis: what makes the run keys (`<endpoint>:<basis>:<containers>`): the same basis for the same
            reason to run, so a tick never launches twice (default: the tick time).
        skip_reason: why nothing runs, shown on the tick in the UI.
        state: what to remember for the next tick (None: keep the previous state).
    """

    containers: list[str] = field(default_factory=list)
    basis: str = ""
    skip_reason: str | None = None
    state: dict[str, Any] | None = None

    @classmethod
    def skip(cls, reason: str, state: dict[str, Any] | None = None) -> "Decision":
        return cls(skip_reason=reason, state=state)

    @classmethod
    def run(cls, tick: Tick, containers: list[str], basis: str | None = None) -> "Decision":
        return cls(containers=list(containers), basis=basis or tick.time_basis)

    @classmethod
    def every_container(cls, tick: Tick, basis: str | None = None) -> "Decision":
        """Every known container (or a skip when none is known yet)."""
        if not tick.containers:
            return cls.skip(f"{tick.endpoint} has no containers yet; its discovery sensor adds them")
        return cls.run(tick, tick.containers, basis)


class ScheduleType(ABC):
    """A kind of schedule. Subclasses set `type_name` and `Options`, say how often they want to be
    asked (`cron` or `check_interval_s`) and implement decide()."""

    type_name: ClassVar[str]
    Options: ClassVar[type[ScheduleOptions]] = ScheduleOptions

    def __init__(self, endpoint: str, options: ScheduleOptions, base_dir: Path = Path(".")):
        """Args:
        endpoint: the endpoint's name.
        options: the validated options (an instance of `Options`).
        base_dir: the folder of connector.yaml, for relative paths in the options."""
        self.endpoint = endpoint
        self.options = options
        self.base_dir = base_dir

    @property
    def cron(self) -> str | None:
        """A cron expression: the Dagster layer makes a schedule that ticks on it."""
        return None

    @property
    def check_interval_s(self) -> int | None:
        """Seconds between checks: the Dagster layer makes a sensor that asks this often."""
        return None

    @property
    def timezone(self) -> str:
        return getattr(self.options, "timezone", "UTC")

    def describe(self) -> str:
        """One line for the UI."""
        return self.type_name

    def check_source(self, source_cls: type["Source"]) -> None:
        """Raise ValueError when this schedule cannot work with the endpoint's source type."""

    @abstractmethod
    def decide(self, tick: Tick) -> Decision:
        """Args:
            tick: the time, the known containers and the means to look at source and store.

        Returns:
            Which containers to sync now (each with its run key) or why not. Errors a user can act
            on are returned as a skip, never raised."""


SCHEDULES: Registry[type[ScheduleType]] = Registry(
    "schedule type", "file_connector.schedules", ScheduleType,
    builtins=(f"{__package__}.builtin", f"{__package__}.conditional"))


def register_schedule(type_name: str, cls: type[ScheduleType]) -> None:
    """Make `schedule: {type: <type_name>}` in connector.yaml use `cls`."""
    SCHEDULES.register(type_name, cls)


def schedule_types() -> dict[str, type[ScheduleType]]:
    return SCHEDULES.types()


def schedule_class(type_name: str) -> type[ScheduleType]:
    return SCHEDULES.get(type_name)


def build_schedule(endpoint: str, options: ScheduleOptions, base_dir: Path = Path(".")) -> ScheduleType:
    return schedule_class(options.type)(endpoint, options, base_dir)


def short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]
