"""`file-connector sync` in a real process when its SQLite store fails under it: locked by another process
beyond the busy timeout, or out of space (the file cannot grow past RLIMIT_FSIZE, as on a full disk, with
no root-only mount). One clear line, exit code 1, nothing lost, the cursor never past the
committed rows; the next sync finishes the job."""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import time
from pathlib import Path

from .test_cli_interrupt import cli

FILES = 600


def make_share(base: Path, files: int = FILES) -> list[str]:
    for i in range(files):
        folder = base / f"share/docs/d{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05}.txt").write_text("x" * (i % 50))
    return source_files(base)


def source_files(base: Path) -> list[str]:
    return sorted(str(p.relative_to(base / "share/docs")) for p in (base / "share/docs").rglob("*.txt"))


def write_config(base: Path, busy_timeout_s: float = 1, page_size: int = 20) -> None:
    (base / "connector.yaml").write_text(
        f"store: {{type: sqlite, path: inv.db, busy_timeout_s: {busy_timeout_s}}}\nendpoints:\n"
        "  - {name: share, type: local, endpoint_details: {roots: share, containers: subfolders, "
        f"page_size: {page_size}}}}}\n")


def stored(db: Path) -> tuple[set[str], set[str], str | None]:
    """(live paths, tombstoned paths, cursor) of the share/docs container."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT path, deleted_at FROM files WHERE endpoint='share' AND container='docs'").fetchall()
        cursor = conn.execute("SELECT cursor FROM sync_state WHERE endpoint='share' AND container='docs'").fetchone()
    return ({p for p, d in rows if d is None}, {p for p, d in rows if d is not None}, cursor and cursor[0])


def changed_share(base: Path) -> tuple[list[str], list[str]]:
    """A first complete sync, then files deleted and added: the next listing must sweep at its end."""
    proc = cli("sync", "--config", "connector.yaml", cwd=base)
    assert proc.wait(timeout=300) == 0, proc.communicate()
    gone = source_files(base)[::97]
    for path in gone:
        (base / "share/docs" / path).unlink()
    for i in range(150):
        (base / f"share/docs/new/n{i:04}.txt").parent.mkdir(parents=True, exist_ok=True)
        (base / f"share/docs/new/n{i:04}.txt").write_text("new file " * 40)
    return gone, source_files(base)


def assert_nothing_lost(db: Path, gone: list[str], files: list[str]) -> None:
    """No live file tombstoned, no deleted file swept by the failed listing, and every file the stored
    cursor says was passed is in the store (the cursor is not ahead of the committed rows)."""
    live, tombstones, cursor = stored(db)
    assert not tombstones, sorted(tombstones)[:5]
    assert set(gone) <= live  # the failed listing never reached its sweep
    after = json.loads(cursor).get("after") if cursor else None
    if after is not None:
        passed = [f for f in files if tuple(f.split("/")) <= tuple(after.split("/"))]
        assert set(passed) <= live, sorted(set(passed) - live)[:5]


def assert_resync_completes(base: Path, db: Path, gone: list[str], files: list[str]) -> None:
    proc = cli("sync", "--config", "connector.yaml", cwd=base)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    live, tombstones, _ = stored(db)
    assert live == set(files) and tombstones == set(gone)


def test_a_store_locked_by_another_process_mid_sync(tmp_path):
    write_config(tmp_path, page_size=1)  # 743 pages (a page of 5 listed all in 0.1 s): the lock comes first
    make_share(tmp_path)
    gone, files = changed_share(tmp_path)
    db = tmp_path / "inv.db"
    proc = cli("sync", "--config", "connector.yaml", cwd=tmp_path)
    deadline = time.monotonic() + 240
    while True:  # wait until the listing has committed a page and holds its lease
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
        with sqlite3.connect(db, timeout=5) as conn:
            if conn.execute("SELECT 1 FROM sync_state WHERE running_sync IS NOT NULL AND listing_in_progress "
                            "AND container='docs'").fetchone():
                break
    locker = sqlite3.connect(db, timeout=30, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process's long write: the sync's next page waits 1 s, then fails
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in out + err and err == "", err
    row = next(line for line in out.splitlines() if line.startswith("share ") and " docs " in line)
    assert "failed: " in row and "database is locked (another process held its write lock for more than " \
                                 "busy_timeout_s=1; nothing of this was written)" in row, row
    assert_nothing_lost(db, gone, files)
    assert_resync_completes(tmp_path, db, gone, files)


def test_a_store_locked_from_the_start_is_one_line(tmp_path):
    write_config(tmp_path)
    make_share(tmp_path, files=30)
    gone, files = changed_share(tmp_path)
    db = tmp_path / "inv.db"
    locker = sqlite3.connect(db, timeout=30, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        out, err = cli("sync", "--config", "connector.yaml", cwd=tmp_path).communicate(timeout=120)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and lines[0].startswith(f"error: sqlite:{db}: "), (out, err)
    assert "database is locked (another process held its write lock" in lines[0]
    assert_nothing_lost(db, gone, files)
    assert_resync_completes(tmp_path, db, gone, files)


def test_a_full_disk_mid_sync(tmp_path):
    """The store's files may not grow past a limit a little above their size after the first sync
    (RLIMIT_FSIZE, with SIGXFSZ ignored: write() fails with EFBIG where a full disk gives ENOSPC), so the
    re-listing that adds files runs out of space part-way."""
    write_config(tmp_path)
    make_share(tmp_path)
    gone, files = changed_share(tmp_path)
    db = tmp_path / "inv.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    limit = db.stat().st_size + 48 * 1024

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = cli("sync", "--config", "connector.yaml", cwd=tmp_path, preexec_fn=small_disk)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, (out, err)
    assert "Traceback" not in out + err and err == "", err
    row = next(line for line in out.splitlines() if line.startswith("share ") and " docs " in line)
    # SQLite says "database or disk is full" for ENOSPC and "disk I/O error" for EFBIG; both get the hint
    assert "failed: " in row and "disk I/O error (the database cannot be written: is the disk full?; nothing of " \
                                 "this was written)" in row, row
    assert_nothing_lost(db, gone, files)
    assert_resync_completes(tmp_path, db, gone, files)
