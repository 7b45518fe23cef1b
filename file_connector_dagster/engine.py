"""Syncing one container: pull change pages from a source, commit each into a store with its cursor.

Plain Python; the Dagster listing asset opens the stream and the listings IO manager commits it,
so the CLI, tests and Dagster all run this same code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from .config import redact
from .errors import FileConnectorError
from .records import ChangePage, SyncStats
from .sources.base import Source
from .stores.base import Store

if TYPE_CHECKING:
    from .config import EndpointConfig


@dataclass
class ChangeStream:
    """A lazy stream of one container's change pages; nothing is fetched until it is consumed."""

    endpoint: str
    container: str
    pages: Iterator[ChangePage]


def register_endpoint(store: Store, endpoint: "EndpointConfig") -> None:
    """Keep the endpoints table in step with connector.yaml (details carry ${NAME} references, not secrets)."""
    store.upsert_endpoint(endpoint.name, endpoint.type, endpoint.project_id, endpoint.user_id,
                          endpoint.secret_free_details(), endpoint.is_active)


def open_changes(source: Source, store: Store, container: str, full: bool = False) -> ChangeStream:
    """Read the container's cursor and folder tree from the store and start the source's page stream.

    Args:
        full: forget the cursor and list everything again (deletions found by the listing's end).
    """
    if full:
        store.reset_cursor(source.endpoint, container)
    state = store.sync_state(source.endpoint, container)
    folders = store.folders(source.endpoint, container) if state.cursor else {}
    return ChangeStream(source.endpoint, container, source.sync(container, state.cursor, folders))


def error_text(exc: BaseException) -> str:
    """One line for a user: our own errors as they are, anything else with its type; secrets masked."""
    text = str(exc) if isinstance(exc, FileConnectorError) else f"{type(exc).__name__}: {exc}"
    return redact(text.splitlines()[0] if text else type(exc).__name__)


def commit_changes(store: Store, stream: ChangeStream,
                   on_page: Callable[[ChangePage, SyncStats], None] | None = None) -> SyncStats:
    """Apply every page of the stream, each in its own transaction with its cursor; log the sync.

    A failure leaves the cursor at the last committed page, records the sync as failed and re-raises.
    """
    stats = SyncStats(endpoint=stream.endpoint, container=stream.container)
    sync_id = store.start_sync(stream.endpoint, stream.container)
    started = time.monotonic()
    try:
        for page in stream.pages:
            stats.add_page(page, store.apply_page(stream.endpoint, stream.container, page))
            if on_page:
                on_page(page, stats)
        stats.status = "success"
    except BaseException as exc:
        stats.status = "failed"
        stats.error = error_text(exc)
        raise
    finally:
        stats.duration_s = round(time.monotonic() - started, 3)
        try:
            store.finish_sync(sync_id, stats)
        except FileConnectorError:
            if stats.status == "success":
                raise
            # the store itself is what failed; the original error is the one to report
        close = getattr(stream.pages, "close", None)
        if close:
            close()
    return stats


def sync_container(source: Source, store: Store, container: str, full: bool = False) -> SyncStats:
    """open_changes + commit_changes, for tests and scripts that do not need Dagster."""
    return commit_changes(store, open_changes(source, store, container, full=full))
