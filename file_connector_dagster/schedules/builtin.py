"""Built-in time-based schedules: `cron`, `business_hours`, and `manual`."""

from __future__ import annotations

from datetime import date
from math import gcd
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from .base import Decision, ScheduleOptions, ScheduleType, Tick, TimezoneOptions, register_schedule

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class CronOptions(TimezoneOptions):
    type: Literal["cron"] = "cron"
    cron: str

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value[:80]!r} is not a valid cron expression")
        return value


class CronSchedule(ScheduleType):
    """Every container on a cron expression, in a time zone (Dagster handles daylight saving)."""

    type_name = "cron"
    Options = CronOptions

    @property
    def cron(self) -> str:
        return self.options.cron

    def describe(self) -> str:
        return f"'{self.options.cron}' ({self.timezone})"

    def decide(self, tick: Tick) -> Decision:
        return Decision.every_container(tick)


class BusinessHoursOptions(TimezoneOptions):
    type: Literal["business_hours"] = "business_hours"
    start_hour: int = Field(default=9, ge=0, le=23)  # local time, inclusive
    end_hour: int = Field(default=17, ge=1, le=24)  # exclusive
    interval_minutes: int = Field(default=60, ge=1, le=1440)
    weekdays_only: bool = True
    holidays: list[date] = Field(default_factory=list)  # local dates without runs

    @model_validator(mode="after")
    def _hours(self) -> "BusinessHoursOptions":
        if self.end_hour <= self.start_hour:
            raise ValueError(f"end_hour ({self.end_hour}) must be after start_hour ({self.start_hour})")
        return self


class BusinessHoursSchedule(ScheduleType):
    """Every container every `interval_minutes` from start_hour to end_hour local time, on weekdays
    (unless weekdays_only is false), never on a holiday.

    The cron ticks only inside the hours (and weekdays), so the daemon does no idle work; decide()
    still checks everything, so holidays and off-grid ticks (a 45-minute interval ticks every 15
    minutes) are skipped with a reason."""

    type_name = "business_hours"
    Options = BusinessHoursOptions

    @property
    def cron(self) -> str:
        o: BusinessHoursOptions = self.options
        days = "1-5" if o.weekdays_only else "*"
        hours = f"{o.start_hour}-{o.end_hour - 1}" if o.end_hour - 1 > o.start_hour else str(o.start_hour)
        if o.interval_minutes % 60 == 0:
            step = o.interval_minutes // 60
            return f"0 {hours}{f'/{step}' if step > 1 else ''} * * {days}"
        every = gcd(o.interval_minutes, 60)
        return f"{'*' if every == 1 else f'*/{every}'} {hours} * * {days}"

    def describe(self) -> str:
        o: BusinessHoursOptions = self.options
        days = "Mon-Fri" if o.weekdays_only else "every day"
        return (f"every {o.interval_minutes} min, {o.start_hour:02}:00-{o.end_hour:02}:00 {days} ({o.timezone})"
                + (f", {len(o.holidays)} holidays off" if o.holidays else ""))

    def decide(self, tick: Tick) -> Decision:
        o: BusinessHoursOptions = self.options
        local = tick.time.astimezone(ZoneInfo(o.timezone))
        when = f"{local:%Y-%m-%d %H:%M} {o.timezone}"
        if local.date() in o.holidays:
            return Decision.skip(f"{when}: {local.date()} is a holiday")
        if o.weekdays_only and local.weekday() >= 5:
            return Decision.skip(f"{when}: {WEEKDAYS[local.weekday()]} is outside business days (Mon-Fri)")
        if not o.start_hour <= local.hour < o.end_hour:
            return Decision.skip(f"{when}: outside business hours {o.start_hour:02}:00-{o.end_hour:02}:00")
        minutes = (local.hour - o.start_hour) * 60 + local.minute
        if minutes % o.interval_minutes:
            return Decision.skip(f"{when}: not on the {o.interval_minutes}-minute grid from {o.start_hour:02}:00")
        return Decision.every_container(tick)


class ManualOptions(ScheduleOptions):
    type: Literal["manual"] = "manual"


class ManualSchedule(ScheduleType):
    """No trigger of its own: only the UI, the CLI and the discovery sensor start syncs."""

    type_name = "manual"
    Options = ManualOptions

    def decide(self, tick: Tick) -> Decision:
        return Decision.skip(f"{tick.endpoint} is synced manually")


register_schedule(CronSchedule.type_name, CronSchedule)
register_schedule(BusinessHoursSchedule.type_name, BusinessHoursSchedule)
register_schedule(ManualSchedule.type_name, ManualSchedule)
