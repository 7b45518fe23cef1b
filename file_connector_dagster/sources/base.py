"""The source contract and the registry of source types (plain Python, no Dagster)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

from pydantic import BaseModel

from ..errors import ContentUnavailable
from ..records import ChangePage, FileRecord, Folder, SyncState
from ..registry import Registry


@dataclass(slots=True)
class Container:
    """A unit inside an endpoint that becomes one Dagster partition (library, shared drive, folder)."""

    key: str  # stable partition key (drive id, folder name)
    name: str  # what a person calls it
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Health:
    """Structured status from Source.health(); never carries secrets."""

    ok: bool
    checks: dict[str, str] = field(default_factory=dict)  # check name -> "ok" or the problem

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": dict(self.checks)}


class Source(ABC):
    """A provider of file listings.

    Subclasses set `type_name` and `Details` (the pydantic model for the endpoint's
    `endpoint_details`) and implement containers(), sync() and health().
    """

    type_name: ClassVar[str]
    Details: ClassVar[type[BaseModel]]

    def __init__(self, endpoint: str, details: BaseModel, project_id: str | None = None, user_id: str | None = None,
                 base_dir: Path = Path(".")):
        """Args:
        endpoint: the endpoint's name (records carry it).
        details: the validated `endpoint_details`; environment references (config.Secret) are resolved
            by the source only when it talks to the provider, never at construction.
        project_id, user_id: copied onto every record.
        base_dir: the folder of connector.yaml, for relative paths (CA bundles, local roots).
        """
        self.base_dir = base_dir
        self.endpoint = endpoint
        self.details = details
        self.project_id = project_id
        self.user_id = user_id

    @abstractmethod
    def containers(self) -> list[Container]:
        """Returns:
        The containers the endpoint holds now (each becomes a partition)."""

    @abstractmethod
    def sync(self, container: str, cursor: str | None, folders: Mapping[str, Folder]) -> Iterator[ChangePage]:
        """Yield the container's changes page by page.

        Args:
            container: a Container.key.
            cursor: what the last committed page returned, or None for a fresh full listing. A cursor
                taken mid-listing resumes that listing; one from a last page asks for a delta.
            folders: the folder tree the store kept from earlier pages (empty for a fresh listing).

        Returns:
            An iterator of ChangePage; each page's cursor resumes right after it; the last page has
            last=True. Provider failures raise SourceError naming the endpoint, container and request.
        """

    @abstractmethod
    def health(self) -> Health:
        """Returns:
        Whether the provider can be reached and read with the configured credentials."""

    def pending_changes(self, container: str, state: SyncState, limit: int, budget_s: float) -> int:
        """Count the changes waiting at the provider since the last committed sync, cheaply (no
        listing written anywhere, the stored cursor left as it is). Optional: sources that cannot
        do this leave it out, and `conditional` schedules with `check_file_count` refuse them.

        Args:
            container: a Container.key.
            state: the container's stored SyncState (cursor, last_sync_at).
            limit: stop counting at this many (the caller's threshold).
            budget_s: the time it may take, waits for throttling included.

        Returns:
            The number of pending changes, at most `limit` (`limit` as well when the source cannot
            tell, e.g. an unfinished listing or an expired delta: a sync is due anyway).
            A failure raises SourceError naming the endpoint, container and request.
        """
        raise NotImplementedError

    @classmethod
    def can_probe(cls) -> bool:
        """Whether the source implements pending_changes()."""
        return cls.pending_changes is not Source.pending_changes

    def open_content(self, record: FileRecord) -> Iterator[bytes]:
        """Stream a file's bytes in chunks (memory: one chunk); closing the iterator releases the
        connection or file.

        Args:
            record: a file of this endpoint, as the store keeps it (container, path, external_id).

        Raises (from the call or while iterating):
            ContentUnavailable: this source cannot serve content (the default), or the file is gone.
            SourceError: the provider failed.
        """
        raise ContentUnavailable(f"endpoint {self.endpoint!r}: {self.type_name} sources cannot serve file content")

    @property
    def cancel_event(self) -> threading.Event:
        """Set by the engine when the sync using this source stops (a failure, an interrupt): hand it to
        every HttpClient (`cancel=`) so that retry and throttling waits end at once and the fetch thread
        stops with the sync. Cleared when the next sync starts."""
        event = self.__dict__.get("_cancel_event")
        if event is None:
            event = self.__dict__.setdefault("_cancel_event", threading.Event())
        return event

    def local_path(self, path: str | None) -> str | None:
        """A path from endpoint_details (a CA bundle, a key file) made absolute against connector.yaml's folder."""
        return str((self.base_dir / Path(path).expanduser()).resolve()) if path else None

    def close(self) -> None:
        """Release connections."""


SOURCES: Registry[type[Source]] = Registry(
    "source type", "file_connector.sources", Source,
    builtins=(f"{__package__}.local", f"{__package__}.sharepoint", f"{__package__}.google_drive",
              f"{__package__}.autodesk"))


def register_source(type_name: str, cls: type[Source]) -> None:
    """Make `type: <type_name>` in connector.yaml build `cls`."""
    SOURCES.register(type_name, cls)


def source_types() -> dict[str, type[Source]]:
    return SOURCES.types()


def source_class(type_name: str, where: str = "") -> type[Source]:
    return SOURCES.get(type_name, where)
