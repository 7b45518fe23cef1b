"""Third-party sources and processors plug in by entry point or register_* calls (one Registry
mechanism for every kind), and work end to end."""

import sys
from pathlib import Path

import pytest

from file_connector_dagster.config import parse_config
from file_connector_dagster.engine import sync_container
from file_connector_dagster.errors import ConfigError
from file_connector_dagster.processing import run_chain
from file_connector_dagster.processors import base as processors
from file_connector_dagster.processors.base import ProcessorContext
from file_connector_dagster.records import FileRecord
from file_connector_dagster.registry import Registry
from file_connector_dagster.sources import base, build_source
from file_connector_dagster.stores.sqlite import SQLiteStore

PLUGIN = '''
from typing import Iterator
from pydantic import BaseModel
from file_connector_dagster.records import ChangePage, FileRecord
from file_connector_dagster.sources.base import Container, Health, Source

class DropboxDetails(BaseModel):
    folder: str

class DropboxSource(Source):
    type_name = "dropbox"
    Details = DropboxDetails

    def containers(self):
        return [Container(self.details.folder, self.details.folder)]

    def sync(self, container, cursor, folders) -> Iterator[ChangePage]:
        yield ChangePage(upserts=[FileRecord("db-1", "a.txt", "a.txt", change_key="v1")], cursor="c", last=True)

    def health(self):
        return Health(ok=True)
'''


def install_plugin(tmp_path: Path, monkeypatch, module: str, code: str, entry_points: str) -> None:
    """A distribution on sys.path as pip would leave it: the module plus a dist-info with entry_points.txt."""
    (tmp_path / f"{module}.py").write_text(code)
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)


@pytest.fixture
def fresh_registry(monkeypatch):
    """Let a registry look at the entry points again; whatever a test adds is removed afterwards."""

    def fresh(registry: Registry) -> Registry:
        registry.types()  # built-ins (and installed plugins) first, before the test puts its own on sys.path
        monkeypatch.setattr(registry, "_classes", dict(registry._classes))
        monkeypatch.setattr(registry, "_broken", {})
        monkeypatch.setattr(registry, "_loaded", False)
        return registry

    return fresh


def test_entry_point_source_is_found_and_syncs(tmp_path, monkeypatch, fresh_registry):
    fresh_registry(base.SOURCES)
    install_plugin(tmp_path, monkeypatch, "fc_dropbox", PLUGIN, "[file_connector.sources]\ndropbox = fc_dropbox:DropboxSource\n")
    config = parse_config({"endpoints": [{"name": "box", "type": "dropbox", "endpoint_details": {"folder": "Team"}}]})
    source = build_source(config, config.endpoints[0])
    assert type(source).__name__ == "DropboxSource" and [c.key for c in source.containers()] == ["Team"]
    store = SQLiteStore(tmp_path / "x.db")
    store.migrate()
    assert sync_container(source, store, "Team").added == 1
    store.close()


def test_register_source_explicitly(fresh_registry):
    namespace: dict = {}
    exec(compile(PLUGIN, "plugin", "exec"), namespace)
    fresh_registry(base.SOURCES)
    base.register_source("dropbox2", namespace["DropboxSource"])
    config = parse_config({"endpoints": [{"name": "box", "type": "dropbox2", "endpoint_details": {"folder": "X"}}]})
    assert type(build_source(config, config.endpoints[0])).__name__ == "DropboxSource"
    assert "dropbox2" in base.source_types() and {"local", "sharepoint"} <= set(base.source_types())


PROCESSOR_PLUGIN = '''
from file_connector_dagster.processors.base import Processor, ProcessorOptions, ProcessResult

class TagOptions(ProcessorOptions):
    tag: str

class Tagger(Processor):
    type_name = "tagger"
    Options = TagOptions

    def process(self, batch, context):
        return [ProcessResult.processed({"tag": self.options.tag}) for r in batch]

class NotAProcessor:
    pass
'''


def test_processors_share_the_mechanism(tmp_path, monkeypatch, fresh_registry):
    """Entry point, explicit registration winning over an entry point of the same name, a broken
    plugin that does not take the others down, and a class of the wrong kind."""
    fresh_registry(processors.PROCESSORS)
    install_plugin(tmp_path, monkeypatch, "fc_tagger", PROCESSOR_PLUGIN,
                   "[file_connector.processors]\ntagger = fc_tagger:Tagger\nsize_limit = fc_tagger:Tagger\n"
                   "wrongkind = fc_tagger:NotAProcessor\nbroken = fc_missing_module:Thing\n")
    types = processors.processor_types()
    assert types["tagger"].__name__ == "Tagger"
    assert types["size_limit"].__module__.endswith("processors.builtin")  # the built-in keeps its name
    config = parse_config({"endpoints": [{"name": "docs", "type": "local", "endpoint_details": {"roots": "."},
                                          "processors": [{"type": "tagger", "tag": "x"}]}]})
    chain = processors.build_processors(config.endpoints[0].processors)
    assert chain[0].options.tag == "x"
    batch = [FileRecord("f1", "a.txt", "a.txt", change_key="v1")]
    run_chain(chain, batch, ProcessorContext("docs", "c"))
    assert batch[0].metadata["processors"] == {"tagger": {"tag": "x"}} and batch[0].processing_status == "processed"
    with pytest.raises(ConfigError, match=r"endpoint 'docs': processors\[0\] tagger: tag: Field required"):
        parse_config({"endpoints": [{"name": "docs", "type": "local", "endpoint_details": {"roots": "."},
                                     "processors": [{"type": "tagger", "tga": "x"}]}]})
    with pytest.raises(ConfigError, match=r"processor 'broken': entry point 'fc_missing_module:Thing' in group "
                                          r"file_connector.processors cannot be loaded: ModuleNotFoundError"):
        processors.processor_class("broken")
    with pytest.raises(ConfigError, match="processor 'wrongkind': .*is not a subclass of Processor"):
        processors.processor_class("wrongkind")
    with pytest.raises(ConfigError, match=r"unknown processor 'ocr'; known processors: .*glob_filter, .*tagger"):
        processors.processor_class("ocr")
    with pytest.raises(TypeError, match="not a subclass of Source"):
        base.register_source("nope", processors.PROCESSORS.get("tagger"))


SCHEDULE_PLUGIN = '''
import calendar
from typing import Literal
from file_connector_dagster.schedules import Decision, ScheduleType, TimezoneOptions

class MonthEndOptions(TimezoneOptions):
    type: Literal["month_end"] = "month_end"
    hour: int = 20
    only: list[str] = []

class MonthEnd(ScheduleType):
    """The last day of a month, the containers listed in `only` (all when empty)."""
    type_name = "month_end"
    Options = MonthEndOptions

    @property
    def cron(self):
        return f"0 {self.options.hour} 28-31 * *"

    def describe(self):
        return "month end"

    def decide(self, tick):
        if tick.time.day != calendar.monthrange(tick.time.year, tick.time.month)[1]:
            return Decision.skip(f"{tick.time.date()} is not the last day of the month")
        wanted = [c for c in tick.containers if not self.options.only or c in self.options.only]
        return Decision.run(tick, wanted)
'''


def test_custom_schedule_type_from_an_entry_point_fires_in_dagster(tmp_path, monkeypatch, fresh_registry):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from dagster import build_schedule_context, instance_for_test

    from file_connector_dagster.defs import build_definitions
    from file_connector_dagster.schedules import base as schedules

    fresh_registry(schedules.SCHEDULES)
    install_plugin(tmp_path, monkeypatch, "fc_month_end", SCHEDULE_PLUGIN,
                   "[file_connector.schedules]\nmonth_end = fc_month_end:MonthEnd\n")
    (tmp_path / "share/alpha").mkdir(parents=True)
    (tmp_path / "share/beta").mkdir()
    (tmp_path / "connector.yaml").write_text(
        "endpoints:\n  - name: books\n    type: local\n    endpoint_details: {roots: share, containers: subfolders}\n"
        "    schedule: {type: month_end, timezone: Europe/Berlin, hour: 19, only: [beta]}\n")
    defs = build_definitions(tmp_path / "connector.yaml")
    schedule = defs.resolve_schedule_def("sync_books_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 19 28-31 * *", "Europe/Berlin")
    assert schedule.description == "Sync books: month end."
    with instance_for_test() as instance:
        instance.add_dynamic_partitions("books_containers", ["alpha", "beta"])

        def tick(day: str):
            when = datetime.fromisoformat(f"{day}T19:00").replace(tzinfo=ZoneInfo("Europe/Berlin"))
            return schedule.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=when,
                                                                 repository_def=defs.get_repository_def()))

        assert tick("2026-11-28").skip_message == "2026-11-28 is not the last day of the month"
        assert [(r.partition_key, r.run_key) for r in tick("2026-11-30").run_requests] == [
            ("beta", "books:2026-11-30T18:00:00+00:00:beta")]
    assert "month_end" in schedules.schedule_types()
    with pytest.raises(ConfigError, match="unknown schedule type 'weekly'; known schedule types: business_hours, "
                                          "conditional, cron, manual, month_end"):
        parse_config({"endpoints": [{"name": "b", "type": "local", "endpoint_details": {"roots": "."},
                                     "schedule": {"type": "weekly"}}]})
