"""What is particular to MongoDB: collections and indexes, BSON dates, servers without transactions."""

from __future__ import annotations

from datetime import datetime

import pymongo
import pytest

from file_connector_dagster.errors import StoreError
from file_connector_dagster.records import ChangePage, PageStats
from file_connector_dagster.stores.migrations import LATEST_VERSION
from file_connector_dagster.stores.mongo import MongoStore

from ..servers import MongoServer, drop_mongo_database, mongo_database_name
from .helpers import ENDPOINT, all_files, rec


@pytest.fixture
def mongo_db(mongo_uri):
    name = mongo_database_name()
    yield name
    drop_mongo_database(mongo_uri, name)


def test_collections_and_indexes(mongo_uri, mongo_db):
    with MongoStore(mongo_uri, mongo_db) as store:
        assert store.migrate() == store.migrate() == LATEST_VERSION
    with pymongo.MongoClient(mongo_uri) as client:
        db = client[mongo_db]
        assert {"files", "endpoints", "sync_state", "sync_logs", "folders", "listing_seen", "schema_version"} <= set(
            db.list_collection_names())
        keys = {name: (info["key"], info.get("unique", False)) for name, info in db.files.index_information().items()}
        assert keys["files_endpoint_external_id"] == ([("endpoint", 1), ("external_id", 1)], True)
        assert keys["files_endpoint_updated"][0] == [("endpoint", 1), ("updated_at", -1)]
        assert keys["files_project"][0] == [("project_id", 1)]
        assert keys["files_date_updated"][0] == [("date_updated", -1)]
        assert keys["files_container_updated"][0] == [("endpoint", 1), ("container", 1), ("updated_at", 1),
                                                      ("external_id", 1)]
        logs = {name: info["key"] for name, info in db.sync_logs.index_information().items()}
        assert logs["sync_logs_endpoint_started"] == [("endpoint", 1), ("started", -1)]
        assert logs["sync_logs_status"] == [("status", 1)]


def test_dates_are_bson_dates_and_aware_on_read(mongo_uri, mongo_db):
    with MongoStore(mongo_uri, mongo_db) as store:
        store.migrate()
        store.apply_page(ENDPOINT, "c", ChangePage(upserts=[rec(1)], cursor="1"))
        sync_id = store.start_sync(ENDPOINT, "c")
        assert isinstance(sync_id, str) and len(sync_id) == 24  # an ObjectId
        stored = all_files(store)["f1"]
        assert stored.updated_at.tzinfo is not None and stored.date_updated == rec(1).date_updated
    with pymongo.MongoClient(mongo_uri) as client:  # a plain client: naive UTC datetimes mean BSON dates
        doc = client[mongo_db].files.find_one({"external_id": "f1"})
        assert isinstance(doc["updated_at"], datetime) and isinstance(doc["first_seen_at"], datetime)
        assert isinstance(doc["metadata"], dict)


def test_standalone_server_without_transactions(tmp_path):
    """A standalone mongod has no transactions: rows first, cursor last, and a replay is harmless."""
    server = MongoServer(tmp_path / "standalone", extra_args=("--standalone",)).start()
    try:
        with MongoStore(server.uri, "inventory") as store:
            store.migrate()
            assert not store._supports_transactions()
            store.apply_page(ENDPOINT, "c", ChangePage(upserts=[rec(1)], cursor="c1"))
            with pytest.raises(StoreError):
                store.apply_page(ENDPOINT, "c", ChangePage(upserts=[rec(2), rec(3)], cursor=object()))
            assert store.sync_state(ENDPOINT, "c").cursor == "c1"
            # the rows may be there already; the replay counts them unchanged, never twice
            stats = store.apply_page(ENDPOINT, "c", ChangePage(upserts=[rec(2), rec(3)], cursor="c2"))
            assert stats in (PageStats(unchanged=2), PageStats(added=2))
            assert set(all_files(store)) == {"f1", "f2", "f3"}
            assert store.sync_state(ENDPOINT, "c").cursor == "c2"
    finally:
        server.stop()


def test_bad_database_name_and_unreachable_server():
    with pytest.raises(StoreError, match="invalid database name"):
        MongoStore("mongodb://127.0.0.1:1", "no/slashes")
    with MongoStore("mongodb://user:s3cret@127.0.0.1:1/?serverSelectionTimeoutMS=300", "inv") as store:
        with pytest.raises(StoreError) as caught:
            store.migrate()
    message = str(caught.value)
    assert message.startswith("mongo:127.0.0.1:1/inv: migrate: ") and "s3cret" not in message


def test_upgrade_to_per_file_processing_state(mongo_uri, mongo_db):
    """Version 5 in MongoDB: the processed_until watermark becomes per-file state, as in the SQL stores."""
    from datetime import timezone

    t = lambda day: datetime(2026, 1, day, tzinfo=timezone.utc)  # noqa: E731
    with pymongo.MongoClient(mongo_uri) as client:
        db = client[mongo_db]
        db.schema_version.insert_one({"_id": 4, "description": "collections and indexes"})
        db.sync_state.insert_one({"endpoint": ENDPOINT, "container": "c", "cursor": "x", "processed_until": t(2)})
        for n, (day, excluded, errors) in enumerate([(1, None, []), (1, "glob_filter", []), (1, None, ["x: boom"]),
                                                     (3, None, [])]):
            db.files.insert_one({"endpoint": ENDPOINT, "container": "c", "external_id": f"f{n}", "title": f"f{n}",
                                 "path": f"f{n}", "metadata": {}, "change_key": "v1", "first_seen_at": t(day),
                                 "updated_at": t(day), "deleted_at": None, "excluded_by": excluded,
                                 "processing_errors": errors})
    with MongoStore(mongo_uri, mongo_db) as store:
        assert store.migrate() == LATEST_VERSION
        files = all_files(store)
        assert {k: (f.processing_status, f.processed_key) for k, f in files.items()} == {
            "f0": ("processed", "v1"), "f1": ("skipped", "v1"), "f2": ("pending", None), "f3": ("pending", None)}
        assert [r.external_id for p in store.iter_due(ENDPOINT, "c") for r in p] == ["f2", "f3"]


def test_a_write_conflict_is_waited_out_with_backoff_then_fails_in_one_line(mongo_uri, mongo_db):
    """Another transaction holding a page's rows (a concurrent writer, or one a killed process left open
    until the server aborts it) is waited out with backoff; past the budget the page fails in one line
    naming endpoint and container, writes nothing and leaves the cursor."""
    import threading
    import time

    with MongoStore(mongo_uri, mongo_db, conflict_budget_s=2) as store, pymongo.MongoClient(mongo_uri) as other:
        store.migrate()
        store.apply_page(ENDPOINT, "c", ChangePage(upserts=[rec(1)], cursor="1"))
        holder = other.start_session()
        holder.start_transaction()
        try:
            other[mongo_db].files.update_one({"endpoint": ENDPOINT, "external_id": "f1"}, {"$set": {"size": 1}},
                                             session=holder)
            started = time.monotonic()
            with pytest.raises(StoreError) as failure:
                store.apply_page(ENDPOINT, "c", ChangePage(upserts=[rec(1, "v2")], cursor="2"))
            # it stops before a pause would overrun the 2 s budget: with jittered doubling that is 0.4 s or more
            assert 0.4 <= time.monotonic() - started < 8
            message = str(failure.value)
            assert "\n" not in message and f"apply page of {ENDPOINT}/c" in message and "write conflict" in message
            assert "cursor was not advanced" in message and failure.value.retryable
            assert store.sync_state(ENDPOINT, "c").cursor == "1" and all_files(store)["f1"].change_key == "v1"

            # within the budget: the page commits as soon as the other transaction ends
            store.conflict_budget_s = 30
            release = threading.Timer(1.5, holder.abort_transaction)
            release.start()
            started = time.monotonic()
            store.apply_page(ENDPOINT, "c", ChangePage(upserts=[rec(1, "v2")], cursor="2"))
            assert 1.4 <= time.monotonic() - started < 10
            release.join()
            assert store.sync_state(ENDPOINT, "c").cursor == "2" and all_files(store)["f1"].change_key == "v2"
        finally:  # a failed assertion must not leave the transaction open: the database's drop would wait on it
            if holder.in_transaction:
                holder.abort_transaction()
            holder.end_session()
