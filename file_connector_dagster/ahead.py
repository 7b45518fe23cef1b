"""Ahead: an iterator run in a background thread, a few items ahead of its consumer.

The sync's pages (engine: the next page is fetched and built while the store commits this one) and a
listing's requests (sources: the next page is requested as soon as this one names it) both use it."""

from __future__ import annotations

import queue
import threading
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class Ahead(Generic[T]):
    """Pulls `items` in a thread named `name`, at most `depth` items ahead; iterating hands them over in
    order, and raises (with its traceback) what the iterator raised. Memory: depth + 2 items.

    `stop`: when set, iteration ends early (the consumer checks why); close() stops the thread, waiting
    for the item in progress (a source's cancel event ends its retry waits)."""

    def __init__(self, items: Iterator[T], depth: int = 2, name: str = "ahead",
                 stop: threading.Event | None = None):
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=max(1, depth))
        self._halt = threading.Event()
        self._stop = stop
        self._thread = threading.Thread(target=self._run, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _run(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except BaseException as exc:  # handed to the consumer, raised there with its traceback
            self._put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close:
                close()

    def _put(self, entry: tuple[str, object]) -> bool:
        while not self._halt.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                kind, value = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop is not None and self._stop.is_set():
                    return
                continue
            if kind == "item":
                yield value  # type: ignore[misc]
            elif kind == "end":
                return
            else:
                raise value  # type: ignore[misc]

    def close(self, wait_s: float | None = 10.0) -> None:
        """Stop pulling; wait up to wait_s (None: as long as it takes) for the item in progress, which
        otherwise ends in the background."""
        self._halt.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(wait_s)
