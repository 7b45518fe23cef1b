"""The processor contract and registry (plain Python, no Dagster).

A processor takes a page of records (changed files of one container) and returns it, marking files
it filters out with `excluded_by`, adding metadata, or recording per-file `processing_errors`.
Tombstones pass through untouched so downstream consumers see deletions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from ..records import FileRecord
from ..registry import Registry


class ProcessorOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Processor(ABC):
    type_name: ClassVar[str]
    Options: ClassVar[type[ProcessorOptions]] = ProcessorOptions

    def __init__(self, options: ProcessorOptions):
        self.options = options

    @abstractmethod
    def process(self, records: list[FileRecord]) -> list[FileRecord]:
        """Args:
            records: one page of live and deleted records of one container.

        Returns:
            The same records (possibly changed); a processor must not drop records."""


PROCESSORS: Registry[type[Processor]] = Registry(
    "processor", "file_connector.processors", Processor, builtins=(f"{__package__}.builtin",))


def register_processor(type_name: str, cls: type[Processor]) -> None:
    """Make `processors: [{type: <type_name>}]` build `cls`."""
    PROCESSORS.register(type_name, cls)


def processor_types() -> dict[str, type[Processor]]:
    return PROCESSORS.types()


def processor_class(type_name: str) -> type[Processor]:
    return PROCESSORS.get(type_name)


def build_processors(configs: list) -> list[Processor]:
    """Instantiate an endpoint's processors (from ProcessorConfig entries) in order."""
    built = []
    for cfg in configs:
        cls = processor_class(cfg.type)
        built.append(cls(cls.Options.model_validate(cfg.model_extra or {})))
    return built


def run_processors(processors: list[Processor], records: list[FileRecord]) -> list[FileRecord]:
    for record in records:  # results are recomputed from scratch on each change
        record.excluded_by = None
        record.processing_errors = []
    for processor in processors:
        live = [r for r in records if r.deleted_at is None and r.excluded_by is None]
        try:
            processor.process(live)
        except Exception as exc:  # a processor bug must not lose the page: record it on each file
            for r in live:
                r.processing_errors.append(f"{processor.type_name}: {type(exc).__name__}: {exc}")
    return records
