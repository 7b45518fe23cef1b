"""The seeded fault suite (tests/faults.py) over every source and store, most schedules on SQLite, a
smaller share on PostgreSQL and MongoDB (every source x store pair runs some). `make soak` runs 10,000
(SQLite)."""

from __future__ import annotations


import pytest

from file_connector_dagster.stores.sqlite import SQLiteStore

from . import faults
from .fakes.aps import FakeAPS
from .fakes.drive import FakeDriveService
from .fakes.graph import FakeGraph
from .fakes.tls import make_tls

SCHEDULES = {  # (source, store): schedules
    ("local", "sqlite"): 120, ("sharepoint", "sqlite"): 90,
    ("google_drive", "sqlite"): 45, ("autodesk", "sqlite"): 50,
    ("local", "postgres"): 20, ("sharepoint", "postgres"): 15,
    ("google_drive", "postgres"): 8, ("autodesk", "postgres"): 8,
    ("local", "mongo"): 10, ("sharepoint", "mongo"): 8,  # the test MongoDB server is slow
    ("google_drive", "mongo"): 4, ("autodesk", "mongo"): 4,
}
SEED = 20261129


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    tls = make_tls(tmp_path_factory.mktemp("fault-tls"))
    with FakeGraph(tls=tls) as graph, FakeDriveService(tls=tls, key_dir=tmp_path_factory.mktemp("fault-key")) as drive, \
            FakeAPS(tls=tls) as aps:
        yield graph, drive, aps


@pytest.mark.parametrize("source_kind,store_kind", list(SCHEDULES), ids=[f"{a}-{b}" for a, b in SCHEDULES])
def test_fault_schedules(source_kind, store_kind, fakes, tmp_path, request, monkeypatch):
    graph, drive, aps = fakes
    faults.set_secrets(monkeypatch.setenv, graph, drive, aps)
    if store_kind == "sqlite":
        def open_store():
            store = SQLiteStore(tmp_path / "faults.db")
            store.migrate()
            return store
    else:
        factory = request.getfixturevalue("store_factory")

        def open_store():
            store = factory(store_kind)
            store.migrate()
            return store
    ctx = faults.Context(graph, open_store, store_kind, source_kind, drive=drive, aps=aps)
    if store_kind == "sqlite":  # every fault at least twice, whatever Hypothesis draws
        faults.each_fault_once(ctx)
    faults.run(ctx, SCHEDULES[(source_kind, store_kind)], SEED)
    assert ctx.schedules >= SCHEDULES[(source_kind, store_kind)]
