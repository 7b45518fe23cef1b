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


# -- defect 3 of issue 7: errors make the listing incomplete, deep trees, vanished containers, hashes ----------

def _eio(path) -> OSError:
    import errno

    return OSError(errno.EIO, "Input/output error", str(path))


class _FailingScandir:
    """os.scandir, except that folders named in `fail` raise EIO: at once, or after `after` entries."""

    def __init__(self, fail: dict[str, int | None]):
        self.fail = fail

    def __call__(self, path):
        name = os.path.basename(os.fspath(path))
        if name not in self.fail:
            return os.scandir(path)
        after = self.fail[name]
        if after is None:
            raise _eio(path)
        real = os.scandir(path)

        class Broken:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                real.close()

            def __iter__(self):
                for i, entry in enumerate(real):
                    if i == after:
                        raise _eio(path)
                    yield entry

        return Broken()


@pytest.mark.parametrize("mid_iteration", [False, True], ids=["eio-on-open", "eio-mid-listing"])
def test_io_error_in_a_folder_keeps_its_subtree_and_records_deletions_elsewhere(tree, store, mid_iteration):
    """Incomplete per subtree (issue 7, defect 3): an unreadable folder keeps what is under it; a file
    deleted elsewhere in the container (also a sibling whose name starts like the folder's) is recorded."""
    for i in range(3):
        (tree / f"projects/b/more-{i}.txt").write_text("m")
    (tree / "projects/b-notes.txt").write_text("n")
    src = source(tree, page_size=2)
    sync_container(src, store, "projects")
    before = set(live(store))
    assert len(before) == 8
    (tree / "projects/top.md").unlink()  # really gone, elsewhere in the container
    (tree / "projects/b-notes.txt").unlink()  # "b-notes.txt" is not under "b/"
    (tree / "projects/b/more-2.txt").unlink()  # gone too, but behind the error: not known yet
    src._scandir = _FailingScandir({"b": 1 if mid_iteration else None})
    stats = sync_container(src, store, "projects")
    assert stats.status == "success" and stats.errors == 1
    assert "b: cannot read folder: Input/output error" in stats.error_samples[0]
    assert stats.deleted == 2 and set(live(store)) == before - {"top.md", "b-notes.txt"}
    assert tombstones(store) == {"top.md", "b-notes.txt"}
    # b/'s files are live but unseen: this listing is no basis for the consistency check's phantom count
    assert store.sync_logs("share")[0].seen is None
    del src._scandir  # the disk recovers: the next listing is complete and records the deletion under b/
    stats = sync_container(src, store, "projects")
    assert (stats.errors, stats.deleted) == (0, 1) and set(live(store)) == before - {"top.md", "b-notes.txt",
                                                                                     "b/more-2.txt"}


def test_unreadable_paths_survive_a_resumed_listing(tree, store, tmp_path):
    """The unreadable paths ride in the cursor: a listing killed after the error and resumed still keeps
    that subtree, and still sweeps the rest."""
    for i in range(4):
        (tree / f"projects/z-{i}.txt").write_text("z")
    src = source(tree, page_size=2)
    sync_container(src, store, "projects")
    before = set(live(store))
    (tree / "projects/z-3.txt").unlink()
    src._scandir = _FailingScandir({"b": None})

    class Killed(Exception):
        pass

    pages = src.sync("projects", store.sync_state("share", "projects").cursor, {})
    from file_connector_dagster.stores.protocol import ContainerSync

    with pytest.raises(Killed), ContainerSync(store, "share", "projects") as sync:
        for n, page in enumerate(pages):
            sync.apply(page)
            if n == 1:
                raise Killed  # the process dies after two pages (past the unreadable folder)
    cursor = json.loads(store.sync_state("share", "projects").cursor)
    assert cursor["unread"] == ["b"] and not cursor["incomplete"]
    stats = sync_container(src, store, "projects")
    assert stats.status == "success" and stats.deleted == 1
    assert set(live(store)) == before - {"z-3.txt"} and "b/設計.dwg" in live(store)


def test_entries_that_cannot_be_stated_keep_their_subtree(as_unprivileged_user):
    """A folder readable but not searchable (r--): its names are listed, but no entry can be stat'ed."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="fc-nostat-"))
    try:
        (base / "projects/locked").mkdir(parents=True)
        (base / "projects/locked/plan.pdf").write_text("p")
        (base / "projects/locked/sub").mkdir()
        (base / "projects/locked/sub/deep.txt").write_text("d")
        (base / "projects/top.md").write_text("t")
        (base / "projects/gone.md").write_text("g")
        for path in [base, *base.rglob("*")]:
            path.chmod(0o777 if path.is_dir() else 0o666)
        src = LocalSource("share", LocalDetails(roots=[str(base / "projects")]))
        with as_unprivileged_user():
            store = SQLiteStore(base / "inv.db")
            store.migrate()
            sync_container(src, store, "projects")
            assert set(live(store)) == {"locked/plan.pdf", "locked/sub/deep.txt", "top.md", "gone.md"}
            (base / "projects/gone.md").unlink()
        (base / "projects/locked").chmod(0o644)  # r, no x: names readable, entries cannot be stat'ed
        try:
            with as_unprivileged_user():
                stats = sync_container(src, store, "projects")
        finally:
            (base / "projects/locked").chmod(0o777)
        assert stats.status == "success" and stats.errors == 2
        assert all("Permission denied" in e for e in stats.error_samples), stats.error_samples
        # the entries of locked/ stay live (EACCES on stat: nothing known about them); gone.md is recorded
        assert stats.deleted == 1 and set(live(store)) == {"locked/plan.pdf", "locked/sub/deep.txt", "top.md"}
        with as_unprivileged_user():
            stats = sync_container(src, store, "projects")
        assert (stats.errors, stats.deleted) == (0, 0) and set(live(store)) == {"locked/plan.pdf",
                                                                                "locked/sub/deep.txt", "top.md"}
        store.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_dangling_and_looping_symlinks_are_errors_but_the_listing_stays_complete(tree, store):
    src = source(tree)
    sync_container(src, store, "projects")
    (tree / "projects/top.md").unlink()
    (tree / "projects/dangling.txt").symlink_to(tree / "projects/nowhere.txt")
    (tree / "projects/loop").symlink_to(tree / "projects/loop")
    stats = sync_container(src, store, "projects")
    assert sorted(stats.error_samples) == ["dangling.txt: symlink to nothing, skipped", "loop: symlink loop, skipped"]
    assert stats.deleted == 1 and "top.md" not in live(store)  # a complete listing: the deletion is recorded


def test_a_tree_deeper_than_the_recursion_limit(tmp_path, store):
    import sys

    depth = sys.getrecursionlimit() + 200
    root = tmp_path / "deep"
    folders = [root / "/".join(["d"] * (level + 1)) for level in range(depth)]
    root.mkdir()
    for folder in folders:  # one by one: Path.mkdir(parents=True) recurses
        folder.mkdir()
    expected = set()
    for level in [*range(0, depth, 400), depth - 1]:
        (folders[level] / "f.txt").write_text(str(level))
        expected.add("/".join(["d"] * (level + 1) + ["f.txt"]))
    try:
        src = LocalSource("share", LocalDetails(roots=[str(root)], page_size=1))
        pages = src.sync("deep", None, {})
        for n, page in enumerate(pages, 1):  # killed after two pages: the resume point is deep in the tree
            store.apply_page("share", "deep", page)
            if n == 2:
                assert json.loads(page.cursor)["after"].count("/") > 800
                break
        pages.close()
        stats = sync_container(src, store, "deep")
        assert stats.status == "success" and stats.errors == 0 and stats.listed == len(expected) - 2
        assert set(live(store)) == expected and len(expected) == 4
    finally:  # shutil.rmtree (and so pytest's cleanup) recurses: remove the tree bottom-up here
        for folder in reversed(folders):
            for child in folder.iterdir():
                if child.is_file():
                    child.unlink()
            folder.rmdir()


def test_a_vanished_subfolder_container_is_tombstoned_but_an_unmounted_root_is_not(tree, store):
    src = LocalSource("share", LocalDetails(roots=[str(tree / "projects")], containers="subfolders"))
    for key in ("b", "Ä-Projekt"):
        sync_container(src, store, key)
    assert len(live(store)) == 3
    import shutil

    shutil.rmtree(tree / "projects/b")
    from file_connector_dagster.errors import SourceError

    assert [c.key for c in src.containers()] == ["Ä-Projekt"]
    stats = sync_container(src, store, "b")
    assert stats.status == "success" and stats.deleted == 1 and stats.error_samples == ["b: the folder is gone"]
    assert tombstones(store) == {"b/設計.dwg".split("/", 1)[1]} and len(live(store)) == 2

    shutil.move(tree / "projects/Ä-Projekt", tree / "elsewhere")  # no subfolder left: looks unmounted
    with pytest.raises(SourceError, match="no such folder"):
        sync_container(src, store, "Ä-Projekt")
    assert len(live(store)) == 2
    shutil.move(tree / "elsewhere", tree / "projects/Ä-Projekt")
    os.rename(tree / "projects", tree / "unmounted")  # the whole root is gone: an error, nothing tombstoned

    with pytest.raises(SourceError, match="root folder .* does not exist"):
        sync_container(src, store, "Ä-Projekt")
    assert len(live(store)) == 2


def test_hash_is_part_of_the_change_key(tree, store):
    src = source(tree, hash=True)
    sync_container(src, store, "projects")
    notes = tree / "projects/Ä-Projekt/notes.txt"
    st = notes.stat()
    notes.write_text("HELLO")  # same size
    os.utime(notes, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    stats = sync_container(src, store, "projects")
    assert (stats.updated, stats.unchanged) == (1, 3)
    record = next(r for p in store.iter_files("share") for r in p if r.title == "notes.txt")
    import hashlib

    assert record.metadata["hashes"]["sha256"] == hashlib.sha256(b"HELLO").hexdigest()
    assert record.change_key.endswith(":" + hashlib.sha256(b"HELLO").hexdigest())
    assert sync_container(src, store, "projects").unchanged == 4
