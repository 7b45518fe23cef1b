"""The seeded fault suite (tests/faults.py) over every source and store: 300 schedules, most on SQLite, a
smaller share on PostgreSQL and MongoDB. `make soak` runs 10,000 (SQLite)."""

from __future__ import annotations

import pytest

from file_connector_dagster.stores.sqlite import SQLiteStore

from . import faults
from .fakes.graph import FakeGraph
from .fakes.tls import make_tls

SCHEDULES = {  # (source, store): schedules; 300 in all
    ("local", "sqlite"): 127, ("sharepoint", "sqlite"): 120,
    ("local", "postgres"): 20, ("sharepoint", "postgres"): 15,
    ("local", "mongo"): 10, ("sharepoint", "mongo"): 8,  # the test MongoDB server is slow
}
SEED = 20261129


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    with FakeGraph(tls=make_tls(tmp_path_factory.mktemp("fault-tls"))) as fake:
        yield fake


@pytest.mark.parametrize("source_kind,store_kind", list(SCHEDULES), ids=[f"{a}-{b}" for a, b in SCHEDULES])
def test_fault_schedules(source_kind, store_kind, graph, tmp_path, request, monkeypatch):
    monkeypatch.setenv(faults.GRAPH_SECRET_ENV, graph.client_secret)
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
    ctx = faults.Context(graph, open_store, store_kind, source_kind)
    faults.run(ctx, SCHEDULES[(source_kind, store_kind)], SEED)
    assert ctx.schedules >= SCHEDULES[(source_kind, store_kind)]
