"""Fixtures that start or reach real database servers.

- PostgreSQL: the server at 127.0.0.1:5432 (user postgres, trust auth); started with pg_ctlcluster if it is
  down; every test gets its own database, dropped afterwards.
- MongoDB wire protocol: a secantusd-py server (secantusdb, GPL, test-only: launched as a process, never
  imported) started once per session; FILE_CONNECTOR_TEST_MONGO_URI points the suite at a real mongod
  instead. Every test gets its own database.
- `store`: an opened and migrated Store, parametrized over sqlite, postgres and mongo.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sysconfig
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

PG_ADMIN_DSN = os.environ.get("FILE_CONNECTOR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
MONGO_URI_ENV = "FILE_CONNECTOR_TEST_MONGO_URI"
STORE_TYPES = ("sqlite", "postgres", "mongo")


def script(name: str) -> str:
    """A console script of this interpreter's environment, found without PATH (pyenv shims appear
    only after a rehash, which `python -m pip install` does not run)."""
    path = Path(sysconfig.get_path("scripts")) / name
    return str(path) if path.exists() else (shutil.which(name) or name)


# -- PostgreSQL -------------------------------------------------------------------------------------

def _pg_admin():
    import psycopg2

    conn = psycopg2.connect(PG_ADMIN_DSN, connect_timeout=5)
    conn.autocommit = True
    return conn


def _pg_up() -> bool:
    import psycopg2

    try:
        _pg_admin().close()
        return True
    except psycopg2.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_admin_dsn() -> str:
    """The maintenance database's DSN, once the server answers."""
    if not _pg_up():
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "start"],
                       capture_output=True, check=False)
        deadline = time.monotonic() + 30
        while not _pg_up():
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL is not answering at {PG_ADMIN_DSN} and "
                            "`pg_ctlcluster --skip-systemctl-redirect 15 main start` did not start it")
            time.sleep(0.5)
    return PG_ADMIN_DSN


def pg_dsn_for(admin_dsn: str, dbname: str) -> str:
    return admin_dsn.rsplit("/", 1)[0] + "/" + dbname


@pytest.fixture
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh, empty database for this test; dropped afterwards (its connections too)."""
    name = f"fc_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')  # name is ours, never user input
    finally:
        admin.close()
    yield pg_dsn_for(pg_admin_dsn, name)
    admin = _pg_admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


# -- MongoDB wire protocol --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MongoServer:
    """A secantusd-py process on 127.0.0.1; restartable on the same port and storage path."""

    def __init__(self, storage: Path, port: int | None = None, extra_args: tuple[str, ...] = ()):
        self.storage = storage
        self.extra_args = extra_args
        self.port = port or free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/?serverSelectionTimeoutMS=5000&connectTimeoutMS=5000"
        self.process: subprocess.Popen | None = None
        self.log = storage.parent / f"{storage.name}.log"

    def start(self, timeout: float = 60) -> "MongoServer":
        exe = script("secantusd-py")
        if not Path(exe).exists():
            pytest.fail("secantusd-py not found: pip install 'secantusdb==0.7.0b3' (or set "
                        f"{MONGO_URI_ENV} to a real mongod)")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [exe, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", str(self.storage),
                 "--log-level", "WARNING", *self.extra_args], stdout=log, stderr=subprocess.STDOUT)
        self._wait(timeout)
        return self

    def _wait(self, timeout: float) -> None:
        import pymongo

        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"secantusd-py exited with {self.process.returncode}; see {self.log}")
            try:
                with pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=500) as client:
                    client.admin.command("ping")
                return
            except pymongo.errors.PyMongoError:
                if time.monotonic() > deadline:
                    self.kill()
                    pytest.fail(f"secantusd-py did not answer a ping on port {self.port} within {timeout}s")
                time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: the way a crashed or unplugged server goes away."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self.process = None


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MongoDB-wire server for the session (or FILE_CONNECTOR_TEST_MONGO_URI's real mongod)."""
    if os.environ.get(MONGO_URI_ENV):
        yield os.environ[MONGO_URI_ENV]
        return
    server = MongoServer(tmp_path_factory.mktemp("secantus") / "data").start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def mongo_server(tmp_path: Path) -> Iterator[MongoServer]:
    """A secantus server of this test's own, which the test may kill and restart."""
    if os.environ.get(MONGO_URI_ENV):
        pytest.skip(f"{MONGO_URI_ENV} is set: the suite does not kill a server it did not start")
    # fsync on commit: a page the store saw committed must survive the SIGKILL the test sends
    server = MongoServer(tmp_path / "mongo-data", extra_args=("--sync-on-commit",)).start()
    try:
        yield server
    finally:
        server.stop()


def drop_mongo_database(uri: str, database: str) -> None:
    import pymongo

    # a bounded wait: a drop that hangs (a test left a transaction open) fails the teardown, not the whole run
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000, socketTimeoutMS=120_000) as client:
        client.drop_database(database)


def mongo_database_name() -> str:
    return f"fc_test_{uuid.uuid4().hex[:12]}"


# -- stores -----------------------------------------------------------------------------------------
@pytest.fixture
def store_factory(request: pytest.FixtureRequest, tmp_path: Path):
    """Opens more stores on the same database as `store` (for concurrency tests): call it with the type."""
    opened = []
    targets: dict[str, object] = {}

    def open_store(store_type: str):
        from file_connector_dagster.stores.mongo import MongoStore
        from file_connector_dagster.stores.postgres import PostgresStore
        from file_connector_dagster.stores.sqlite import SQLiteStore

        if store_type == "sqlite":
            store = SQLiteStore(tmp_path / "inventory.db")
        elif store_type == "postgres":
            if "postgres" not in targets:
                targets["postgres"] = request.getfixturevalue("pg_dsn")
            store = PostgresStore(targets["postgres"])
        else:
            if "mongo" not in targets:
                uri = request.getfixturevalue("mongo_uri")
                targets["mongo"] = (uri, mongo_database_name())
                request.addfinalizer(lambda: drop_mongo_database(*targets["mongo"]))
            store = MongoStore(*targets["mongo"])
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture(params=STORE_TYPES)
def store_type(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store(store_type: str, store_factory):
    """An opened, migrated store of each type."""
    store = store_factory(store_type)
    store.migrate()
    return store
