"""The sync loop: pages fetched ahead in a thread, committed one by one, failures keep what committed."""

import threading
import time
from typing import Iterator, Mapping

import pytest

from file_connector_dagster.engine import sync_container
from file_connector_dagster.errors import SourceError
from file_connector_dagster.records import ChangePage, FileRecord, Folder
from file_connector_dagster.sources.base import Container, Health, Source
from file_connector_dagster.stores.sqlite import SQLiteStore


class CountingSource(Source):
    """Pages of 10 files; can fail at a page; records how far ahead of the store it ran."""

    type_name = "counting"
    Details = None  # type: ignore[assignment]

    def __init__(self, pages: int, fail_at: int | None = None):
        super().__init__("ep", None)  # type: ignore[arg-type]
        self.pages, self.fail_at = pages, fail_at
        self.produced = 0
        self.thread_names: set[str] = set()

    def containers(self) -> list[Container]:
        return [Container("c", "c")]

    def health(self) -> Health:
        return Health(ok=True)

    def sync(self, container: str, cursor: str | None, folders: Mapping[str, Folder]) -> Iterator[ChangePage]:
        start = int(cursor or 0)
        for n in range(start, self.pages):
            if n == self.fail_at:
                raise SourceError("endpoint 'ep', container 'c': GET /page: HTTP 500", retryable=True)
            self.produced += 1
            self.thread_names.add(threading.current_thread().name)
            yield ChangePage(upserts=[FileRecord(f"{n}-{i}", f"{i}.txt", f"p{n}/{i}.txt", change_key="k")
                                      for i in range(10)], cursor=str(n + 1), last=n == self.pages - 1)


class SlowStore(SQLiteStore):
    def __init__(self, path, source: CountingSource):
        super().__init__(path)
        self.source, self.lead = source, 0

    def apply_page(self, endpoint, container, page, **sync):
        time.sleep(0.01)  # the fetcher may run ahead meanwhile
        self.lead = max(self.lead, self.source.produced - int(page.cursor))
        return super().apply_page(endpoint, container, page, **sync)


def test_prefetch_runs_ahead_by_a_bounded_number_of_pages(tmp_path):
    source = CountingSource(pages=30)
    store = SlowStore(tmp_path / "x.db", source)
    store.migrate()
    stats = sync_container(source, store, "c", prefetch=2)
    assert (stats.status, stats.pages, stats.added) == ("success", 30, 300)
    assert source.thread_names == {"page-prefetch"}
    assert 1 <= store.lead <= 3  # queue of 2 + the page in the fetcher's hand: memory stays at a few pages


def test_a_source_failure_keeps_committed_pages_and_resumes(tmp_path):
    store = SQLiteStore(tmp_path / "x.db")
    store.migrate()
    with pytest.raises(SourceError, match="HTTP 500"):
        sync_container(CountingSource(pages=10, fail_at=6), store, "c")
    assert store.sync_state("ep", "c").cursor == "6" and store.count_files("ep") == 60
    assert [log.status for log in store.sync_logs("ep")] == ["failed"]
    assert store.sync_logs("ep")[0].error == "endpoint 'ep', container 'c': GET /page: HTTP 500"
    resumed = CountingSource(pages=10)
    stats = sync_container(resumed, store, "c")
    assert resumed.produced == 4 and stats.added == 40 and store.count_files("ep") == 100


def test_a_store_failure_stops_the_fetcher(tmp_path):
    source = CountingSource(pages=1000)

    class Broken(SQLiteStore):
        def apply_page(self, endpoint, container, page, **sync):
            if page.cursor == "3":
                raise RuntimeError("disk full")
            return super().apply_page(endpoint, container, page, **sync)

    store = Broken(tmp_path / "x.db")
    store.migrate()
    with pytest.raises(RuntimeError, match="disk full"):
        sync_container(source, store, "c")
    time.sleep(0.3)
    assert source.produced <= 7  # stopped, not fetching the other thousand pages in the background
    assert store.sync_state("ep", "c").cursor == "2"


class ThrottledServer:
    """A real HTTP server on 127.0.0.1: page 0 answers, every later page is 503 with Retry-After: 100."""

    def __init__(self):
        import http.server

        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                ok = self.path.endswith("/0")
                body = b'{"n": 0}' if ok else b'{"error": {"code": "serviceNotAvailable", "message": "busy"}}'
                self.send_response(200 if ok else 503)
                if not ok:
                    self.send_header("Retry-After", "100")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class HttpPagesSource(CountingSource):
    """Each page is one GET through the shared HttpClient, which honours the source's cancel event."""

    def __init__(self, url: str):
        super().__init__(pages=10)
        from file_connector_dagster.sources.http import HttpClient, RetryPolicy

        self.client = HttpClient("endpoint 'ep', container 'c'", policy=RetryPolicy(max_wait_s=300),
                                 cancel=self.cancel_event)
        self.url = url

    def sync(self, container, cursor, folders):
        for n in range(self.pages):
            self.client.get_json(f"{self.url}/page/{n}")
            yield ChangePage(upserts=[FileRecord(f"{n}", f"{n}.txt", f"{n}.txt", change_key="k")], cursor=str(n + 1),
                             last=n == self.pages - 1)


def test_a_failed_sync_stops_the_fetchers_retry_wait_at_once(tmp_path):
    """The store fails while the fetch thread waits out a Retry-After of 100 s: the sync ends at once, the
    thread stops with it and sends nothing more (it used to retry for minutes after the lease was freed)."""
    server = ThrottledServer()

    class Broken(SQLiteStore):
        def apply_page(self, endpoint, container, page, **sync):
            time.sleep(0.5)  # meanwhile the fetcher gets its 503 and starts waiting
            raise RuntimeError("disk full")

    store = Broken(tmp_path / "x.db")
    store.migrate()
    source = HttpPagesSource(server.url)
    try:
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="disk full"):
            sync_container(source, store, "c")
        assert time.monotonic() - started < 5
        assert not [t for t in threading.enumerate() if t.name == "page-prefetch"]
        requests = server.requests
        assert requests == 2  # page 0, then page 1's 503
        time.sleep(0.5)
        assert server.requests == requests
        assert store.sync_logs("ep")[0].status == "failed" and store.sync_state("ep", "c").running_sync is None

        # the same source syncs again afterwards: the event is cleared when a sync starts
        healthy = SQLiteStore(tmp_path / "y.db")
        healthy.migrate()
        source.pages = 1
        assert sync_container(source, healthy, "c").added == 1
    finally:
        server.stop()


def test_a_sync_tunes_the_interpreter_while_it_runs_and_restores_it_after(tmp_path):
    """engine.tuned_for_sync: while any sync of this process runs, the heap alive at its start is frozen out
    of the garbage collector's walks and threads hand the GIL over within SWITCH_INTERVAL_S; both come back
    when the last one ends, also when a sync fails, and also when syncs overlap in threads."""
    import gc
    import sys

    from file_connector_dagster import engine

    seen: list[tuple[float, int]] = []

    class Watching(CountingSource):
        def sync(self, container, cursor, folders):
            for page in super().sync(container, cursor, folders):
                seen.append((sys.getswitchinterval(), gc.get_freeze_count()))
                yield page

    before = sys.getswitchinterval()
    store = SQLiteStore(tmp_path / "x.db")
    store.migrate()
    sync_container(Watching(pages=3), store, "c")
    assert seen and all(interval == engine.SWITCH_INTERVAL_S and frozen > 0 for interval, frozen in seen)
    assert (sys.getswitchinterval(), gc.get_freeze_count()) == (before, 0)

    with pytest.raises(SourceError):
        sync_container(Watching(pages=3, fail_at=1), store, "other")
    assert (sys.getswitchinterval(), gc.get_freeze_count()) == (before, 0)

    # overlapping syncs: the first to end leaves the tuning to the other, the last restores it
    inside, release = threading.Event(), threading.Event()
    with engine.tuned_for_sync():
        thread = threading.Thread(target=lambda: _hold(engine, inside, release))
        thread.start()
        assert inside.wait(5)
    assert sys.getswitchinterval() == engine.SWITCH_INTERVAL_S  # the thread's sync still runs
    release.set()
    thread.join(5)
    assert (sys.getswitchinterval(), gc.get_freeze_count()) == (before, 0)


def _hold(engine, inside: threading.Event, release: threading.Event) -> None:
    with engine.tuned_for_sync():
        inside.set()
        release.wait(5)
