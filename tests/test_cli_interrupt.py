"""`file-connector sync` as a user runs it, in a real process: Ctrl-C stops the whole command at once (the
sync in progress recorded as interrupted, its lease released, one line, exit 130), and failures are one
line each instead of Dagster's stack traces."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .servers import free_port

CONTAINERS, FILES = 4, 1500


def cli(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    return subprocess.Popen([sys.executable, "-m", "file_connector_dagster.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def make_tree(base: Path, containers: int = CONTAINERS, files: int = FILES) -> None:
    for c in range(containers):
        for i in range(files):
            folder = base / f"share/c{c}/d{i % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f{i:05}.txt").write_text("x")


def test_ctrl_c_stops_the_whole_sync(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "connector.yaml").write_text(
        "store: {type: sqlite, path: inv.db}\nendpoints:\n"
        "  - {name: share, type: local, endpoint_details: {roots: share, containers: subfolders, page_size: 25}}\n")
    proc = cli("sync", "--config", "connector.yaml", cwd=tmp_path)
    db = tmp_path / "inv.db"
    deadline = time.monotonic() + 240
    mid_listing = None
    while mid_listing is None:  # wait until a listing has committed a page and holds its lease
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
        if not db.exists():
            continue
        try:
            with sqlite3.connect(db, timeout=1) as conn:
                mid_listing = conn.execute("SELECT container FROM sync_state WHERE running_sync IS NOT NULL "
                                           "AND listing_in_progress").fetchone()
        except sqlite3.Error:
            pass
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    out, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    assert proc.returncode == 130, (out, err)
    assert took < 15, took  # promptly: the sync in progress stops before its next page
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"interrupted during share/{mid_listing[0]}: "), err

    with sqlite3.connect(db) as conn:
        logs = dict(conn.execute("SELECT container, status FROM sync_logs"))
        leases = conn.execute("SELECT count(*) FROM sync_state WHERE running_sync IS NOT NULL").fetchone()[0]
        committed = conn.execute("SELECT count(*) FROM files").fetchone()[0]
    assert logs[mid_listing[0]] == "interrupted" and "running" not in logs.values()
    assert len(logs) < CONTAINERS  # the containers after it never started
    assert leases == 0  # released: the next sync need not wait for the lease to run out
    assert committed < CONTAINERS * FILES

    proc = cli("sync", "--config", "connector.yaml", cwd=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT external_id) FROM files WHERE deleted_at IS NULL"
                            ).fetchone() == (CONTAINERS * FILES, CONTAINERS * FILES)


def test_store_failures_are_one_line(tmp_path):
    make_tree(tmp_path, containers=3, files=3)
    (tmp_path / "connector.yaml").write_text(
        f"store: {{type: postgres, dsn: 'postgresql://postgres@127.0.0.1:{free_port()}/inv'}}\nendpoints:\n"
        "  - {name: share, type: local, endpoint_details: {roots: share, containers: subfolders}}\n")
    out, err = cli("sync", "--config", "connector.yaml", cwd=tmp_path).communicate(timeout=120)
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith("error: postgres:127.0.0.1:"), err
    assert "cannot connect" in lines[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the sync as another user")
def test_read_only_store_is_one_line(capfd, monkeypatch):
    from file_connector_dagster.cli import main as cli_main

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    base = Path(tempfile.mkdtemp(prefix="fc-readonly-"))  # outside root's private pytest folder
    try:
        make_tree(base, containers=2, files=3)
        config = base / "connector.yaml"
        config.write_text(
            "store: {type: sqlite, path: store/inv.db}\nendpoints:\n"
            "  - {name: share, type: local, endpoint_details: {roots: share, containers: subfolders}}\n")
        assert cli_main(["sync", "--config", str(config)]) == 0
        capfd.readouterr()
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (base / "store").chmod(0o555)  # the store can be read, not written
        os.seteuid(65534)  # root writes anyway: sync as nobody (in process: nobody may not run our venv)
        try:
            code = cli_main(["sync", "--config", str(config)])
        finally:
            os.seteuid(0)
        out, err = capfd.readouterr()
        lines = err.strip().splitlines()
        assert code == 1 and out == "" and len(lines) == 1 and "Traceback" not in err, (out, err)
        assert lines[0].startswith("error: sqlite:"), err
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_failing_container_is_one_line_in_the_table(tmp_path):
    make_tree(tmp_path, containers=2, files=30)
    (tmp_path / "connector.yaml").write_text(
        "store: {type: sqlite, path: inv.db}\nendpoints:\n"
        "  - {name: share, type: local, endpoint_details: {roots: share, containers: subfolders}}\n")
    assert cli("sync", "--config", "connector.yaml", cwd=tmp_path).wait(timeout=120) == 0
    for file in (tmp_path / "share/c1").rglob("*.txt"):
        file.unlink()  # every file of c1 gone at once: the mass-delete guard refuses the sync
    proc = cli("sync", "--config", "connector.yaml", cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and err == "", err
    rows = {line.split()[1]: line for line in out.strip().splitlines()[1:]}
    assert rows["c0"].endswith(" ok") and "failed: " in rows["c1"] and "--allow-mass-delete" in rows["c1"]
