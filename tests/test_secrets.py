"""A store password from an environment reference never lands anywhere: not under DAGSTER_HOME (run and
event storage, compute logs), not in the store, not in any output, whether the sync works or the store
fails. Inline passwords are refused without being echoed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from file_connector_dagster.errors import secret_forms

from .servers import free_port, mongo_database_name

SECRET = "Alpha9/Bravo8 Charlie7%41@Delta6"  # '/', ' ', '%' and '@': the characters that used to escape masking
FRAGMENTS = ("Alpha9", "Bravo8", "Charlie7", "Delta6")  # a partial leak (a DSN cut at '/' or ' ') shows one of these
ENV = "FC_TEST_STORE_PW"


def leaks(data: bytes | str) -> list[str]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return sorted({f for f in (*secret_forms(SECRET), *FRAGMENTS) if f in text})


def cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "file_connector_dagster.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "share/alpha").mkdir(parents=True)
    for i in range(3):
        (tmp_path / f"share/alpha/f{i}.txt").write_text(str(i))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return tmp_path


def write_config(workdir: Path, name: str, store: dict) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"store": store, "endpoints": [
        {"name": "share", "type": "local", "endpoint_details": {"roots": "share", "containers": "subfolders"}}]}))
    return path


def defs_endpoint(path: Path):
    from file_connector_dagster.config import load_config

    return load_config(path).endpoints[0]


def test_a_store_password_never_lands_anywhere(workdir, pg_dsn, mongo_uri, monkeypatch, capfd):
    monkeypatch.setenv(ENV, SECRET)
    monkeypatch.setenv("DAGSTER_HOME", str(workdir / "dagster_home"))
    env = {**os.environ}
    server, dbname = pg_dsn.rsplit("/", 1)
    userinfo = f"postgres:${{{ENV}}}@"
    working = write_config(workdir, "ok", {"type": "postgres", "dsn": server.replace("postgres@", userinfo) + "/" + dbname})
    configs = {
        "missing-db": {"type": "postgres", "dsn": server.replace("postgres@", userinfo) + "/fc_no_such_db"},
        "unreachable": {"type": "postgres", "dsn": f"postgresql://postgres:${{{ENV}}}@127.0.0.1:{free_port()}/db"},
        "keyword-dsn": {"type": "postgres", "dsn": f"host=127.0.0.1 port={free_port()} user=app password=${{{ENV}}}"},
        "mongo-auth": {"type": "mongo", "uri": mongo_uri.replace("mongodb://", f"mongodb://app:${{{ENV}}}@"),
                       "database": mongo_database_name()},
    }
    failing = {name: write_config(workdir, name, store) for name, store in configs.items()}

    from file_connector_dagster.cli import main as cli_main
    from file_connector_dagster.defs.resources import _cached_config

    def run(*args: str) -> int:
        _cached_config.cache_clear()
        code = cli_main(list(args))
        captured = capfd.readouterr()
        outputs.extend([captured.out, captured.err])
        assert "Traceback" not in captured.err, captured.err
        return code

    outputs: list[str] = []
    proc = cli("sync", "--config", str(working), env=env, cwd=workdir)  # one real process, as a user runs it
    outputs += [proc.stdout, proc.stderr]
    assert proc.returncode == 0 and "alpha" in proc.stdout, proc.stdout + proc.stderr
    for args in (("validate",), ("sync", "--full"), ("status",), ("health",)):
        assert run(*args, "--config", str(working)) == 0, outputs[-2:]
    for name, path in failing.items():
        assert run("sync", "--config", str(path)) != 0, (name, outputs[-2:])
        assert run("health", "--config", str(path)) != 0, (name, outputs[-2:])
        run("status", "--config", str(path))
    assert any("fc_no_such_db" in o for o in outputs)  # the failures were real and reported

    # Dagster itself, in process, on the instance under DAGSTER_HOME: the endpoint's job, and failing runs
    from dagster import DagsterInstance, materialize

    from file_connector_dagster.defs.assets import files_key, listing_key

    from file_connector_dagster.defs import build_definitions
    from file_connector_dagster.defs.triggers import job_name

    instance = DagsterInstance.get()
    instance.add_dynamic_partitions("share_containers", ["alpha"])
    _cached_config.cache_clear()
    defs = build_definitions(working)
    result = defs.resolve_job_def(job_name(defs_endpoint(working))).execute_in_process(
        partition_key="alpha", instance=instance, raise_on_error=False)
    assert result.success
    outputs.extend(str(event) for event in result.all_events)
    for path in (failing["missing-db"], failing["mongo-auth"]):
        _cached_config.cache_clear()
        defs = build_definitions(path)
        assets = [defs.resolve_assets_def(key("share")) for key in (listing_key, files_key)]
        result = materialize(assets, partition_key="alpha", instance=instance, raise_on_error=False)
        assert not result.success
        outputs.extend(str(event) for event in result.all_events)
    instance.dispose()

    found = {}
    for file in (workdir / "dagster_home").rglob("*"):
        if file.is_file() and leaks(file.read_bytes()):
            found[str(file)] = leaks(file.read_bytes())
    assert list((workdir / "dagster_home").rglob("*.db")), "the runs did not reach DAGSTER_HOME"
    assert not found, found
    for output in outputs:
        assert not leaks(output), output

    import psycopg2

    with psycopg2.connect(pg_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT row_to_json(t)::text FROM "{table}" t')
            rows = [r[0] for r in cur.fetchall()]
            assert not [r for r in rows if leaks(r)], table
        cur.execute("SELECT count(*) FROM files WHERE deleted_at IS NULL")
        assert cur.fetchone()[0] == 3
        cur.execute("SELECT count(*) FROM sync_logs WHERE status = 'success'")
        assert cur.fetchone()[0] >= 3


@pytest.mark.parametrize("store", [
    {"type": "postgres", "dsn": "postgresql://app:Hunter2Inline@db:5432/inv"},
    {"type": "postgres", "dsn": "host=db user=app password=Hunter2Inline dbname=inv"},
    {"type": "mongo", "uri": "mongodb://app:Hunter2Inline@db:27017/"},
], ids=["uri", "keywords", "mongo"])
def test_an_inline_password_is_refused_and_never_printed(workdir, store, capfd):
    from file_connector_dagster.cli import main as cli_main

    path = write_config(workdir, "inline", store)
    for command in ("validate", "status", "sync"):
        assert cli_main([command, "--config", str(path)]) == 2
        captured = capfd.readouterr()
        assert "Hunter2Inline" not in captured.out + captured.err
        assert len(captured.err.strip().splitlines()) == 1 and "environment reference" in captured.err


def test_store_labels_and_errors_carry_no_credentials():
    from file_connector_dagster.errors import StoreError
    from file_connector_dagster.stores.mongo import _label as mongo_label
    from file_connector_dagster.stores.postgres import PostgresStore

    assert mongo_label("mongodb://app:pa/ss@w@db1:27017,db2/?authSource=admin", "inv") == "mongo:db1:27017,db2/inv"
    # a DSN libpq cannot parse is quoted back by libpq: the store's message must not repeat it
    with pytest.raises(StoreError) as caught:
        PostgresStore("postgresql://app:" + SECRET + "@127.0.0.1:1/db", connect_timeout=1)
    assert not leaks(str(caught.value)), str(caught.value)
    with pytest.raises(StoreError) as caught:
        PostgresStore(f"postgresql://app@127.0.0.1:{free_port()}/db", connect_timeout=1, password=SECRET)
    assert not leaks(str(caught.value)) and "cannot connect" in str(caught.value)
