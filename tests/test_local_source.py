"""The local folder source against a real tree, synced into the real SQLite store."""

import json
import os
from pathlib import Path

import pytest

from file_connector_dagster.engine import sync_container
from file_connector_dagster.sources.local import LocalDetails, LocalSource
from file_connector_dagster.stores.sqlite import SQLiteStore


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "share"
    (root / "projects/Ä-Projekt/Pläne").mkdir(parents=True)
    (root / "projects/b").mkdir(parents=True)
    (root / "projects/Ä-Projekt/Pläne/Grundriss über.pdf").write_bytes(b"%PDF-1.7 plan")
    (root / "projects/Ä-Projekt/notes.txt").write_text("hello")
    (root / "projects/b/設計.dwg").write_bytes(b"dwg")
    (root / "projects/top.md").write_text("# top")
    return root


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(tmp_path / "inv.db")
    store.migrate()
    yield store
    store.close()


def source(root: Path, **details) -> LocalSource:
    return LocalSource("share", LocalDetails(roots=[str(root / "projects")], **details))


def live(store) -> dict[str, str]:
    return {r.path: r.change_key for page in store.iter_files("share", include_deleted=False) for r in page}


def tombstones(store) -> set[str]:
    return {r.path for page in store.iter_files("share") for r in page if r.deleted_at}


def test_create_modify_delete_rename_reappear(tree, store):
    src = source(tree, hash=True)
    assert [c.key for c in src.containers()] == ["projects"]
    stats = sync_container(src, store, "projects")
    assert (stats.listed, stats.added, stats.deleted, stats.errors, stats.status) == (4, 4, 0, 0, "success")
    assert set(live(store)) == {"Ä-Projekt/Pläne/Grundriss über.pdf", "Ä-Projekt/notes.txt", "b/設計.dwg", "top.md"}
    record = next(r for p in store.iter_files("share") for r in p if r.title == "Grundriss über.pdf")
    assert record.external_id == "projects/Ä-Projekt/Pläne/Grundriss über.pdf"
    assert record.mime_type == "application/pdf" and record.size == 13
    assert record.metadata["hashes"]["sha256"] == __import__("hashlib").sha256(b"%PDF-1.7 plan").hexdigest()
    first_updated = record.updated_at

    # nothing changed: nothing rewritten
    stats = sync_container(src, store, "projects")
    assert (stats.added, stats.updated, stats.unchanged, stats.deleted) == (0, 0, 4, 0)
    same = next(r for p in store.iter_files("share") for r in p if r.title == "Grundriss über.pdf")
    assert same.updated_at == first_updated

    # modify one, delete one, rename one
    notes = tree / "projects/Ä-Projekt/notes.txt"
    notes.write_text("hello, longer now")
    os.utime(notes, ns=(notes.stat().st_atime_ns, notes.stat().st_mtime_ns + 10**9))
    (tree / "projects/top.md").unlink()
    (tree / "projects/b/設計.dwg").rename(tree / "projects/b/設計-v2.dwg")
    stats = sync_container(src, store, "projects")
    assert (stats.added, stats.updated, stats.unchanged, stats.deleted) == (1, 1, 1, 2)
    assert set(live(store)) == {"Ä-Projekt/Pläne/Grundriss über.pdf", "Ä-Projekt/notes.txt", "b/設計-v2.dwg"}
    assert tombstones(store) == {"top.md", "b/設計.dwg"}

    # the deleted file comes back: live again, one row only
    (tree / "projects/top.md").write_text("# top again")
    stats = sync_container(src, store, "projects")
    assert (stats.added, stats.deleted) == (1, 0)
    assert "top.md" in live(store) and tombstones(store) == {"b/設計.dwg"}
    assert store.count_files("share", include_deleted=True) == 5


def test_symlink_out_of_root_is_not_followed(tree, store, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "passwords.txt").write_text("x")
    (tree / "projects/escape").symlink_to(outside)
    (tree / "projects/escape-file.txt").symlink_to(outside / "passwords.txt")
    (tree / "projects/inside-link.txt").symlink_to(tree / "projects/top.md")
    stats = sync_container(source(tree), store, "projects")
    paths = set(live(store))
    assert not any("passwords" in p or p.startswith("escape") for p in paths)
    assert "inside-link.txt" in paths
    assert stats.errors == 2 and all("outside the folder" in e for e in stats.error_samples)


def test_undecodable_name_is_an_error_not_a_crash(tree, store):
    folder = os.fsencode(tree / "projects")
    with open(os.path.join(folder, b"bad-\xff-name.txt"), "wb") as fh:
        fh.write(b"x")
    stats = sync_container(source(tree), store, "projects")
    assert stats.status == "success" and stats.errors == 1 and "not valid UTF-8" in stats.error_samples[0]
    assert len(live(store)) == 4


@pytest.fixture
def as_unprivileged_user():
    """Root reads everything, so when tests run as root the sync runs with effective uid `nobody`."""
    import contextlib

    @contextlib.contextmanager
    def switch():
        if os.geteuid() != 0:
            yield
            return
        os.seteuid(65534)
        try:
            yield
        finally:
            os.seteuid(0)

    return switch


def test_unreadable_folder_and_file_are_errors_and_delete_nothing(as_unprivileged_user):
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="fc-unreadable-"))  # outside root's private pytest folder
    try:
        (base / "projects/Pläne").mkdir(parents=True)
        (base / "projects/Pläne/plan.pdf").write_text("p")
        (base / "projects/top.md").write_text("t")
        for path in [base, *base.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
        src = LocalSource("share", LocalDetails(roots=[str(base / "projects")], hash=True))
        with as_unprivileged_user():
            store = SQLiteStore(base / "inv.db")
            store.migrate()
            sync_container(src, store, "projects")
        assert set(live(store)) == {"Pläne/plan.pdf", "top.md"}

        (base / "projects/Pläne").chmod(0o000)
        (base / "projects/top.md").chmod(0o000)
        with as_unprivileged_user():
            stats = sync_container(src, store, "projects")
        (base / "projects/Pläne").chmod(0o777)
        assert stats.status == "success" and stats.errors == 2
        assert any("Pläne: cannot read folder" in e for e in stats.error_samples)
        assert any(e.startswith("top.md: cannot read file") for e in stats.error_samples)
        # nothing under the unreadable folder was tombstoned; the unreadable file is still listed
        assert stats.deleted == 0 and set(live(store)) == {"Pläne/plan.pdf", "top.md"}
        store.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_killed_between_pages_resumes_from_checkpoint(tmp_path, store):
    root = tmp_path / "many"
    for i in range(25):
        (root / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 3}/f{i:02}.txt").write_text(str(i))
    src = LocalSource("share", LocalDetails(roots=[str(root)], page_size=4))
    assert sync_container(src, store, "many").added == 25
    pages = src.sync("many", store.sync_state("share", "many").cursor, {})
    committed = 0
    for page in pages:  # the next sync commits three pages, then "crashes"
        store.apply_page("share", "many", page)
        committed += len(page.upserts)
        if committed == 12:
            break
    pages.close()
    state = store.sync_state("share", "many")
    assert state.listing_in_progress and json.loads(state.cursor)["after"] == "d1/f07.txt"
    (root / "d0/f00.txt").unlink()  # listed before the crash: found by the next listing
    (root / "d2/f23.txt").unlink()  # not listed yet: found when the resumed listing ends

    stats = sync_container(src, store, "many")
    assert stats.listed == 25 - 12 - 1  # resumed after the checkpoint, did not start over
    assert stats.deleted == 1 and store.count_files("share") == 24
    stats = sync_container(src, store, "many")  # a fresh listing again
    assert (stats.listed, stats.unchanged, stats.deleted) == (23, 23, 1)
    assert store.count_files("share") == 23 and store.count_files("share", include_deleted=True) == 25


def test_subfolder_containers_and_globs(tree, store):
    src = LocalSource("share", LocalDetails(roots=[str(tree / "projects")], containers="subfolders",
                                            exclude=["*.dwg"]))
    assert [c.key for c in src.containers()] == ["b", "Ä-Projekt"]
    sync_container(src, store, "Ä-Projekt")
    stats = sync_container(src, store, "b")
    assert stats.listed == 0
    assert set(live(store)) == {"Pläne/Grundriss über.pdf", "notes.txt"}
    assert source(tree).health().ok
    assert not LocalSource("share", LocalDetails(roots=[str(tree / "missing")])).health().ok
