"""Third-party sources plug in by entry point or register_source, and work end to end."""

import sys
import textwrap

from file_connector_dagster.config import parse_config
from file_connector_dagster.engine import sync_container
from file_connector_dagster.sources import base, build_source
from file_connector_dagster.stores.sqlite import SQLiteStore

PLUGIN = '''
from typing import Iterator
from pydantic import BaseModel
from file_connector_dagster.records import ChangePage, FileRecord
from file_connector_dagster.sources.base import Container, Health, Source

class DropboxDetails(BaseModel):
    folder: str

class DropboxSource(Source):
    type_name = "dropbox"
    Details = DropboxDetails

    def containers(self):
        return [Container(self.details.folder, self.details.folder)]

    def sync(self, container, cursor, folders) -> Iterator[ChangePage]:
        yield ChangePage(upserts=[FileRecord("db-1", "a.txt", "a.txt", change_key="v1")], cursor="c", last=True)

    def health(self):
        return Health(ok=True)
'''


def test_entry_point_source_is_found_and_syncs(tmp_path, monkeypatch):
    (tmp_path / "fc_dropbox.py").write_text(PLUGIN)
    dist = tmp_path / "fc_dropbox-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fc-dropbox\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[file_connector.sources]\ndropbox = fc_dropbox:DropboxSource\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    base.source_types()  # built-ins first
    monkeypatch.setattr(base, "_entry_points_loaded", False)
    try:
        config = parse_config({"endpoints": [{"name": "box", "type": "dropbox", "endpoint_details": {"folder": "Team"}}]})
        source = build_source(config, config.endpoints[0])
        assert type(source).__name__ == "DropboxSource" and [c.key for c in source.containers()] == ["Team"]
        store = SQLiteStore(tmp_path / "x.db")
        store.migrate()
        assert sync_container(source, store, "Team").added == 1
    finally:
        base._REGISTRY.pop("dropbox", None)
        sys.modules.pop("fc_dropbox", None)


def test_register_source_explicitly(tmp_path, monkeypatch):
    namespace: dict = {}
    exec(compile(PLUGIN, "plugin", "exec"), namespace)
    base.source_types()
    monkeypatch.setitem(base._REGISTRY, "dropbox2", None)  # restored (removed) after the test
    base.register_source("dropbox2", namespace["DropboxSource"])
    config = parse_config({"endpoints": [{"name": "box", "type": "dropbox2", "endpoint_details": {"folder": "X"}}]})
    assert type(build_source(config, config.endpoints[0])).__name__ == "DropboxSource"
    assert "dropbox2" in base.source_types() and {"local", "sharepoint"} <= set(base.source_types())
