"""Syncing one container: pull change pages from a source, commit each into a store with its cursor
(the rules each page follows: stores/protocol.py).

Plain Python; the Dagster listing asset opens the stream and the listings IO manager commits it,
so the CLI, tests and Dagster all run this same code.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from .ahead import Ahead
from .config import redact
from .errors import FileConnectorError, SyncInterrupted
from .records import ChangePage, SyncStats
from .sources.base import Source
from .stores.base import Store
from .stores.protocol import ContainerSync, DeleteGuard

if TYPE_CHECKING:
    from .config import ConnectorConfig, EndpointConfig
    from .processors.base import Processor


@dataclass
class ChangeStream:
    """One container's changes, not yet fetched: commit_changes takes the container's lease, reads its
    cursor under it and only then starts the source's page stream."""

    endpoint: str
    container: str
    source: Source
    full: bool = False
    guard: DeleteGuard | None = None
    processors: "Sequence[Processor] | None" = None  # see open_changes


def register_endpoint(store: Store, endpoint: "EndpointConfig", config: "ConnectorConfig | None" = None) -> None:
    """Keep the endpoints table in step with connector.yaml (details carry ${NAME} references, not secrets);
    with `config`, also mark the endpoints it no longer lists inactive (orphaned_endpoints)."""
    store.upsert_endpoint(endpoint.name, endpoint.type, endpoint.project_id, endpoint.user_id,
                          endpoint.secret_free_details(), endpoint.is_active)
    if config is not None:
        for name in orphaned_endpoints(store, config):
            store.deactivate_endpoint(name)


def orphaned_endpoints(store: Store, config: "ConnectorConfig") -> list[str]:
    """Endpoints the store knows that connector.yaml no longer lists (removed or renamed). Their files
    stay live until `file-connector prune --endpoint NAME` (protocol.prune_endpoint)."""
    configured = {ep.name for ep in config.endpoints}
    return [e.name for e in store.endpoints() if e.name not in configured]


def open_changes(source: Source, container: str, full: bool = False, guard: DeleteGuard | None = None,
                 processors: "Sequence[Processor] | None" = None) -> ChangeStream:
    """A lazy stream of the container's changes (nothing is read from the source or the store yet).

    Args:
        full: list everything again instead of a delta (deletions found by the listing's end); the stored
            cursor stays until the listing's first page commits, so a full sync that fails early loses nothing.
        guard: the mass-delete guard (default: DeleteGuard()).
        processors: the endpoint's processors; their leading filters decide each page's files before the
            page commits (processing.decide_while_listing): all of them when no processor needs I/O, and
            the files step has nothing left to do. None: every new or changed file stays pending.
    """
    return ChangeStream(source.endpoint, container, source, full, guard, processors)


# Set by whoever stops the syncs of this process (the CLI on Ctrl-C): a running sync stops before its next
# page with SyncInterrupted, and is recorded as interrupted.
STOP = threading.Event()


def check_stop(endpoint: str, container: str) -> None:
    if STOP.is_set():
        raise SyncInterrupted(f"endpoint {endpoint!r}, container {container!r}: stopped on request; "
                              "a re-run resumes from the last committed page")


def error_text(exc: BaseException) -> str:
    """One line for a user: our own errors as they are, anything else with its type; secrets masked."""
    text = str(exc) if isinstance(exc, FileConnectorError) else f"{type(exc).__name__}: {exc}"
    return redact(text.splitlines()[0] if text else type(exc).__name__)


def redacted(exc: FileConnectorError) -> FileConnectorError:
    """The same error (type, retryable, traceback) with its message cut to error_text(): what Dagster
    records in run storage and logs carries no secret."""
    exc.args = (error_text(exc),)
    return exc


# How long a thread may hold the GIL while another waits for it, during a sync. A sync runs three threads
# (requests, records, the store's statements); Python's 5 ms default makes each of the I/O threads wait up
# to 5 ms every time it comes back from a socket read or a database round trip while the records thread
# computes, dozens of times a page (measured: a Drive listing into PostgreSQL 1.6x its floor at 5 ms,
# 1.3x at 0.5 ms; benchmarks/google_drive_bench.py).
SWITCH_INTERVAL_S = 0.0005
_tuning_lock = threading.Lock()
_tuning: list[float] = []  # the interval before the first running sync, once per running sync


@contextmanager
def tuned_for_sync() -> Iterator[None]:
    """While a sync runs in this process (nested and concurrent syncs share it):

    - the objects alive now (Dagster's and ours: a few hundred thousand) are left out of the cyclic garbage
      collector's walks. A listing allocates a record and a few dicts per file, which triggers full
      collections that would otherwise walk all of them each time (about a third of a first sync's CPU).
      They are handed back to the collector afterwards, so nothing lives longer than it would;
    - threads hand the GIL over after SWITCH_INTERVAL_S instead of 5 ms.
    Both are restored when the last running sync ends."""
    with _tuning_lock:
        if not _tuning:
            gc.freeze()
            before = sys.getswitchinterval()
            sys.setswitchinterval(min(before, SWITCH_INTERVAL_S))
        else:
            before = _tuning[0]
        _tuning.append(before)
    try:
        yield
    finally:
        with _tuning_lock:
            _tuning.pop()
            if not _tuning:
                sys.setswitchinterval(before)
                gc.unfreeze()


def commit_changes(store: Store, stream: ChangeStream,
                   on_page: Callable[[ChangePage, SyncStats], None] | None = None, prefetch: int = 2) -> SyncStats:
    """Sync the stream's container (protocol.ContainerSync): take its lease, read its cursor under it, apply
    every page in its own transaction with its cursor (compare-and-set), log the sync.

    Args:
        prefetch: pages fetched ahead in a background thread while a page commits (0: none).

    A failure leaves the cursor at the last committed page, records the sync as failed and re-raises.
    """
    with tuned_for_sync():
        return _commit_changes(store, stream, on_page, prefetch)


def _commit_changes(store: Store, stream: ChangeStream, on_page: Callable[[ChangePage, SyncStats], None] | None,
                    prefetch: int) -> SyncStats:
    sync = ContainerSync(store, stream.endpoint, stream.container, stream.guard, full=stream.full).start()
    stream.source.cancel_event.clear()
    started = time.monotonic()
    pages: Iterator[ChangePage] | Ahead[ChangePage] | None = None
    try:
        pages = stream.source.sync(stream.container, sync.cursor, sync.folders)
        if stream.processors is not None:
            from .processing import decide_while_listing

            # in the prefetch thread: decided while the previous page commits
            pages = decide_while_listing(pages, stream.processors, stream.endpoint, stream.container)
        if prefetch and sync.likely_fresh:  # a first listing inserts every file: encode them in the fetch thread too
            pages = _encoded(pages, store)
        if prefetch:
            pages = Ahead(pages, prefetch, "page-prefetch", STOP)  # fetched and built while a page commits
        check_stop(stream.endpoint, stream.container)
        for page in pages:
            check_stop(stream.endpoint, stream.container)
            sync.apply(page)
            if on_page:
                on_page(page, sync.stats)
        check_stop(stream.endpoint, stream.container)  # a stopped Ahead hands nothing more over: not the end
    except BaseException as exc:
        sync.stats.duration_s = round(time.monotonic() - started, 3)
        stream.source.cancel_event.set()  # the fetch thread's retry and throttling waits end now
        _close(pages)
        sync.finish(exc, error_text)
        raise
    sync.stats.duration_s = round(time.monotonic() - started, 3)
    _close(pages)
    sync.finish()
    return sync.stats


def _encoded(pages: Iterator[ChangePage], store: Store) -> Iterator[ChangePage]:
    try:
        for page in pages:
            if page.upserts:
                page.encoded = store.encode_upserts(page.upserts)
            yield page
    finally:
        _close(pages)


def _close(pages: object) -> None:
    close = getattr(pages, "close", None)
    if close:
        close()


def sync_container(source: Source, store: Store, container: str, full: bool = False, prefetch: int = 2,
                   guard: DeleteGuard | None = None, processors: "Sequence[Processor] | None" = None) -> SyncStats:
    """open_changes + commit_changes, for tests and scripts that do not need Dagster."""
    return commit_changes(store, open_changes(source, container, full=full, guard=guard, processors=processors),
                          prefetch=prefetch)


def retire_container(store: Store, endpoint: str, container: str) -> SyncStats:
    """Tombstone every live file of a container that is gone at the source, as a full listing that
    found nothing would (a sync_logs row records it). The caller has waited out a grace period, which
    is the guard here: the mass-delete guard is off. If the container comes back, its next sync is a
    fresh full listing that restores what exists."""
    with ContainerSync(store, endpoint, container, DeleteGuard(allow=True), full=True) as sync:
        sync.apply(ChangePage(full_listing=True, starts_listing=True, last=True, cursor=None))
    return sync.stats
