"""Local folders and network shares (`type: local`).

Every sync is a full listing (a folder has no change feed); the store tombstones what the listing
did not see. The walk is sorted, so the cursor (the last path committed) resumes a killed sync.
"""

from __future__ import annotations

import errno
import hashlib
import json
import mimetypes
import os
import stat
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import ContentUnavailable, SourceError
from ..processors.builtin import glob_match
from ..records import ChangePage, FileRecord, Folder, SyncState
from .base import Container, Health, Source, register_source


class LocalDetails(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roots: list[str] = Field(min_length=1)  # folders; relative paths are relative to connector.yaml
    containers: Literal["roots", "subfolders"] = "roots"  # a partition per root, or per first-level subfolder
    include: list[str] = Field(default_factory=list)  # globs on the path inside the container
    exclude: list[str] = Field(default_factory=list)
    hash: bool = False  # sha256 of every file, read in full on every sync (costly on large shares)
    page_size: int = Field(default=1000, ge=1, le=100000)

    @field_validator("roots", mode="before")
    @classmethod
    def _one_root(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class _Problem:
    """Something the walk could not list: one error line; `hides` is the path files may hide behind
    (a folder or an entry it could not read; "" for the container's own folder), None when nothing does."""

    message: str
    hides: str | None = None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class LocalSource(Source):
    type_name = "local"
    Details = LocalDetails

    def __init__(self, endpoint: str, details: LocalDetails, project_id: str | None = None,
                 user_id: str | None = None, base_dir: Path = Path(".")):
        super().__init__(endpoint, details, project_id, user_id, base_dir)
        self.roots = [(base_dir / os.path.expanduser(r)).resolve() for r in details.roots]
        self._content_dirs: dict[str, Path] | None = None

    def _container_dirs(self) -> dict[str, Path]:
        dirs: dict[str, Path] = {}
        for root in self.roots:
            if not root.is_dir():
                raise SourceError(f"endpoint {self.endpoint!r}: root folder {root} does not exist or is not a folder")
            found = [root] if self.details.containers == "roots" else self._subfolders(root)
            for path in found:
                key = path.name if len(self.roots) == 1 or self.details.containers == "roots" else f"{root.name}-{path.name}"
                if key in dirs:
                    raise SourceError(f"endpoint {self.endpoint!r}: two containers are both named {key!r} "
                                      f"({dirs[key]} and {path})")
                dirs[key] = path
        return dirs

    def _subfolders(self, root: Path) -> list[Path]:
        """The first-level folders of a root; any error is a SourceError (a folder we failed to see would
        look deleted, and its files would be tombstoned)."""
        found = []
        try:
            with self._scandir(root) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):  # raises on a folder it cannot stat
                        found.append(Path(entry.path))
        except OSError as exc:
            raise SourceError(f"endpoint {self.endpoint!r}: cannot list the folders of {root}: {_reason(exc)}") from None
        return sorted(found, key=lambda p: p.name)

    def containers(self) -> list[Container]:
        return [Container(key=key, name=key, details={"path": str(path)}) for key, path in self._container_dirs().items()]

    def health(self) -> Health:
        checks = {}
        for root in self.roots:
            checks[str(root)] = "ok" if root.is_dir() and os.access(root, os.R_OK | os.X_OK) else "missing or unreadable"
        return Health(ok=all(v == "ok" for v in checks.values()), checks=checks)

    def open_content(self, record: FileRecord, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        if self._content_dirs is None or record.container not in self._content_dirs:
            self._content_dirs = self._container_dirs()
        dirs = self._content_dirs
        if record.container not in dirs:
            raise ContentUnavailable(f"endpoint {self.endpoint!r}, container {record.container!r}: no such folder")
        top = dirs[record.container]
        path = (top / record.path).resolve()
        if not path.is_relative_to(top.resolve()):
            raise ContentUnavailable(f"endpoint {self.endpoint!r}: {record.path}: outside the container's folder")
        try:
            handle = open(path, "rb")
        except FileNotFoundError:
            raise ContentUnavailable(f"endpoint {self.endpoint!r}, container {record.container!r}: "
                                     f"{record.path}: the file is gone") from None
        except OSError as exc:
            raise SourceError(f"endpoint {self.endpoint!r}, container {record.container!r}: {record.path}: "
                              f"cannot read: {exc.strerror or exc}") from None
        return self._chunks(handle, chunk_size)

    @staticmethod
    def _chunks(handle: Any, chunk_size: int) -> Iterator[bytes]:
        with handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    # -- listing ----------------------------------------------------------------------------------
    # The one seam tests may replace to provoke I/O errors (EIO, ESTALE) that a real disk will not give on demand.
    _scandir = staticmethod(os.scandir)
    # unreadable paths a listing keeps by name (in its cursor); beyond that the whole container is kept
    MAX_UNREAD = 1000

    def sync(self, container: str, cursor: str | None, folders: Mapping[str, Folder]) -> Iterator[ChangePage]:
        dirs = self._container_dirs()
        if container not in dirs:
            if self.details.containers == "subfolders" and dirs:  # no subfolder at all: an unmounted share?
                # Every root was read and this folder is not there any more: a listing that finds nothing,
                # so its files are tombstoned (through the mass-delete guard, like any listing).
                yield ChangePage(cursor=json.dumps({"complete": True}), full_listing=True, starts_listing=True,
                                 last=True, errors=[f"{container}: the folder is gone"])
                return
            raise SourceError(f"endpoint {self.endpoint!r}, container {container!r}: no such folder "
                              f"(containers: {', '.join(dirs) or 'none'})")
        top = dirs[container]
        state = json.loads(cursor) if cursor else {}
        after = tuple(state["after"].split("/")) if state.get("after") else None
        # when this listing started (kept when it resumes): what pending_changes counts changes from
        started = (after and state.get("started")) or datetime.now(timezone.utc).isoformat()
        starts = after is None
        # what this listing could not read: its files are kept by the sweep at the end (per subtree);
        # the whole container's folder, or more paths than a cursor should carry: no sweep at all
        incomplete = bool(state.get("incomplete"))
        unread: list[str] = list(state.get("unread") or [])
        changes: list[FileRecord] = []
        errors: list[str] = []
        last_path: str | None = None
        for item in self._walk(top, container, after):
            if isinstance(item, _Problem):
                errors.append(item.message)
                if item.hides == "" or (item.hides is not None and len(unread) >= self.MAX_UNREAD):
                    incomplete, unread = True, []
                elif item.hides is not None and not incomplete:
                    unread.append(item.hides)
                continue
            changes.append(item)
            last_path = item.path
            if len(changes) >= self.details.page_size:
                yield ChangePage(upserts=changes, cursor=json.dumps({"after": last_path, "incomplete": incomplete,
                                                                     "unread": unread, "started": started}),
                                 full_listing=True, starts_listing=starts, errors=errors, api_calls=0)
                starts, changes, errors = False, [], []
        yield ChangePage(upserts=changes, cursor=json.dumps({"complete": True, "started": started}), full_listing=True,
                         starts_listing=starts, last=True, errors=errors, listing_incomplete=incomplete,
                         incomplete_paths=unread)

    def pending_changes(self, container: str, state: SyncState, limit: int, budget_s: float) -> int:
        """Files and folders modified since the last complete listing started (a folder's mtime moves
        when an entry in it is added, removed or renamed). Reads metadata only, never contents."""
        dirs = self._container_dirs()
        if container not in dirs:
            raise SourceError(f"endpoint {self.endpoint!r}, container {container!r}: no such folder "
                              f"(containers: {', '.join(dirs) or 'none'})")
        cursor = json.loads(state.cursor) if state.cursor else {}
        if not cursor.get("complete"):
            return limit  # never listed, or a listing was cut short: a sync is due
        if cursor.get("started"):
            since = datetime.fromisoformat(cursor["started"]).timestamp()
        elif state.last_sync_at is not None:
            since = state.last_sync_at.timestamp()
        else:
            return limit
        since -= 1.0  # file systems with coarse timestamps: a false alarm costs one sync, a miss costs more
        deadline = time.monotonic() + budget_s
        count = 0
        stack: list[tuple[str, str]] = [(str(dirs[container]), "")]
        while stack:
            if time.monotonic() > deadline:
                raise SourceError(f"endpoint {self.endpoint!r}, container {container!r}: counting pending changes "
                                  f"took longer than {budget_s:.0f}s")
            folder, rel_dir = stack.pop()
            try:
                if os.stat(folder).st_mtime > since:
                    count += 1
                with os.scandir(folder) as it:
                    entries = list(it)
            except OSError:
                continue  # unreadable: the sync reports it
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, rel))
                        continue
                    if not entry.is_file() or entry.stat().st_mtime <= since:
                        continue
                except OSError:
                    continue
                if self.details.include and not any(glob_match(rel, p) for p in self.details.include):
                    continue
                if any(glob_match(rel, p) for p in self.details.exclude):
                    continue
                count += 1
            if count >= limit:
                return limit
        return count

    def _entries(self, folder: Path, rel_dir: str) -> "list[os.DirEntry[str]] | _Problem":
        """The folder's entries sorted by name, or the problem that kept us from reading all of them."""
        try:
            with self._scandir(folder) as it:
                return sorted(it, key=lambda e: e.name)  # an I/O error can also come mid-iteration
        except FileNotFoundError:
            return []  # removed since its parent was read: nothing left to list
        except OSError as exc:
            what = "cannot read folder" if isinstance(exc, PermissionError) else f"cannot read folder: {_reason(exc)}"
            return _Problem(f"{rel_dir or '.'}: {what}", hides=rel_dir)

    def _walk(self, top: Path, container: str, after: tuple[str, ...] | None) -> Iterator["FileRecord | _Problem"]:
        """Depth-first, sorted by name, so paths come out in the order of their component tuples.

        Iterative (a stack of folders, not recursion), so any depth works. `after` is the resume point:
        everything up to and including it was committed by an earlier run of this listing.
        """
        # each frame: (parts of the folder, its sorted entries, index of the next entry, resume point inside it)
        stack: list[tuple[tuple[str, ...], list, int, tuple[str, ...] | None]] = []
        entries = self._entries(top, "")
        if isinstance(entries, _Problem):
            yield entries
            return
        stack.append(((), entries, 0, after))
        while stack:
            parts, entries, index, after = stack[-1]
            if index >= len(entries):
                stack.pop()
                continue
            stack[-1] = (parts, entries, index + 1, after)
            entry = entries[index]
            child = parts + (entry.name,)
            try:
                entry.name.encode("utf-8")
            except UnicodeEncodeError:
                yield _Problem(f"{'/'.join(parts + (repr(entry.name),))}: file name is not valid UTF-8, skipped")
                continue
            rel = "/".join(child)
            try:
                is_link = entry.is_symlink()
            except OSError as exc:
                yield _Problem(f"{rel}: cannot read: {_reason(exc)}", hides=rel)
                continue
            try:
                st = os.stat(entry.path) if is_link else entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                if is_link:
                    yield _Problem(f"{rel}: symlink to nothing, skipped")
                continue  # deleted while we listed: gone, as the next sweep will record
            except OSError as exc:
                if is_link and exc.errno == errno.ELOOP:
                    yield _Problem(f"{rel}: symlink loop, skipped")
                    continue
                # a file or a folder we cannot see into: what it holds must not be tombstoned
                yield _Problem(f"{rel}: cannot read: {_reason(exc)}", hides=rel)
                continue
            if is_link:
                target = Path(os.path.realpath(entry.path))
                if not target.is_relative_to(top):
                    yield _Problem(f"{rel}: symlink points outside the folder, not followed")
                    continue
                if stat.S_ISDIR(st.st_mode):
                    continue  # a link to a folder inside the root: its files are listed where they are
            if stat.S_ISDIR(st.st_mode):
                if after is not None and child < after[: len(child)]:
                    continue  # this whole folder was committed before the resume point
                sub = self._entries(Path(entry.path), rel)
                if isinstance(sub, _Problem):
                    yield sub
                    continue
                stack.append((child, sub, 0, after if after is not None and after[: len(child)] == child else None))
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # sockets, fifos, devices are not files to inventory
            if after is not None and child <= after:
                continue
            if self.details.include and not any(glob_match(rel, p) for p in self.details.include):
                continue
            if any(glob_match(rel, p) for p in self.details.exclude):
                continue
            yield from self._record(top, container, rel, entry.path, st)

    def _record(self, top: Path, container: str, rel: str, path: str, st: os.stat_result) -> Iterator["FileRecord | _Problem"]:
        hashes = {}
        if self.details.hash:
            try:
                digest = hashlib.sha256()
                with open(path, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
                hashes["sha256"] = digest.hexdigest()
            except OSError as exc:  # still listed (it exists), just without a hash
                yield _Problem(f"{rel}: cannot read file: {_reason(exc)}")
        modified = datetime.fromtimestamp(st.st_mtime, timezone.utc)
        birth = getattr(st, "st_birthtime", None)
        yield FileRecord(
            external_id=f"{container}/{rel}",
            title=rel.rsplit("/", 1)[-1],
            path=rel,
            file_link=Path(top, rel).as_uri(),
            date_created=datetime.fromtimestamp(birth, timezone.utc) if birth else None,
            date_updated=modified,
            size=st.st_size,
            mime_type=mimetypes.guess_type(rel)[0],
            # with hash: true the content decides too (a same-size rewrite within one mtime tick is a change)
            change_key=f"{st.st_mtime_ns}:{st.st_size}" + (f":{hashes['sha256']}" if hashes else ""),
            project_id=self.project_id,
            user_id=self.user_id,
            metadata={"hashes": hashes, "parent_path": rel.rsplit("/", 1)[0] if "/" in rel else ""},
        )


register_source(LocalSource.type_name, LocalSource)
