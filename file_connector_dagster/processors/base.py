"""The processor contract and registry (plain Python, no Dagster).

A processor gets a batch (files of one container that are due: new, changed or re-queued) and a
context, and answers per file with a ProcessResult: processed (with metadata, kept under
`metadata.processors.<name>`), skipped (kept in the inventory, out of the canonical view), failed
(retried on the next run, up to max_attempts) or pending (it could not decide now, e.g. a quota is
spent: retried on the next run without counting an attempt). processing.py runs the chain and keeps
the per-file state; a processor never writes to the store.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError
from ..records import FileRecord
from ..registry import Registry

if TYPE_CHECKING:
    from ..sources.base import Source
    from ..stores.base import Store


@dataclass(slots=True)
class ProcessResult:
    """What a processor decided for one file (the brief's ProcessResult(success, metadata, error, skip)).

    Attributes:
        success: False with `error`: the file failed (retried next run, up to max_attempts).
        metadata: stored under metadata.processors.<processor name>.
        error: why it failed (one line).
        skip: why the file is skipped (it stays in the inventory with excluded_by = the processor).
        pending: why no decision is possible now (retried next run, no attempt counted).
    """

    success: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    skip: str | None = None
    pending: str | None = None

    @classmethod
    def processed(cls, metadata: dict[str, Any] | None = None) -> "ProcessResult":
        return cls(metadata=metadata or {})

    @classmethod
    def skipped(cls, reason: str, metadata: dict[str, Any] | None = None) -> "ProcessResult":
        return cls(metadata=metadata or {}, skip=reason)

    @classmethod
    def failed(cls, error: str) -> "ProcessResult":
        return cls(success=False, error=error)

    @classmethod
    def later(cls, reason: str) -> "ProcessResult":
        return cls(pending=reason)

    @property
    def status(self) -> str:
        """processed | skipped | failed | pending"""
        if self.pending:
            return "pending"
        if self.skip:
            return "skipped"
        return "processed" if self.success else "failed"


@dataclass
class ProcessorContext:
    """What a processor may use besides the batch.

    Attributes:
        endpoint, container: where the batch comes from.
        log: a logger (Dagster's in a run).
        store: read access to the store and its processor_cache (None while a listing page commits).
        source: the endpoint's source, for open_content (None while a listing page commits).
    """

    endpoint: str
    container: str
    log: logging.Logger | Any = field(default_factory=lambda: logging.getLogger("file_connector.processors"))
    store: "Store | None" = None
    source: "Source | None" = None


class ProcessorOptions(BaseModel):
    """Options every processor takes; subclasses add their own (a bad one is a one-line ConfigError)."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=3, ge=1)  # failed runs of one file version before it is marked error


class Processor(ABC):
    """Subclasses set type_name and Options and implement process().

    needs_io = False declares a processor that decides from the record alone (filters): when every
    processor of an endpoint is such, the chain runs while the listing page commits and the files
    step has nothing left to do.
    """

    type_name: ClassVar[str]
    Options: ClassVar[type[ProcessorOptions]] = ProcessorOptions
    needs_io: ClassVar[bool] = True

    def __init__(self, options: ProcessorOptions, name: str | None = None):
        self.options = options
        self.name = name or self.type_name

    @abstractmethod
    def process(self, batch: list[FileRecord], context: ProcessorContext
                ) -> Mapping[str, ProcessResult] | Sequence[ProcessResult]:
        """Decide on each file of the batch.

        Args:
            batch: live files of one container, due for processing, that every earlier processor of
                the chain processed (their metadata is in record.metadata["processors"]).
            context: endpoint, container, logger, store (read) and source (content).

        Returns:
            A ProcessResult per file: a list in batch order, or a mapping by external_id. An exception
            fails the files it concerns (the chain retries them one by one to find which).
        """

    def close(self) -> None:
        """Release connections (called after the files step)."""


PROCESSORS: Registry[type[Processor]] = Registry(
    "processor", "file_connector.processors", Processor, builtins=tuple(f"{__package__}.{module}" for module in (
        "builtin", "content_hash", "dedupe", "path_metadata", "virustotal")))


def register_processor(type_name: str, cls: type[Processor]) -> None:
    """Make `processors: [{type: <type_name>}]` build `cls`."""
    PROCESSORS.register(type_name, cls)


def processor_types() -> dict[str, type[Processor]]:
    return PROCESSORS.types()


def processor_class(type_name: str) -> type[Processor]:
    return PROCESSORS.get(type_name)


def processor_options(type_name: str, options: dict[str, Any]) -> ProcessorOptions:
    """Validate a processor's options; raises ConfigError "<type>: <field>: <problem>"."""
    cls = processor_class(type_name)
    try:
        return cls.Options.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{type_name}: {where + ': ' if where else ''}"
                          f"{first['msg'].removeprefix('Value error, ')}{more}") from None


def build_processors(configs: list) -> list[Processor]:
    """Instantiate an endpoint's processors (from ProcessorConfig entries) in order."""
    return [processor_class(cfg.type)(processor_options(cfg.type, cfg.model_extra or {}), name=getattr(cfg, "name", None))
            for cfg in configs]
