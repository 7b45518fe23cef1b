"""Syncing one container: pull change pages from a source, commit each into a store with its cursor.

Plain Python; the Dagster listing asset opens the stream and the listings IO manager commits it,
so the CLI, tests and Dagster all run this same code.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from .config import redact
from .errors import FileConnectorError
from .records import ChangePage, SyncStats
from .sources.base import Source
from .stores.base import Store

if TYPE_CHECKING:
    from .config import EndpointConfig
    from .processors.base import Processor


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


def open_changes(source: Source, store: Store, container: str, full: bool = False,
                 processors: "Sequence[Processor] | None" = None) -> ChangeStream:
    """Read the container's cursor and folder tree from the store and start the source's page stream.

    Args:
        full: forget the cursor and list everything again (deletions found by the listing's end).
        processors: the endpoint's processors; when none of them needs I/O (or there are none), each
            page's files are decided before the page commits and the files step has nothing to do.
            None: leave every new or changed file pending for the files step.
    """
    # A full sync just starts without the cursor; the stored one stays until the listing's first page
    # commits, so a full sync that fails early loses nothing.
    cursor = None if full else store.sync_state(source.endpoint, container).cursor
    folders = store.folders(source.endpoint, container) if cursor else {}
    pages = source.sync(container, cursor, folders)
    if processors is not None:
        from .processing import decidable_while_listing, decide_while_listing

        if decidable_while_listing(processors):
            pages = decide_while_listing(pages, processors, source.endpoint, container)
    return ChangeStream(source.endpoint, container, pages)


def error_text(exc: BaseException) -> str:
    """One line for a user: our own errors as they are, anything else with its type; secrets masked."""
    text = str(exc) if isinstance(exc, FileConnectorError) else f"{type(exc).__name__}: {exc}"
    return redact(text.splitlines()[0] if text else type(exc).__name__)


class Prefetch:
    """Pulls pages from a source in a background thread, at most `depth` pages ahead, so the next
    page is fetched and parsed while the store commits this one. Memory: depth + 2 pages."""

    def __init__(self, pages: Iterator[ChangePage], depth: int = 2):
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(pages,), name="page-prefetch", daemon=True)
        self._thread.start()

    def _run(self, pages: Iterator[ChangePage]) -> None:
        try:
            for page in pages:
                if not self._put(("page", page)):
                    return
            self._put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there with its traceback
            self._put(("error", exc))
        finally:
            close = getattr(pages, "close", None)
            if close:
                close()

    def _put(self, item: tuple[str, object]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[ChangePage]:
        while True:
            kind, value = self._queue.get()
            if kind == "page":
                yield value  # type: ignore[misc]
            elif kind == "end":
                return
            else:
                raise value  # type: ignore[misc]

    def close(self, wait_s: float = 10.0) -> None:
        """Stop fetching; wait a little for a request in flight, which otherwise ends in the background."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(wait_s)


def commit_changes(store: Store, stream: ChangeStream,
                   on_page: Callable[[ChangePage, SyncStats], None] | None = None, prefetch: int = 2) -> SyncStats:
    """Apply every page of the stream, each in its own transaction with its cursor; log the sync.

    Args:
        prefetch: pages fetched ahead in a background thread while a page commits (0: none).

    A failure leaves the cursor at the last committed page, records the sync as failed and re-raises.
    """
    stats = SyncStats(endpoint=stream.endpoint, container=stream.container)
    sync_id = store.start_sync(stream.endpoint, stream.container)  # raises if another sync holds the container
    started = time.monotonic()
    pages = Prefetch(stream.pages, prefetch) if prefetch else stream.pages
    try:
        for page in pages:
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
        close = getattr(pages, "close", None)
        if close:
            close()
        try:
            store.finish_sync(sync_id, stats)
        except FileConnectorError:
            if stats.status == "success":
                raise
            # the store itself is what failed; the original error is the one to report
    return stats


def sync_container(source: Source, store: Store, container: str, full: bool = False, prefetch: int = 2,
                   processors: "Sequence[Processor] | None" = None) -> SyncStats:
    """open_changes + commit_changes, for tests and scripts that do not need Dagster."""
    return commit_changes(store, open_changes(source, store, container, full=full, processors=processors),
                          prefetch=prefetch)
