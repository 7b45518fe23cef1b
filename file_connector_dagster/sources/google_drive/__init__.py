"""Google Drive: shared drives, a user's My Drive, or one folder's subtree (`type: google_drive`).

- Auth: a service account's JSON key, JWT bearer grant (client.py); `subject` acts as a user of the
  domain through domain-wide delegation.
- Containers: each selected shared drive (key: its id), `my-drive` (the subject's My Drive), the
  configured `folder_id` (key: the folder id).
- First sync: take `changes.getStartPageToken` FIRST, then list the corpus with `files.list`: the
  folders (to know every path), then everything else, page by page; each page's cursor resumes the
  listing. The last page stores the start token taken before the listing, so whatever changed during
  the listing is replayed by the next sync, never lost.
- Later syncs: `changes.list` from the stored token until `newStartPageToken`. Removed or trashed ->
  tombstone; untrashed -> live again; a renamed or moved folder -> ChangePage.moves re-paths its whole
  subtree in the store; a folder that comes into the container from outside (moved in, untrashed) has
  its subtree listed (`'<id>' in parents` queries), since Drive reports only the folder itself.
  An invalid or expired page token starts a fresh listing whose end tombstones what is gone.
- Folders are kept in the store's folder tree (tree.py), never as file records.

Memory stays at one Drive page plus the folder tree.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from ...ahead import Ahead
from ...config import redact
from ...errors import ConfigError, SourceError
from ...records import ChangePage, FileRecord, Folder, SyncState
from ..base import Container, Health, register_source
from ..http import AdaptivePacing, HttpClient, HttpSource, RetryPolicy
from .client import FILE_FIELDS, FOLDER, FOLDER_FIELDS, GOOGLE_ERRORS, SHORTCUT, DriveApi, ServiceAccountAuth
from .settings import MY_DRIVE, GoogleDriveDetails
from .tree import DriveTree

log = logging.getLogger(__name__)

FOLDERS_Q = f"mimeType = '{FOLDER}' and trashed = false"
FILES_Q = f"mimeType != '{FOLDER}' and trashed = false"
FILL_BATCH = 40  # parent ids per `in parents` query when listing a subtree that came in from outside
PROBE_FIELDS = "nextPageToken,newStartPageToken,changes(changeType,removed,fileId,file(driveId))"


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)  # RFC 3339 with "Z" and milliseconds reads as it is in 3.11
    except ValueError:
        return None


@dataclass
class _Sync:
    """What one sync of one container knows: where its corpus and root are, and what it has learnt."""

    container: str
    api: DriveApi
    drive_id: str | None  # the shared drive whose corpus is listed; None for the user's corpus
    root_id: str
    my_drive: bool
    tree: DriveTree
    missing: set[str] = field(default_factory=set)  # folder ids files.get could not find (outside)
    learnt: dict[str, Folder] = field(default_factory=dict)  # folders fetched while building a page
    seen_folders: set[str] | None = None  # during a listing that saw every folder from its start
    calls: int = 0  # requests counted into pages so far

    def cursor(self, **state: Any) -> str:
        return json.dumps({"root": self.root_id, "drive": self.drive_id, **state})


class GoogleDriveSource(HttpSource):
    """Google Drive through the Drive v3 REST API, as a service account."""

    type_name = "google_drive"
    Details = GoogleDriveDetails

    def __init__(self, endpoint: str, details: GoogleDriveDetails, project_id: str | None = None,
                 user_id: str | None = None, base_dir: Path = Path(".")):
        super().__init__(endpoint, details, project_id, user_id, base_dir)
        self.details: GoogleDriveDetails = details
        self._auth: ServiceAccountAuth | None = None
        self._names: dict[str, str] = {}  # container key -> name

    # -- plumbing ---------------------------------------------------------------------------------
    @property
    def auth(self) -> ServiceAccountAuth:
        if self._auth is None:
            self._auth = ServiceAccountAuth(self.details, self.session, f"endpoint {self.endpoint!r}", self.base_dir,
                                            self.cancel_event)
        return self._auth

    def _label(self, container: str | None = None) -> str:
        if container is None:
            return f"endpoint {self.endpoint!r}"
        name = self._names.get(container)
        return f"endpoint {self.endpoint!r}, container {container!r}" + (f" ({name})" if name and name != container else "")

    def _api(self, container: str | None = None, budget_s: float | None = None) -> DriveApi:
        """The Drive calls of a sync; with budget_s, of a quick check whose retries and timeouts all fit
        into that many seconds."""
        d = self.details
        policy = RetryPolicy(max_wait_s=d.max_wait_s, total_wait_s=d.throttle_budget_s, backoff_base_s=d.backoff_base_s)
        timeout = d.timeout_s
        if budget_s is not None:
            policy = RetryPolicy(max_wait_s=min(d.max_wait_s, budget_s / 4), total_wait_s=budget_s / 2,
                                 backoff_base_s=min(d.backoff_base_s, 1.0), max_attempts=3)
            timeout = min(d.timeout_s, max(1.0, budget_s / 3))
        # after a throttle, requests are spaced out on the scale of the configured backoff
        pacing = AdaptivePacing(initial_gap_s=min(0.25, d.backoff_base_s / 4), max_gap_s=d.max_wait_s)
        http = HttpClient(self._label(container), auth=self.auth, policy=policy, session=self.session,
                          requests_per_second=d.requests_per_second, burst=max(1.0, 2 * d.requests_per_second),
                          timeout_s=timeout, errors=GOOGLE_ERRORS, pacing=pacing, cancel=self.cancel_event)
        return DriveApi(http, d.api_url, d.page_size)

    # -- containers -------------------------------------------------------------------------------
    def _shared_drives(self, api: DriveApi) -> list[dict[str, Any]]:
        wanted = self.details.shared_drives
        if not wanted:
            return []
        drives = list(api.drives())
        if wanted == "all":
            return drives
        by_id = {d["id"]: d for d in drives}
        by_name = {str(d.get("name", "")).lower(): d for d in drives}
        chosen = []
        for entry in wanted:
            drive = by_id.get(entry) or by_name.get(entry.lower())
            if drive is None:
                names = ", ".join(sorted(str(d.get("name")) for d in drives)) or "none"
                raise SourceError(f"{api.http.label}: shared_drives: no shared drive {entry!r} is shared with "
                                  f"{self.auth.key.client_email} (shared drives: {names})", retryable=False)
            chosen.append(drive)
        return chosen

    def _folder(self, api: DriveApi) -> dict[str, Any]:
        folder_id = self.details.folder_id
        assert folder_id
        item = api.get_file(folder_id, "id,name,mimeType,driveId,trashed")
        if item is None or item.get("trashed"):
            raise SourceError(f"{api.http.label}: folder_id: folder {folder_id!r} not found, trashed or not shared "
                              f"with the account (GET /files/{{id}} answered {'404' if item is None else 'trashed'})",
                              retryable=False)
        if item.get("mimeType") != FOLDER:
            raise SourceError(f"{api.http.label}: folder_id: {folder_id!r} is a {item.get('mimeType')}, not a folder",
                              retryable=False)
        return item

    def containers(self) -> list[Container]:
        api = self._api()
        found: list[Container] = []
        for drive in self._shared_drives(api):
            found.append(Container(key=drive["id"], name=drive.get("name") or drive["id"],
                                   details={"kind": "shared_drive"}))
        if self.details.my_drive:
            found.append(Container(key=MY_DRIVE, name=f"My Drive of {self.details.subject}", details={"kind": "my_drive"}))
        if self.details.folder_id:
            folder = self._folder(api)
            found.append(Container(key=folder["id"], name=folder.get("name") or folder["id"],
                                   details={"kind": "folder", "drive_id": folder.get("driveId")}))
        for container in found:
            self._names[container.key] = container.name
        return found

    def health(self) -> Health:
        checks: dict[str, str] = {}
        try:
            self.auth.token()
            checks["token"] = "ok"
        except (SourceError, ConfigError) as exc:
            checks["token"] = redact(str(exc))
            return Health(ok=False, checks=checks)
        api = self._api()
        probes = []
        if self.details.shared_drives:
            probes.append(("shared_drives", lambda: "ok" if self._shared_drives(api) else
                           f"no shared drive is shared with {self.auth.key.client_email}"))
        if self.details.my_drive:
            probes.append(("my_drive", lambda: "ok" if api.get_file("root", "id") else "My Drive not found"))
        if self.details.folder_id:
            probes.append(("folder_id", lambda: self._folder(api) and "ok"))
        for name, probe in probes:
            try:
                checks[name] = probe()
            except (SourceError, ConfigError) as exc:
                checks[name] = redact(str(exc))
        return Health(ok=all(v == "ok" for v in checks.values()), checks=checks)

    # -- sync -------------------------------------------------------------------------------------
    def _locate(self, api: DriveApi, container: str) -> tuple[str | None, str]:
        """(shared drive id or None, root folder id) of a container."""
        if container == MY_DRIVE:
            root = api.get_file("root", "id")
            if root is None:
                raise SourceError(f"{api.http.label}: My Drive of {self.details.subject} not found "
                                  "(GET /files/root answered 404)", retryable=False)
            return None, root["id"]
        if container == self.details.folder_id:
            folder = self._folder(api)
            return folder.get("driveId"), folder["id"]
        return container, container  # a shared drive's root folder has the drive's id

    def sync(self, container: str, cursor: str | None, folders: Mapping[str, Folder]) -> Iterator[ChangePage]:
        """Yield ChangePages. Cursors are JSON with the container's root and drive, plus
        {"listing": "folders"|"files", "page": token, "start": token, "incomplete": bool} mid-listing,
        or {"changes": token, "fill": [folder ids]} after it."""
        state: dict[str, Any] = {}
        if cursor:
            try:
                state = json.loads(cursor)
                assert isinstance(state, dict) and "root" in state
            except (ValueError, AssertionError):
                raise SourceError(f"{self._label(container)}: the stored cursor is not a Google Drive cursor; "
                                  "run a full sync") from None
        api = self._api(container)
        if state:
            drive_id, root_id = state.get("drive"), state["root"]
        else:
            drive_id, root_id = self._locate(api, container)
        ctx = _Sync(container, api, drive_id, root_id, container == MY_DRIVE,
                    DriveTree(root_id, folders if state else {}))
        if "changes" in state:
            expired = yield from self._changes(ctx, state["changes"], state.get("fill") or [])
            if not expired:
                return
            log.warning("%s: the changes page token is no longer valid; listing the whole container again", api.http.label)
            stale = set(ctx.tree.nodes)
            ctx.tree = DriveTree(root_id, {})
            yield from self._listing(ctx, None, stale)
        else:
            yield from self._listing(ctx, state if "listing" in state else None, set())

    # -- probe ------------------------------------------------------------------------------------
    def pending_changes(self, container: str, state: SyncState, limit: int, budget_s: float) -> int:
        """Changes the stored page token returns now (changes.list with the sync's own parameters),
        counted page by page up to `limit`, without storing anything: the next sync replays them.
        Counted as the sync reads them: changes of files (not of the shared drive itself), an item
        of another drive skipped; for a `folder_id` container, changes anywhere in its drive (or the
        subject's corpus) count, since only the sync knows the folder's subtree."""
        try:
            cursor = json.loads(state.cursor) if state.cursor else {}
        except ValueError:
            cursor = {}
        if not isinstance(cursor, dict) or not cursor.get("changes") or cursor.get("fill"):
            return limit  # never listed, a listing or a subtree listing cut short: a sync is due
        api = self._api(container, budget_s=budget_s)
        deadline = time.monotonic() + budget_s
        drive_id, token, count = cursor.get("drive"), cursor["changes"], 0
        while token and count < limit:
            if time.monotonic() > deadline:
                raise SourceError(f"{api.http.label}: counting pending changes took longer than {budget_s:.0f}s")
            body = api.list_changes(drive_id, token, container == MY_DRIVE, fields=PROBE_FIELDS)
            if body is None:
                return limit  # the page token expired: the next sync lists everything again
            for change in body.get("changes") or []:
                if not isinstance(change, dict) or change.get("changeType", "file") != "file":
                    continue
                item = change.get("file")
                if not change.get("removed") and isinstance(item, dict) and (item.get("driveId") or None) != drive_id:
                    continue
                count += 1
            token = body.get("nextPageToken")
        return min(count, limit)

    def _page_done(self, ctx: _Sync, page: ChangePage) -> ChangePage:
        page.api_calls = ctx.api.http.calls - ctx.calls
        ctx.calls = ctx.api.http.calls
        return page

    def _listing(self, ctx: _Sync, resume: dict[str, Any] | None, stale: set[str]) -> Iterator[ChangePage]:
        """A full listing: folders first, then the rest; resumes from a listing cursor."""
        if resume is None:
            start = ctx.api.start_page_token(ctx.drive_id)  # before the listing: changes during it are replayed
            phase, token, incomplete, starts = "folders", None, False, True
            ctx.seen_folders = set()
        else:
            start, phase, token = resume["start"], resume["listing"], resume.get("page")
            incomplete, starts = bool(resume.get("incomplete")), False
        while True:
            # each page is requested as soon as the page before it names it, while that one becomes records
            chain = Ahead(self._pages(ctx, phase, token), depth=2, name="drive-listing")
            try:
                expired = yield from self._listing_pages(ctx, chain, start, incomplete, starts, stale)
            finally:
                chain.close(None)
            if not expired:
                return
            # the listing's page token expired: list again (the start token stays valid)
            log.warning("%s: the listing's page token is no longer valid; listing again from the start",
                        ctx.api.http.label)
            phase, token, starts, ctx.seen_folders = "folders", None, True, set()

    @staticmethod
    def _pages(ctx: _Sync, phase: str, token: str | None) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """(phase, body) of each files.list page of the listing from (phase, token) on: the folders' pages,
        then the files'; a body None (the page token expired) ends it."""
        while True:
            folders = phase == "folders"
            body = ctx.api.list_files(ctx.drive_id, FOLDERS_Q if folders else FILES_Q,
                                      FOLDER_FIELDS if folders else FILE_FIELDS, token)
            yield phase, body
            if body is None:
                return
            token = body.get("nextPageToken")
            if not token:
                if not folders:
                    return
                phase = "files"

    def _listing_pages(self, ctx: _Sync, chain: Iterable[tuple[str, dict[str, Any] | None]], start: str,
                       incomplete: bool, starts: bool, stale: set[str]) -> Iterator[ChangePage]:
        """The listing's ChangePages; returns True (as the generator's value) when a page token expired."""
        for phase, body in chain:
            if body is None:
                return True
            incomplete = incomplete or bool(body.get("incompleteSearch"))
            items = [i for i in body.get("files") or [] if isinstance(i, dict) and i.get("id")]
            next_token = body.get("nextPageToken")
            if phase == "folders":
                page = ChangePage()
                for item in items:
                    if item.get("mimeType") == FOLDER and not item.get("trashed"):
                        self._learn(ctx, item, resolve=False)  # parents may come on a later page
                page.folders = list(ctx.learnt.values())
                ctx.learnt.clear()
                page.cursor = ctx.cursor(listing="folders" if next_token else "files", page=next_token, start=start,
                                         incomplete=incomplete)
            else:
                page = self._file_page(ctx, items, listing=True)
                if next_token:
                    page.cursor = ctx.cursor(listing="files", page=next_token, start=start, incomplete=incomplete)
                else:
                    page.cursor = ctx.cursor(changes=start)
                    page.last = True
                    page.listing_incomplete = incomplete
                    if ctx.seen_folders is not None:  # folders kept from before that the listing did not see
                        gone = (stale | set(ctx.tree.nodes)) - ctx.seen_folders
                        for fid in gone:
                            ctx.tree.nodes.pop(fid, None)
                        page.folder_deletions = sorted(gone)
            page.full_listing, page.starts_listing = True, starts
            starts = False
            yield self._page_done(ctx, page)
            if page.last:
                return False
        return False  # (the chain always ends with the files' last page)

    def _learn(self, ctx: _Sync, item: Mapping[str, Any], resolve: bool = True) -> tuple[str | None, str | None]:
        """Put a folder into the tree. Returns its (old path, new path) relative to the root (the new
        one fetching unknown folders up the chain when `resolve`)."""
        folder_id = item["id"]
        parents = item.get("parents") or []
        parent = parents[0] if parents else None
        old = ctx.tree.path(folder_id) if folder_id in ctx.tree else None
        if ctx.seen_folders is not None:
            ctx.seen_folders.add(folder_id)
        if ctx.tree.set(folder_id, parent, str(item.get("name", ""))):
            ctx.learnt[folder_id] = Folder(folder_id, parent, str(item.get("name", "")))
        return old, self._path(ctx, folder_id) if resolve else None

    def _path(self, ctx: _Sync, folder_id: str | None) -> str | None:
        """A folder's path, fetching folders missing from the tree up the chain; None when outside."""
        if folder_id is None:
            return None
        path = ctx.tree.path(folder_id)
        if path is not None:
            return path
        current, steps = folder_id, 0
        while current is not None and current != ctx.tree.root_id and steps < 10000:
            steps += 1
            if current in ctx.tree:
                current = ctx.tree.nodes[current][0]
                continue
            if current in ctx.missing:
                break
            item = ctx.api.get_file(current, FOLDER_FIELDS)
            if (item is None or item.get("trashed") or item.get("mimeType") != FOLDER
                    or (item.get("driveId") or None) != ctx.drive_id):
                ctx.missing.add(current)
                break
            self._learn(ctx, item)
            current = ctx.tree.nodes[current][0]
        return ctx.tree.path(folder_id)

    def _file_page(self, ctx: _Sync, items: list[dict[str, Any]], listing: bool) -> ChangePage:
        """Records for the files among `items` that lie inside the container (others are skipped in a
        listing, deletions in a change page: they may have moved out)."""
        changes: list[FileRecord | str] = []
        for item in items:
            if item.get("mimeType") == FOLDER:
                continue
            parents = item.get("parents") or []
            parent_path = self._path(ctx, parents[0] if parents else None)
            if parent_path is None:
                if not listing:
                    changes.append(item["id"])
                continue
            changes.append(self._record(ctx, item, parent_path))
        page = ChangePage.from_changes(changes)
        page.folders = list(ctx.learnt.values())
        ctx.learnt.clear()
        return page

    def _changes(self, ctx: _Sync, token: str, fill: list[str]) -> Iterator[ChangePage]:
        """Replay changes from `token`. Returns True (as the generator's value) when the token is invalid."""
        if fill:  # a killed run left a subtree listing undone: finish it before the changes after it
            yield from self._fill(ctx, fill, token, ctx.cursor(changes=token))
        while True:
            body = ctx.api.list_changes(ctx.drive_id, token, ctx.my_drive)
            if body is None:
                return True
            next_token, new_start = body.get("nextPageToken"), body.get("newStartPageToken")
            if not (next_token or new_start):
                raise SourceError(f"{ctx.api.http.label}: GET /changes: the response has neither nextPageToken "
                                  "nor newStartPageToken")
            page, entered = self._change_page(ctx, [c for c in body.get("changes") or [] if isinstance(c, dict)])
            after = ctx.cursor(changes=next_token or new_start)
            page.last = not next_token and not entered
            if entered:  # replay this page on resume, the subtree listing included
                page.cursor = ctx.cursor(changes=token, fill=entered)
                yield self._page_done(ctx, page)
                yield from self._fill(ctx, entered, token, after, last=not next_token)
            else:
                page.cursor = after
                yield self._page_done(ctx, page)
            if not next_token:
                return False
            token = next_token

    def _change_page(self, ctx: _Sync, changes: list[dict[str, Any]]) -> tuple[ChangePage, list[str]]:
        """One changes.list page as a ChangePage, and the folders that came into the container from
        outside (their subtrees are listed next). Folder changes go first, parents before children,
        each move computed against the tree as it stands, so the store's paths and the tree stay in step."""
        latest: dict[str, dict[str, Any]] = {}
        for change in changes:
            if change.get("changeType", "file") != "file" or not change.get("fileId"):
                continue  # shared drive renamed or removed: not a file
            latest.pop(change["fileId"], None)
            latest[change["fileId"]] = change
        gone: list[str] = []
        folders: dict[str, dict[str, Any]] = {}
        files: list[dict[str, Any]] = []
        for file_id, change in latest.items():
            item = change.get("file")
            if change.get("removed") or not isinstance(item, dict):
                gone.append(file_id)
                continue
            if (item.get("driveId") or None) != ctx.drive_id:
                continue  # another drive's item (the change feed of a user spans corpora)
            if item.get("trashed"):
                gone.append(file_id)
            elif item.get("mimeType") == FOLDER:
                folders[file_id] = item
            else:
                files.append(item)

        moves: list[tuple[str, str | None]] = []
        entered: list[str] = []
        done: set[str] = set()

        def apply(folder_id: str) -> None:
            if folder_id in done:
                return
            done.add(folder_id)
            item = folders[folder_id]
            parent = (item.get("parents") or [None])[0]
            if parent in folders:
                apply(parent)
            old, new = self._learn(ctx, item)
            if old is not None and old != new:
                moves.append((old, new))  # new None: moved out, everything below is tombstoned
            elif old is None and new is not None:
                entered.append(folder_id)

        for folder_id in folders:
            apply(folder_id)
        folder_deletions: list[str] = []
        for file_id in gone:
            if file_id in ctx.tree:
                old = ctx.tree.path(file_id)
                folder_deletions.extend(ctx.tree.remove(file_id))
                ctx.learnt.pop(file_id, None)
                if old:
                    moves.append((old, None))
        page = self._file_page(ctx, files, listing=False)
        page = ChangePage.from_changes([*gone, *page.upserts, *page.deletions], folders=page.folders)
        page.moves = moves
        page.folder_deletions = folder_deletions
        page.folders = [f for f in page.folders if f.folder_id in ctx.tree]
        return page, [f for f in entered if f in ctx.tree]

    def _fill(self, ctx: _Sync, folder_ids: list[str], token: str, after: str, last: bool = False) -> Iterator[ChangePage]:
        """List the subtrees of folders that came into the container (breadth first, FILL_BATCH parents a
        query). Pages carry `token` plus the pending folders as their cursor; the last carries `after`."""
        queue = list(dict.fromkeys(folder_ids))
        pending = ctx.cursor(changes=token, fill=queue[:])
        while queue:
            batch, queue = queue[:FILL_BATCH], queue[FILL_BATCH:]
            q = "(" + " or ".join(f"'{fid}' in parents" for fid in batch) + ") and trashed = false"
            page_token: str | None = None
            while True:
                body = ctx.api.list_files(ctx.drive_id, q, FILE_FIELDS, page_token)
                if body is None:  # rare: the page token expired between two requests; list the batch again
                    page_token = None
                    continue
                items = [i for i in body.get("files") or [] if isinstance(i, dict) and i.get("id")]
                for item in items:
                    if item.get("mimeType") == FOLDER and not item.get("trashed"):
                        if self._learn(ctx, item)[1] is not None:
                            queue.append(item["id"])
                page = self._file_page(ctx, items, listing=True)
                page_token = body.get("nextPageToken")
                done = not page_token and not queue
                page.cursor = after if done else pending
                page.last = done and last
                yield self._page_done(ctx, page)
                if not page_token:
                    break

    def _record(self, ctx: _Sync, item: Mapping[str, Any], parent_path: str) -> FileRecord:
        """The hot path of a listing (a few microseconds a file): each field read once."""
        get = item.get
        name, mime, version, link = str(get("name", "")), get("mimeType"), get("version"), get("webViewLink")
        md5, sha256 = get("md5Checksum"), get("sha256Checksum")
        hashes = {}
        if md5:
            hashes["md5"] = md5
        if sha256:
            hashes["sha256"] = sha256
        metadata: dict[str, Any] = {"drive_id": ctx.drive_id, "version": version, "hashes": hashes,
                                    "web_view_link": link, "parent_path": parent_path,
                                    "native": mime is not None and mime.startswith("application/vnd.google-apps.")
                                    and mime != SHORTCUT}
        owners = get("owners")
        if owners:
            owners = [o.get("emailAddress") or o.get("displayName") for o in owners if isinstance(o, dict)]
            if owners:
                metadata["owners"] = owners
        modifier = get("lastModifyingUser")
        if isinstance(modifier, dict) and (modifier.get("emailAddress") or modifier.get("displayName")):
            metadata["last_modifying_user"] = modifier.get("emailAddress") or modifier.get("displayName")
        if mime == SHORTCUT:
            shortcut = get("shortcutDetails")
            if isinstance(shortcut, dict):
                metadata["shortcut_target_id"] = shortcut.get("targetId")
                metadata["shortcut_target_mime_type"] = shortcut.get("targetMimeType")
        size = get("size")
        if size is not None:
            try:
                size = int(size)
            except (TypeError, ValueError):
                size = None
        return FileRecord(
            external_id=item["id"],
            title=name,
            path=f"{parent_path}/{name}" if parent_path else name,
            endpoint=self.endpoint,
            container=ctx.container,
            file_link=link,
            date_created=_time(get("createdTime")),
            date_updated=_time(get("modifiedTime")),
            size=size,
            mime_type=mime,
            # content hash when Drive has one (binary files); Google-native documents change their version
            change_key=md5 or sha256 or (f"v{version}" if version is not None else None),
            project_id=self.project_id,
            user_id=self.user_id,
            metadata=metadata,
        )


register_source(GoogleDriveSource.type_name, GoogleDriveSource)
