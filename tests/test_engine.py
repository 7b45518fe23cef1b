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
