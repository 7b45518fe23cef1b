"""Records and a scripted source for driving stores in tests."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Callable, Iterator, Mapping

from pydantic import BaseModel

from file_connector_dagster.records import ChangePage, FileRecord, Folder
from file_connector_dagster.sources.base import Container, Health, Source
from file_connector_dagster.stores.base import Store

ENDPOINT = "docs"


def rec(n: int | str, change_key: str = "v1", path: str | None = None, title: str | None = None,
        **fields: object) -> FileRecord:
    """A file record with id f{n}; path and title follow from n unless given."""
    name = title or f"file{n}.txt"
    values: dict = dict(
        external_id=f"f{n}", title=name, path=path or f"folder/{name}", endpoint=ENDPOINT,
        file_link=f"https://example.test/f{n}", date_created=datetime(2024, 1, 1, tzinfo=timezone.utc),
        date_updated=datetime(2024, 6, 1, 12, 30, tzinfo=timezone.utc), size=100, mime_type="text/plain",
        change_key=change_key, project_id="proj", user_id="user", metadata={"n": str(n), "hashes": {}})
    return FileRecord(**{**values, **fields})


def all_files(store: Store, container: str | None = None, include_deleted: bool = True,
              endpoint: str = ENDPOINT) -> dict[str, FileRecord]:
    """Every stored file by external id; fails on a duplicate id."""
    found: dict[str, FileRecord] = {}
    for page in store.iter_files(endpoint, container, include_deleted=include_deleted, page_size=333):
        for record in page:
            assert record.external_id not in found, f"duplicate row for {record.external_id}"
            found[record.external_id] = record
    return found


class NoDetails(BaseModel):
    pass


class ListSource(Source):
    """A provider whose container holds a fixed list of files, listed in pages (always a full listing).

    The cursor is the index of the next file, or "done" after the last page; a "done" cursor asks for a
    delta, which this provider answers with an empty last page. `between_pages(n)` runs after page n was
    handed out and before page n+1 is built: tests use it to break the database mid-sync.
    """

    type_name = "scripted"
    Details = NoDetails

    def __init__(self, files: dict[str, list[FileRecord]], page_size: int = 100,
                 between_pages: Callable[[int], None] | None = None):
        super().__init__(ENDPOINT, NoDetails())
        self.files = files
        self.page_size = page_size
        self.between_pages = between_pages
        self.pages_served = 0

    def containers(self) -> list[Container]:
        return [Container(key=k, name=k) for k in self.files]

    def health(self) -> Health:
        return Health(ok=True)

    def sync(self, container: str, cursor: str | None, folders: Mapping[str, Folder]) -> Iterator[ChangePage]:
        if cursor == "done":
            yield ChangePage(cursor="done", last=True)
            return
        files = self.files[container]
        start = json.loads(cursor)["next"] if cursor else 0
        first = True
        for i in range(start, max(len(files), 1), self.page_size):
            if not first and self.between_pages:
                self.between_pages(self.pages_served)
            chunk = files[i:i + self.page_size]
            last = i + self.page_size >= len(files)
            self.pages_served += 1
            yield ChangePage(upserts=list(chunk), cursor="done" if last else json.dumps({"next": i + self.page_size}),
                             full_listing=True, starts_listing=start == 0 and first, last=last, api_calls=1)
            first = False
