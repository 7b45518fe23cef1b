"""The database goes away mid-sync: the sync fails with one clear line, the cursor stays at the last
committed page, and a re-run completes with no duplicates and nothing lost."""

from __future__ import annotations

import json

import psycopg2
import pytest

from file_connector_dagster.engine import sync_container
from file_connector_dagster.errors import StoreError
from file_connector_dagster.stores.mongo import MongoStore
from file_connector_dagster.stores.postgres import PostgresStore

from .helpers import ENDPOINT, ListSource, all_files, rec

C = "library"
FILES = {C: [rec(n, path=f"dir{n % 7}/{n}.txt") for n in range(500)]}


def _check_recovery(store, source: ListSource) -> None:
    """After the failure: the cursor is at the last committed page; a re-run finishes the listing."""
    state = store.sync_state(ENDPOINT, C)
    assert json.loads(state.cursor) == {"next": 200} and state.listing_in_progress  # pages 1-2 committed
    rerun = sync_container(source, store, C)
    assert rerun.status == "success" and rerun.added == 300 and rerun.deleted == 0
    files = all_files(store)  # fails on a duplicate row
    assert set(files) == {r.external_id for r in FILES[C]} and not any(f.is_deleted for f in files.values())
    assert store.sync_state(ENDPOINT, C).cursor == "done"
    assert [log.status for log in store.sync_logs(ENDPOINT)] == ["success", "failed"]


def test_postgres_connection_killed_mid_sync(pg_dsn):
    store = PostgresStore(pg_dsn)
    store.migrate()
    dbname = pg_dsn.rsplit("/", 1)[1]

    def kill_connections(pages_served: int) -> None:
        if pages_served == 2:
            admin = psycopg2.connect(pg_dsn)
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
                assert cur.fetchone()[0] >= 1
            admin.close()

    source = ListSource(FILES, page_size=100, between_pages=kill_connections)
    with pytest.raises(StoreError) as caught:  # no prefetch: the kill lands right after page 2 commits
        sync_container(source, store, C, prefetch=0)
    message = str(caught.value)
    assert message.startswith(f"postgres:127.0.0.1:5432/{dbname}: apply page of {ENDPOINT}/{C}: ")
    assert "connection" in message and "\n" not in message

    source.between_pages = None
    _check_recovery(store, source)  # the same store reconnects
    fresh = PostgresStore(pg_dsn)
    assert fresh.count_files(ENDPOINT) == 500
    fresh.close()
    store.close()


def test_postgres_unreachable_is_one_line():
    with pytest.raises(StoreError) as caught:
        PostgresStore("postgresql://postgres:secret@127.0.0.1:1/inventory", connect_timeout=2)
    message = str(caught.value)
    assert message.startswith("postgres:127.0.0.1:1/inventory: connect: cannot connect: ")
    assert "secret" not in message and "\n" not in message


def test_mongo_server_killed_mid_sync(mongo_server):
    store = MongoStore(mongo_server.uri, "inventory")
    store.migrate()

    def kill_server(pages_served: int) -> None:
        if pages_served == 2:
            mongo_server.kill()

    source = ListSource(FILES, page_size=100, between_pages=kill_server)
    with pytest.raises(StoreError) as caught:  # no prefetch: the kill lands right after page 2 commits
        sync_container(source, store, C, prefetch=0)
    message = str(caught.value)
    assert message.startswith(f"mongo:127.0.0.1:{mongo_server.port}/inventory: apply page of {ENDPOINT}/{C}: ")
    assert "\n" not in message

    mongo_server.start()  # same port, same storage path
    source.between_pages = None
    # the failed run could not record its end while the server was down: the re-run takes over its
    # lease (same process, so that sync is over) and marks its log "interrupted"
    state = store.sync_state(ENDPOINT, C)
    assert json.loads(state.cursor) == {"next": 200} and state.listing_in_progress
    rerun = sync_container(source, store, C)
    assert rerun.status == "success" and rerun.added == 300 and rerun.deleted == 0
    files = all_files(store)
    assert set(files) == {r.external_id for r in FILES[C]} and not any(f.is_deleted for f in files.values())
    assert [log.status for log in store.sync_logs(ENDPOINT)] == ["success", "interrupted"]
    store.close()
