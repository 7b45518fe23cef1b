"""Walking a project's folders: which folders to list, what is gone, and the cursor to resume from.

Data Management has no change feed, so a sync is a walk of the folder tree from the top folders down:

- A folder is listed (`/folders/{f}/contents`, every page) when it is new, when its
  lastModifiedTimeRollup differs from the one kept in the tree, or during a full listing. An unchanged
  roll-up means nothing below it changed: the whole subtree is skipped. A no-change sync costs the
  topFolders request.
- Hidden items and folders (deleted in Docs) are tombstones at once. An item or folder that a
  completely listed folder no longer holds is *gone*; gone nodes are settled at the end of the walk
  (unless they turned up in another folder meanwhile, i.e. they moved), so a move never shows as a
  deletion and a re-add. A folder whose listing failed tombstones nothing, and it and its ancestors lose
  their roll-up so that the next sync lists them again.
- Each ChangePage's cursor holds the folders still to visit (a stack), the folder being listed with its
  next page link and the children not yet seen in it, and the gone set, so a killed run resumes at the
  page where it stopped. The folder roll-ups go to the store with the same page: a folder's new roll-up is
  committed only together with a cursor that still has to visit it.
- A full listing (the first sync, a forced one, and every `full_listing_days`) lists every folder and ends
  with the store's sweep, which also tombstones anything the tree never knew about.
"""

from __future__ import annotations

import json
import mimetypes
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Mapping

from ...errors import SourceError
from ...records import ChangePage, FileRecord, Folder
from ..http import json_body
from .client import ApsClient, describe_aps_error
from .tree import ProjectTree

CURSOR_VERSION = 1


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class ProjectWalk:
    """One sync of one project. `pages()` yields its ChangePages."""

    def __init__(self, client: ApsClient, *, endpoint: str, hub_id: str, project_id: str, project_name: str,
                 cursor: str | None, folders: Mapping[str, Folder], page_size: int, full_listing_days: float,
                 record_project_id: str | None, record_user_id: str | None):
        self.client, self.endpoint, self.hub_id = client, endpoint, hub_id
        self.project_id, self.project_name = project_id, project_name
        self.page_size, self.record_project_id, self.record_user_id = page_size, record_project_id, record_user_id
        state = self._parse(cursor)
        self.tree = ProjectTree(folders if state else {})
        now = datetime.now(timezone.utc)
        self.resuming = "stack" in state
        if self.resuming:
            self.full: bool = bool(state["full"])
            self.full_at: str | None = state.get("full_at")
            self.incomplete: bool = bool(state.get("incomplete"))
            self.stack: list[list[Any]] = [list(entry) for entry in state["stack"]]
            self.current: dict[str, Any] | None = state.get("current")
            self.gone: set[str] = set(state.get("gone") or ())
            self.since: str | None = state.get("since")
        else:
            last_full = parse_time(state.get("full_at"))
            self.full = (not state or last_full is None
                         or (full_listing_days > 0 and now - last_full >= timedelta(days=full_listing_days)))
            self.full_at = now.isoformat(timespec="seconds") if self.full else state.get("full_at")
            self.incomplete = False
            self.stack, self.current, self.gone = [], None, set()
            self.since = None  # the newest top-folder roll-up when the walk began (the provider's clock)
        self._reset_batch()

    def _parse(self, cursor: str | None) -> dict[str, Any]:
        if not cursor:
            return {}
        try:
            state = json.loads(cursor)
        except ValueError:
            state = None
        if not isinstance(state, dict) or state.get("v") != CURSOR_VERSION:
            raise SourceError(f"{self.client.http.label}: the stored cursor is not an Autodesk cursor; run a full sync",
                              retryable=False)
        return state

    def _reset_batch(self) -> None:
        self.changes: list[FileRecord | str] = []  # upserts and deletion ids, in order (the last one wins)
        self.nodes: dict[str, Folder] = {}  # tree nodes added or changed
        self.node_deletions: set[str] = set()
        self.moves: list[tuple[str, str | None]] = []
        self.errors: list[str] = []

    # -- the walk -----------------------------------------------------------------------------------
    def pages(self) -> Iterator[ChangePage]:
        calls_before = 0  # the project lookup before the walk counts too
        first = True
        if not self.resuming:
            top = self.client.top_folders(self.hub_id, self.project_id)
            newest = max((str((f.get("attributes") or {}).get("lastModifiedTimeRollup") or "") for f in top),
                         default="")
            self.since = newest if newest and self._settled(newest) else None  # else the next probe says "due"
            self.current = {"id": None, "link": None, "pending": sorted(self.tree.children.get(None, ())), "force": False}
            self._take(None, top, {}, force=False)
            self._complete_current()
        while True:
            done = self._step()
            if done:
                self._settle_gone()
            if done or len(self.changes) + len(self.node_deletions) >= self.page_size:
                page = self._page(starts=first and self.full and not self.resuming, last=done)
                page.api_calls = self.client.calls - calls_before
                calls_before = self.client.calls
                first = False
                yield page
                if done:
                    return

    def _step(self) -> bool:
        """List one page of the folder being listed (picking the next folder first). Returns whether
        nothing is left to list."""
        while self.current is None:
            if not self.stack:
                return True
            folder_id, force = self.stack.pop()
            if self.tree.is_folder(folder_id):  # not dropped since it was pushed
                self.current = {"id": folder_id, "link": None, "force": bool(force),
                                "pending": sorted(self.tree.children.get(folder_id, ()))}
        folder_id = self.current["id"]
        url = self.current["link"] or self.client.contents_url(self.project_id, folder_id)
        response = self.client.contents_page(url)
        if response.status_code in (403, 404):
            self._listing_failed(folder_id, f"HTTP {response.status_code} {describe_aps_error(response)}".strip())
            return False
        body = json_body(response)
        included = {v.get("id"): v for v in body.get("included") or () if isinstance(v, dict)}
        self._take(folder_id, [e for e in body.get("data") or () if isinstance(e, dict)], included,
                   force=self.current["force"])
        following = ((body.get("links") or {}).get("next") or {}).get("href")
        if following:
            self.current["link"] = self.client.http.checked_link(following, "GET /data/v1/projects/{project}/folders/"
                                                                 "{folder}/contents")
        else:
            self._complete_current()
        return False

    def _complete_current(self) -> None:
        """The folder was listed to its last page: what it held before and no longer holds is gone."""
        assert self.current is not None
        folder_id = self.current["id"]
        for node_id in self.current["pending"]:
            node = self.tree.get(node_id)
            if node is not None and node.parent_id == folder_id:
                self.gone.add(node_id)
        self.current = None

    def _listing_failed(self, folder_id: str, problem: str) -> None:
        path = self.tree.path(folder_id)
        self.errors.append(f"{path}: listing the folder failed ({problem}); nothing under it is tombstoned, "
                           "the next sync lists it again")
        for ancestor in self.tree.ancestors(folder_id):  # forget the roll-ups on the way up
            node = self.tree.nodes[ancestor]
            self._set_node(Folder(node.folder_id, node.parent_id, node.name, ""))
        self.incomplete = True
        self.current = None

    def _take(self, parent: str | None, entries: list[dict[str, Any]], included: dict[str, Any], force: bool) -> None:
        assert self.current is not None
        pending = set(self.current["pending"])
        for entry in entries:
            entry_id = str(entry.get("id") or "")
            if not entry_id:
                continue
            pending.discard(entry_id)
            self.gone.discard(entry_id)
            attrs = entry.get("attributes") or {}
            if entry.get("type") == "folders":
                self._folder(parent, entry_id, attrs, force)
            elif entry.get("type") == "items" and parent is not None:
                tip = ((entry.get("relationships") or {}).get("tip") or {}).get("data") or {}
                self._item(parent, entry, attrs, included.get(tip.get("id")))
        self.current["pending"] = sorted(pending)

    def _folder(self, parent: str | None, folder_id: str, attrs: dict[str, Any], force: bool) -> None:
        old = self.tree.get(folder_id)
        if attrs.get("hidden"):
            if old is not None:
                self._drop(folder_id)
            return
        name = str(attrs.get("name") or attrs.get("displayName") or folder_id)
        rollup = str(attrs.get("lastModifiedTimeRollup") or "")
        if old is not None and (old.parent_id, old.name) != (parent, name):
            old_path = self.tree.path(folder_id)
            self.tree.set(Folder(folder_id, parent, name, old.version))
            self._moved(folder_id, old_path, self.tree.path(folder_id))
        if self.full or force or old is None or not rollup or old.version != rollup:
            self.stack.append([folder_id, force])
        self._set_node(Folder(folder_id, parent, name, rollup if self._settled(rollup) else ""))

    def _settled(self, rollup: str) -> bool:
        """Whether no later change can share this roll-up. APS times have whole seconds, so a change made
        after this listing but within the roll-up's second would leave the roll-up as it is, and the
        folder would be skipped until the next full listing. A roll-up less than a second older than the
        response's Date (stamped after the listing was read) is kept as unknown (""): the next sync
        lists the folder again."""
        moment, now = parse_time(rollup), self.client.server_time
        if moment is None or now is None:
            return True
        return moment.replace(microsecond=0) + timedelta(seconds=1) < now

    def _item(self, parent: str, entry: dict[str, Any], attrs: dict[str, Any], tip: dict[str, Any] | None) -> None:
        item_id = entry["id"]
        if attrs.get("hidden"):
            self.changes.append(item_id)
            if item_id in self.tree:
                self._drop(item_id)
            return
        record = self._record(parent, entry, attrs, tip or {})
        self._set_node(Folder(item_id, parent, record.title, None))
        self.changes.append(record)

    def _moved(self, folder_id: str, old_path: str, new_path: str) -> None:
        if old_path == new_path:
            return
        self.moves.append((old_path, new_path))
        prefix = old_path + "/"
        for change in self.changes:  # upserts of this page follow the move the store applies before them
            if isinstance(change, FileRecord) and change.path.startswith(prefix):
                change.path = new_path + "/" + change.path[len(prefix):]
                change.metadata["parent_path"] = change.path.rsplit("/", 1)[0]
        # a folder now at the old path had its files moved along by that prefix rewrite: list it again in full
        for other in self.tree.folders_under_path(old_path, set(self.tree.subtree(folder_id))):
            self.stack.append([other, True])

    def _set_node(self, node: Folder) -> None:
        self.tree.set(node)
        self.nodes[node.folder_id] = node
        self.node_deletions.discard(node.folder_id)

    def _drop(self, node_id: str) -> None:
        """A node is deleted: tombstone every item at or below it, forget the nodes."""
        items = [i for i in self.tree.subtree(node_id) if not self.tree.is_folder(i)]
        self.changes.extend(items)
        for removed in self.tree.remove(node_id):
            self.nodes.pop(removed, None)
            self.node_deletions.add(removed)
            self.gone.discard(removed)

    def _settle_gone(self) -> None:
        for node_id in sorted(self.gone):
            if node_id in self.tree:
                self._drop(node_id)
        self.gone.clear()

    # -- pages and records --------------------------------------------------------------------------
    def _cursor(self, last: bool) -> str:
        if last:  # `since`: what pending_changes compares roll-ups with
            return json.dumps({"v": CURSOR_VERSION, "full_at": self.full_at, "since": self.since})
        return json.dumps({"v": CURSOR_VERSION, "full": self.full, "full_at": self.full_at,
                           "incomplete": self.incomplete, "stack": self.stack, "current": self.current,
                           "gone": sorted(self.gone), "since": self.since})

    def _page(self, starts: bool, last: bool) -> ChangePage:
        page = ChangePage.from_changes(self.changes, cursor=self._cursor(last), full_listing=self.full,
                                       starts_listing=starts, last=last,
                                       listing_incomplete=last and self.full and self.incomplete)
        page.moves = self.moves
        page.folders = list(self.nodes.values())
        page.folder_deletions = sorted(self.node_deletions)
        page.errors = self.errors
        self._reset_batch()
        return page

    def _record(self, parent: str, item: dict[str, Any], attrs: dict[str, Any], tip: dict[str, Any]) -> FileRecord:
        version = tip.get("attributes") or {}
        title = str(version.get("name") or attrs.get("displayName") or item["id"])  # BIM 360: the version's name
        parent_path = self.tree.path(parent)
        link = (((item.get("links") or {}).get("webView") or {}).get("href")
                or ((tip.get("links") or {}).get("webView") or {}).get("href"))
        number = version.get("versionNumber")
        return FileRecord(
            external_id=item["id"],
            title=title,
            path=f"{parent_path}/{title}" if parent_path else title,
            endpoint=self.endpoint,
            container=self.project_id,
            file_link=link,
            date_created=parse_time(attrs.get("createTime")),
            date_updated=parse_time(version.get("lastModifiedTime") or attrs.get("lastModifiedTime")),
            size=version.get("storageSize"),
            mime_type=version.get("mimeType") or mimetypes.guess_type(title)[0],
            change_key=str(number) if number is not None else version.get("lastModifiedTime") or attrs.get("lastModifiedTime"),
            project_id=self.record_project_id,
            user_id=self.record_user_id,
            metadata={
                "hub_id": self.hub_id, "project_id": self.project_id, "project_name": self.project_name,
                "folder_id": parent, "parent_path": parent_path, "version_id": tip.get("id"),
                "version_number": number, "file_type": version.get("fileType"), "web_url": link,
                "created_by": attrs.get("createUserName"),
                "modified_by": version.get("lastModifiedUserName") or attrs.get("lastModifiedUserName"),
            },
        )
