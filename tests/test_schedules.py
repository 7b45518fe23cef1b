"""Schedules from connector.yaml as Dagster evaluates them: cron and business hours over whole weeks
in two time zones (both daylight-saving changes, weekends, a holiday), manual and switched-off ones."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import yaml
from dagster import DefaultScheduleStatus, DefaultSensorStatus, build_schedule_context, instance_for_test
from dagster._utils.schedules import schedule_execution_time_iterator

from file_connector_dagster.defs import build_definitions

CONTAINERS = ["alpha", "beta"]


def endpoint(name: str, schedule) -> dict:
    return {"name": name, "type": "local", "endpoint_details": {"roots": "share", "containers": "subfolders"},
            "schedule": schedule}


@pytest.fixture
def defs_for(tmp_path):
    def build(*endpoints: dict):
        (tmp_path / "connector.yaml").write_text(yaml.safe_dump({"store": {"type": "sqlite", "path": "inv.db"},
                                                                  "endpoints": list(endpoints)}))
        return build_definitions(tmp_path / "connector.yaml")

    return build


@pytest.fixture(scope="module")
def instance():
    with instance_for_test() as instance:
        yield instance


def run_ticks(defs, instance, schedule_name: str, start: str, days: int):
    """Every tick Dagster's scheduler would evaluate from `start` (local midnight) for `days` days,
    evaluated as the daemon does. Returns ({local tick time: [(partition, run key)]}, {time: skip})."""
    schedule = defs.resolve_schedule_def(schedule_name)
    tz = ZoneInfo(schedule.execution_timezone)
    begin = datetime.fromisoformat(start).replace(tzinfo=tz)
    end = (begin + timedelta(days=days)).replace(tzinfo=tz)
    runs, skips = {}, {}
    partitions = partitions_name(defs, schedule_name)
    instance.add_dynamic_partitions(partitions, [c for c in CONTAINERS if not instance.has_dynamic_partition(partitions, c)])
    for tick in schedule_execution_time_iterator(begin.timestamp(), schedule.cron_schedule, schedule.execution_timezone):
        if tick >= end:
            break
        data = schedule.evaluate_tick(schedule_context(defs, instance, tick))
        local = tick.astimezone(tz).strftime("%a %Y-%m-%d %H:%M %Z")
        if data.run_requests:
            runs[local] = [(covered(r), r.run_key) for r in data.run_requests]
        else:
            skips[local] = data.skip_message
    return runs, skips


def covered(request) -> list[str]:
    """The containers a run request syncs: its partition, or its partition range."""
    if request.partition_key:
        return [request.partition_key]
    start, end = request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"]
    return CONTAINERS[CONTAINERS.index(start):CONTAINERS.index(end) + 1]


def schedule_context(defs, instance, when: datetime):
    context = build_schedule_context(instance=instance, scheduled_execution_time=when,
                                     repository_def=defs.get_repository_def())
    # Dagster opens the instance again from its ref for every context (0.3 s, with migrations
    # checked); the daemon does that once per tick, a test of 500 ticks shares the one it has.
    context._instance = instance
    return context


def partitions_name(defs, schedule_name: str) -> str:
    job = defs.resolve_job_def(defs.resolve_schedule_def(schedule_name).job_name)
    return job.partitions_def.name


def weekday_hours(days: list[str], hours: range, tz: str) -> set[str]:
    return {datetime.fromisoformat(f"{day}T{hour:02}:00").replace(tzinfo=ZoneInfo(tz)).strftime("%a %Y-%m-%d %H:%M %Z")
            for day in days for hour in hours}


BERLIN = {"type": "business_hours", "timezone": "Europe/Berlin", "start_hour": 8, "end_hour": 18,
          "holidays": ["2026-03-27", "2026-12-24"]}
NEW_YORK = {"type": "business_hours", "timezone": "America/New_York"}  # defaults: 9-17, hourly, Mon-Fri


@pytest.mark.parametrize("start, workdays, tz, config, hours", [
    # spring forward on Sunday 29 March, Friday 27 March a holiday
    ("2026-03-23", ["2026-03-23", "2026-03-24", "2026-03-25", "2026-03-26", "2026-03-30"], "Europe/Berlin", BERLIN,
     range(8, 18)),
    # fall back on Sunday 25 October
    ("2026-10-19", ["2026-10-19", "2026-10-20", "2026-10-21", "2026-10-22", "2026-10-23", "2026-10-26"],
     "Europe/Berlin", BERLIN, range(8, 18)),
    ("2026-03-02", ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06", "2026-03-09"],
     "America/New_York", NEW_YORK, range(9, 17)),
    ("2026-10-26", ["2026-10-26", "2026-10-27", "2026-10-28", "2026-10-29", "2026-10-30", "2026-11-02"],
     "America/New_York", NEW_YORK, range(9, 17)),
])
def test_business_hours_over_whole_weeks(defs_for, instance, start, workdays, tz, config, hours):
    """Eight days from a Monday, across a daylight-saving change: exactly one run per container at
    each business hour of each working day, none at the weekend or on the holiday."""
    defs = defs_for(endpoint("office", config))
    runs, skips = run_ticks(defs, instance, "sync_office_schedule", start, days=8)
    assert set(runs) == weekday_hours(workdays, hours, tz)
    for local, requests in runs.items():
        assert [c for containers, _ in requests for c in containers] == CONTAINERS  # one run for both
    keys = [key for requests in runs.values() for _, key in requests]
    assert len(keys) == len(set(keys)) == len(runs)  # a run key per tick
    # the cron does not tick at the weekend; the holiday's ticks are skipped with the reason
    holiday = [t for t in skips if "2026-03-27" in t]
    assert len(skips) == len(holiday) == (10 if start == "2026-03-23" else 0)
    assert all(skips[t] == f"{t[4:20]} Europe/Berlin: 2026-03-27 is a holiday" for t in holiday)


def test_business_hours_skip_reasons_and_offgrid_intervals(defs_for, instance):
    defs = defs_for(endpoint("office", BERLIN),
                    endpoint("nightly", {"type": "business_hours", "timezone": "Europe/Berlin", "start_hour": 8,
                                         "end_hour": 18, "interval_minutes": 90}))
    schedule = defs.resolve_schedule_def("sync_office_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 8-17 * * 1-5", "Europe/Berlin")
    assert schedule.default_status == DefaultScheduleStatus.RUNNING
    run_ticks(defs, instance, "sync_office_schedule", "2026-11-23", days=0)  # adds the partitions

    def evaluate(local: str):
        when = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Europe/Berlin"))
        return schedule.evaluate_tick(schedule_context(defs, instance, when))

    # a tick the cron would not make (run from the UI, say) still says why it does nothing
    assert evaluate("2026-11-28T10:00").skip_message == \
        "2026-11-28 10:00 Europe/Berlin: Saturday is outside business days (Mon-Fri)"
    assert evaluate("2026-11-27T18:00").skip_message == \
        "2026-11-27 18:00 Europe/Berlin: outside business hours 08:00-18:00"
    assert evaluate("2026-12-24T09:00").skip_message == "2026-12-24 09:00 Europe/Berlin: 2026-12-24 is a holiday"
    assert [r.run_key for r in evaluate("2026-11-27T09:00").run_requests] == [
        "office:2026-11-27T08:00:00+00:00:alpha..beta"]
    # 90 minutes do not divide an hour: the cron ticks every 30 minutes, off-grid ticks are skipped
    assert defs.resolve_schedule_def("sync_nightly_schedule").cron_schedule == "*/30 8-17 * * 1-5"
    runs, skips = run_ticks(defs, instance, "sync_nightly_schedule", "2026-11-23", days=1)
    assert sorted(t[15:20] for t in runs) == ["08:00", "09:30", "11:00", "12:30", "14:00", "15:30", "17:00"]
    assert len(skips) == 20 - 7 and all("not on the 90-minute grid from 08:00" in m for m in skips.values())


def test_cron_across_daylight_saving_nights(defs_for, instance):
    """A daily 02:30 Berlin run happens once on both change nights (03:00 CEST when 02:30 does not
    exist, once when it exists twice); an hourly New York schedule runs every real hour (23 and 25)."""
    defs = defs_for(endpoint("daily", {"cron": "30 2 * * *", "timezone": "Europe/Berlin"}),
                    endpoint("hourly", {"type": "business_hours", "timezone": "America/New_York", "start_hour": 0,
                                        "end_hour": 24, "weekdays_only": False}))
    runs, _ = run_ticks(defs, instance, "sync_daily_schedule", "2026-03-28", days=3)
    assert sorted(runs) == ["Mon 2026-03-30 02:30 CEST", "Sat 2026-03-28 02:30 CET", "Sun 2026-03-29 03:00 CEST"]
    runs, _ = run_ticks(defs, instance, "sync_daily_schedule", "2026-10-24", days=3)
    assert sorted(runs) == ["Mon 2026-10-26 02:30 CET", "Sat 2026-10-24 02:30 CEST", "Sun 2026-10-25 02:30 CET"]
    runs, skips = run_ticks(defs, instance, "sync_hourly_schedule", "2026-03-08", days=1)
    assert len(runs) == 23 and not skips and "Sun 2026-03-08 02:00 EDT" not in runs
    runs, skips = run_ticks(defs, instance, "sync_hourly_schedule", "2026-11-01", days=1)
    assert len(runs) == 25 and not skips
    assert {"Sun 2026-11-01 01:00 EDT", "Sun 2026-11-01 01:00 EST"} <= set(runs)


def test_manual_switched_off_and_several_schedules(defs_for):
    defs = defs_for(
        endpoint("by-hand", {"type": "manual"}),
        endpoint("both", [{"cron": "0 6 * * *", "timezone": "Europe/Berlin", "enabled": False},
                          {"type": "conditional", "condition": "check_file_count", "file_count_threshold": 5,
                           "check_interval_minutes": 10, "name": "when_busy"}]),
    )
    repo = defs.get_repository_def()
    assert sorted(s.name for s in repo.schedule_defs) == ["file_connector_checks_schedule", "sync_both_schedule_1"]
    # plus the inventory checks' schedule and Dagster's automation sensor (the report assets' on_cron)
    assert sorted(s.name for s in repo.sensor_defs) == ["default_automation_condition_sensor", "discover_both",
                                                        "discover_by_hand", "sync_both_when_busy"]
    assert defs.resolve_schedule_def("sync_both_schedule_1").default_status == DefaultScheduleStatus.STOPPED
    sensor = defs.resolve_sensor_def("sync_both_when_busy")
    assert sensor.minimum_interval_seconds == 600 and sensor.default_status == DefaultSensorStatus.RUNNING
    assert "when 5 pending changes, checked every 10 min" in sensor.description
