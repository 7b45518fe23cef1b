"""Schedules: when syncs start. Plain-Python schedule types; defs/triggers.py wraps them for Dagster."""

from .base import (
    Decision, ScheduleOptions, ScheduleType, Tick, TimezoneOptions, build_schedule, register_schedule,
    schedule_class, schedule_types,
)

__all__ = ["Decision", "ScheduleOptions", "ScheduleType", "Tick", "TimezoneOptions", "build_schedule",
           "register_schedule", "schedule_class", "schedule_types"]
