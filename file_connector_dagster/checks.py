"""Health checks of an endpoint's inventory, read from the store (plain Python; defs/checks.py shows
them as Dagster asset checks). Each names the containers that fail and why."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from .records import SyncLog
from .stores.base import Store

DEFAULT_MAX_AGE = timedelta(days=2)  # for an endpoint without a schedule to derive it from
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> timedelta:
    """Seconds (a number) or a string such as "90m", "12h", "2d", "1w"."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a duration (seconds, or a number with s, m, h, d or w)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def schedule_interval(schedules: Iterable[Any]) -> timedelta | None:
    """The longest gap between two runs of the endpoint's enabled time-based schedules (cron, business
    hours), if it has any; conditional and manual schedules promise no interval."""
    from croniter import croniter

    gaps = []
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday: weekday-only crons get a full week
    for schedule in schedules:
        if not getattr(schedule, "enabled", True):
            continue
        if getattr(schedule, "cron", None):
            it = croniter(schedule.cron, start)
            ticks = [it.get_next(datetime) for _ in range(200)]
            gaps.append(max(b - a for a, b in zip(ticks, ticks[1:])))
        elif getattr(schedule, "type", None) == "business_hours":  # the night, and the weekend when weekdays only
            night = timedelta(hours=24 - (schedule.end_hour - schedule.start_hour))
            gaps.append(night + (timedelta(days=2) if schedule.weekdays_only else timedelta(0)))
    return max(gaps) if gaps else None


@dataclass(slots=True)
class CheckOutcome:
    passed: bool
    description: str
    failing: dict[str, str] = field(default_factory=dict)  # container -> why


def logs_by_container(store: Store, endpoint: str, limit: int = 10_000) -> dict[str, list[SyncLog]]:
    """Each container's sync_logs rows, newest first."""
    found: dict[str, list[SyncLog]] = {}
    for log in store.sync_logs(endpoint, limit=limit):
        found.setdefault(log.container, []).append(log)
    return found


def freshness(logs: dict[str, list[SyncLog]], containers: list[str], max_age: timedelta,
              now: datetime | None = None) -> CheckOutcome:
    """Every container's last successful sync is younger than max_age."""
    now = now or datetime.now(timezone.utc)
    failing = {}
    for container in containers:
        last_ok = next((log for log in logs.get(container, []) if log.status == "success"), None)
        if last_ok is None:
            failing[container] = "never synced successfully"
        elif now - (last_ok.finished or last_ok.started) > max_age:
            age = now - (last_ok.finished or last_ok.started)
            failing[container] = (f"last successful sync {_human(age)} ago "
                                  f"({(last_ok.finished or last_ok.started).isoformat(timespec='seconds')}), "
                                  f"older than {_human(max_age)}")
    ok = len(containers) - len(failing)
    return CheckOutcome(not failing, f"{ok} of {len(containers)} containers synced within {_human(max_age)}", failing)


def error_rate(logs: dict[str, list[SyncLog]], containers: list[str], max_rate: float) -> CheckOutcome:
    """The last finished sync of each container could list all but at most max_rate of its files."""
    failing = {}
    for container in containers:
        last = next((log for log in logs.get(container, []) if log.finished is not None), None)
        if last is None:
            continue
        errors, listed = last.counts.get("errors", 0), last.counts.get("listed", 0)
        rate = errors / max(listed + errors, 1)
        if errors and rate > max_rate:
            failing[container] = f"{errors} of {listed + errors} files could not be listed ({rate:.1%} > {max_rate:.1%})"
    return CheckOutcome(not failing, f"{len(containers) - len(failing)} of {len(containers)} containers under "
                                     f"{max_rate:.1%} listing errors", failing)


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}".replace(".0", "")
    return f"{seconds}s"


def processing_error_rate(counts: dict[str, dict[str, int]], max_rate: float) -> CheckOutcome:
    """Per container (live files by processing_status): the share in status "error" is at most max_rate."""
    failing = {}
    for container, by_status in counts.items():
        total, errors = sum(by_status.values()), by_status.get("error", 0)
        if errors and errors / total > max_rate:
            failing[container] = f"{errors} of {total} files failed processing ({errors / total:.1%} > {max_rate:.1%})"
    return CheckOutcome(not failing, f"{len(counts) - len(failing)} of {len(counts)} containers under "
                                     f"{max_rate:.1%} processing errors", failing)


def consistency(logs: dict[str, list[SyncLog]], live: dict[str, tuple[int, int]],
                containers: list[str]) -> CheckOutcome:
    """After a complete full listing, a container's live rows are the files that listing saw: no phantom
    rows (more live rows than it saw) and no duplicate external ids.

    A container is checked when its latest sync that changed anything was a successful complete full
    listing that counted what it saw (later syncs that added, updated and deleted nothing do not count);
    others are not checked (a running sync, or an incremental one since, moves the count legitimately).
    Fewer live rows than the listing saw is no failure: a file another container's sync found since
    moves there.
    """
    failing, checked = {}, 0
    for container in containers:
        rows, ids = live.get(container, (0, 0))
        if rows != ids:
            failing[container] = f"{rows - ids} duplicate rows: {rows} live rows hold {ids} distinct external ids"
            continue
        basis = None
        for log in logs.get(container, []):  # newest first
            if log.status == "success" and log.full_listing and log.seen is not None:
                basis = log
            elif log.status in ("success", "failed") and not any(
                    log.counts.get(k, 0) for k in ("added", "updated", "deleted")):
                continue  # changed nothing: look further back
            break
        if basis is None:
            continue
        checked += 1
        if rows > basis.seen:
            when = (basis.finished or basis.started).isoformat(timespec="seconds")
            failing[container] = (f"{rows - basis.seen} phantom rows: {rows} live rows, but the full listing of "
                                  f"{when} (sync {basis.sync_id}) saw {basis.seen} files")
    return CheckOutcome(not failing, f"{len(containers) - len(failing)} of {len(containers)} containers consistent "
                                     f"({checked} compared with their last complete full listing)", failing)
