"""A fake of Microsoft Graph (sites, drives, driveItem delta) and of the Entra token endpoint.

A real HTTPS server on 127.0.0.1 (trustme CA), so the real msal and requests are exercised end to
end. Wire formats follow Microsoft's documentation as summarised in ../shared/api-specs/README.md.

The model is a state machine per drive: every item carries a change sequence number; a delta token
encodes a sequence number and a delta call returns the items changed after it, in sequence order
(so an item changed during paging shows up again later, as on the real service). A drive can be
generated lazily: item k of the initial N is computed from k on demand, only changed items are held
in memory, so a million-item drive costs no more than a small one. Untouched generated items are
rendered straight to JSON text from a template (cheap guids, cached folder paths), so the fake serves
a million-item drive faster than a client can parse it.

For benchmarks it runs in a process of its own, so its CPU does not compete with the client's GIL:

    python -m tests.fakes.graph --items 1000000 --port 0

prints one JSON line (base_url, graph_url, authority_host, ca_path, drive_id, site_url, tenant,
client_id, client_secret, ...) and serves until killed; GET /_fake/counts answers its request counters,
POST /_fake/edit?count=N edits N files spread over the library.

`token=latest` answers an empty page whose deltaLink stands for now. A fresh enumeration leaves out
deleted items, also those deleted while it runs, and its final deltaLink starts after them: the
pessimistic reading of Graph's documentation (docs/sharepoint.md), which the source must survive.

Faults: fail N requests (429/503/500, with or without Retry-After), expire delta tokens (410),
repeat an item across pages, shuffle items within a page, revoke access tokens after N requests.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import random
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .server import Fault, FakeServer, RawJSON, serve_until_killed
from .tls import FakeTLS, make_tls

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
EXTENSIONS = [("pdf", "application/pdf"), ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
              ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), ("txt", "text/plain"),
              ("png", "image/png")]

# The driveItem fields the README lists, and what each must be; validate_drive_item checks them.
DRIVE_ITEM_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str, "name": str, "size": int, "createdDateTime": str, "lastModifiedDateTime": str, "eTag": str,
    "cTag": str, "webUrl": str, "parentReference": dict,
}


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_EPOCH_DAYS: dict[int, str] = {}


def iso_after_epoch(seconds: int) -> str:
    """iso(EPOCH + timedelta(seconds=seconds)) without datetime arithmetic (the fake's hot path)."""
    days, rest = divmod(seconds, 86400)
    day = _EPOCH_DAYS.get(days)
    if day is None:
        day = _EPOCH_DAYS[days] = (EPOCH + timedelta(days=days)).strftime("%Y-%m-%d")
    hours, rest = divmod(rest, 3600)
    return f"{day}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}Z"


def content_bytes(item_id: str, content: int, size: int) -> bytes:
    """A file's bytes in the fake: `size` bytes determined by the item and its content version."""
    unit = f"{item_id}:{content}|".encode()
    return (unit * (size // len(unit) + 1))[:size]


def validate_drive_item(item: dict[str, Any]) -> list[str]:
    """Problems with a driveItem as the delta API returns it (empty list = conforms)."""
    problems: list[str] = []
    if not isinstance(item.get("id"), str) or not item["id"]:
        return ["id missing"]
    if "deleted" in item:
        if not isinstance(item["deleted"], dict) or "state" not in item["deleted"]:
            problems.append(f"{item['id']}: deleted facet without state")
        return problems
    for name, kind in DRIVE_ITEM_FIELDS.items():
        if name == "parentReference" and "root" in item:
            continue
        if not isinstance(item.get(name), kind):
            problems.append(f"{item['id']}: {name} missing or not {kind}")
    for name in ("createdDateTime", "lastModifiedDateTime"):
        try:
            datetime.fromisoformat(str(item.get(name)).replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"{item['id']}: {name} is not an ISO 8601 time")
    facets = [f for f in ("file", "folder", "root") if f in item]
    if not facets:
        problems.append(f"{item['id']}: neither file nor folder nor root facet")
    if "file" in item:
        if not isinstance(item["file"].get("mimeType"), str):
            problems.append(f"{item['id']}: file.mimeType missing")
        if not isinstance(item["file"].get("hashes", {}).get("quickXorHash"), str):
            problems.append(f"{item['id']}: file.hashes.quickXorHash missing")
    if "folder" in item and not isinstance(item["folder"].get("childCount"), int):
        problems.append(f"{item['id']}: folder.childCount missing")
    ref = item.get("parentReference") or {}
    if "root" not in item:
        for name in ("driveId", "driveType", "id"):
            if not isinstance(ref.get(name), str):
                problems.append(f"{item['id']}: parentReference.{name} missing")
    if "path" in ref and not str(ref["path"]).startswith("/drives/"):
        problems.append(f"{item['id']}: parentReference.path not /drives/{{id}}/root:...")
    return problems


class FakeDrive:
    """One document library. Items 0..generated-1 are computed from their index (0 is the root,
    then folders in a tree with fan-out 10, then files spread over root and folders); every
    change made later is kept in `changed`, ordered by sequence number."""

    def __init__(self, graph: "FakeGraph", drive_id: str, name: str, site: "FakeSite | None", generated: int,
                 tag: str, folders_every: int = 50):
        self.graph, self.id, self.name, self.site, self.tag = graph, drive_id, name, site, tag
        self.generated = max(1, generated)
        self.n_folders = max(0, min(self.generated - 1, self.generated // folders_every))
        self.seq = self.generated  # base item k has sequence k + 1
        self.changed: OrderedDict[str, dict[str, Any]] = OrderedDict()  # id -> state, in sequence order
        self.silent: dict[str, dict[str, Any]] = {}  # deleted without being reported (children of a folder)
        self.token_epoch = 0
        self.repeat_across_pages = 0  # this many next pages start with the previous page's last item
        self.shuffle_pages = False
        # faults of the next links, each used by one page that has a next page: "drop" (no link at all),
        # "circle" (the next link is the one just requested), "empty" (no items, a next link to the same place)
        self.link_faults: list[str] = []
        self.new_ids = 0
        self._paths: dict[str, tuple[str, str]] = {}  # folder id -> (path, quoted path); cleared on every change
        # guids: a per-drive prefix (one hash per drive) and the item's number, formatted, not hashed
        self._guid_prefix = str(uuid.uuid5(uuid.NAMESPACE_URL, drive_id)).upper()[:18]
        self._drive_ref_json = json.dumps({"driveType": "documentLibrary", "driveId": drive_id})[:-1]

    # -- item state -------------------------------------------------------------------------------
    @property
    def root_id(self) -> str:
        return self._base_id(0)

    def _base_id(self, k: int) -> str:
        return f"01{self.tag}{k:010d}"

    def _base_index(self, item_id: str) -> int | None:
        prefix = f"01{self.tag}"
        if item_id.startswith(prefix) and item_id[len(prefix):].isdigit():
            k = int(item_id[len(prefix):])
            return k if k < self.generated else None
        return None

    def _base_state(self, k: int) -> dict[str, Any]:
        if k == 0:
            return {"id": self._base_id(0), "name": "root", "parent": None, "kind": "root", "version": 1,
                    "content": 1, "size": 0, "created": k, "modified": k, "deleted": False, "seq": 1}
        if k <= self.n_folders:
            parent = (k - 1) // 10
            return {"id": self._base_id(k), "name": f"folder-{k}", "parent": self._base_id(parent), "kind": "folder",
                    "version": 1, "content": 1, "size": 0, "created": k, "modified": k, "deleted": False, "seq": k + 1}
        i = k - self.n_folders - 1
        parent = i % (self.n_folders + 1)
        ext, mime = EXTENSIONS[i % len(EXTENSIONS)]
        return {"id": self._base_id(k), "name": f"file-{i}.{ext}", "parent": self._base_id(parent), "kind": "file",
                "mime": mime, "version": 1, "content": 1, "size": (k * 7919) % 1_000_003, "created": k,
                "modified": k, "deleted": False, "seq": k + 1}

    def state(self, item_id: str) -> dict[str, Any] | None:
        if item_id in self.silent:
            return self.silent[item_id]
        if item_id in self.changed:
            return self.changed[item_id]
        k = self._base_index(item_id)
        return None if k is None else self._base_state(k)

    def states(self) -> Iterator[dict[str, Any]]:
        """Every item's current state (live and deleted), in sequence order."""
        for k in range(self.generated):
            item_id = self._base_id(k)
            if item_id not in self.changed and item_id not in self.silent:
                yield self._base_state(k)
        yield from [s for s in self.changed.values() if s["id"] not in self.silent]
        yield from list(self.silent.values())

    def path(self, item_id: str) -> str:
        return self._path_pair(item_id)[0]

    def _path_pair(self, item_id: str | None) -> tuple[str, str]:
        """(path, URL-quoted path) of an item; folders' are cached until the next change."""
        cached = self._paths.get(item_id) if item_id is not None else ("", "")
        if cached is not None:
            return cached
        state = self.state(item_id)
        if state is None or state["kind"] == "root":
            pair = ("", "")
        else:
            parent, quoted_parent = self._path_pair(state["parent"])
            name = state["name"]
            pair = (f"{parent}/{name}", f"{quoted_parent}/{quote(name)}") if parent else (name, quote(name))
        if state is None or state["kind"] != "file":  # files are many and asked for once each
            self._paths[item_id] = pair
        return pair

    def children(self, folder_id: str) -> list[str]:
        return [s["id"] for s in self.states() if s["parent"] == folder_id and not s["deleted"]]

    def descendants(self, folder_id: str, include_deleted: bool = False) -> list[str]:
        kids: dict[str, list[str]] = {}
        for s in self.states():
            if s["parent"] is not None and (include_deleted or not s["deleted"]):
                kids.setdefault(s["parent"], []).append(s["id"])
        out, stack = [], [folder_id]
        while stack:
            for child in kids.get(stack.pop(), []):
                out.append(child)
                stack.append(child)
        return out

    def live_files(self) -> dict[str, dict[str, Any]]:
        """id -> {path, ctag, name} for every live file: what a correct sync must end up with."""
        folders: dict[str, tuple[str | None, str, bool, str]] = {}
        files = []
        for s in self.states():
            if s["kind"] == "file":
                files.append(s)
            else:
                folders[s["id"]] = (s["parent"], s["name"], s["deleted"], s["kind"])
        cache: dict[str, str | None] = {}

        def folder_path(fid: str) -> str | None:  # None = deleted on the way up
            if fid in cache:
                return cache[fid]
            parent, name, deleted, kind = folders[fid]
            result = "" if kind == "root" else None if deleted else folder_path(parent)
            if result is not None and kind != "root":
                result = f"{result}/{name}" if result else name
            cache[fid] = result
            return result

        out = {}
        for s in files:
            if s["deleted"]:
                continue
            base = folder_path(s["parent"])
            if base is None:
                continue
            out[s["id"]] = {"path": f"{base}/{s['name']}" if base else s["name"], "ctag": self._ctag(s), "name": s["name"]}
        return out

    # -- mutations (each gives the item a new sequence number) ----------------------------------------
    def _touch(self, state: dict[str, Any], **changes: Any) -> dict[str, Any]:
        state = dict(state, **changes)
        self._paths.clear()
        self.seq += 1
        state["seq"] = self.seq
        state["modified"] = self.seq
        self.changed.pop(state["id"], None)
        self.silent.pop(state["id"], None)
        self.changed[state["id"]] = state
        return state

    def _new_id(self) -> str:
        self.new_ids += 1
        return f"01{self.tag}N{self.new_ids:09d}"

    def add_folder(self, parent_id: str, name: str) -> str:
        with self.graph.lock:
            item_id = self._new_id()
            self._touch({"id": item_id, "name": name, "parent": parent_id, "kind": "folder", "version": 1,
                         "content": 1, "size": 0, "created": self.seq + 1, "deleted": False})
            return item_id

    def add_file(self, parent_id: str, name: str, size: int = 1234, mime: str = "application/pdf") -> str:
        with self.graph.lock:
            item_id = self._new_id()
            self._touch({"id": item_id, "name": name, "parent": parent_id, "kind": "file", "mime": mime, "version": 1,
                         "content": 1, "size": size, "created": self.seq + 1, "deleted": False})
            return item_id

    def edit(self, item_id: str) -> None:
        with self.graph.lock:
            s = self.state(item_id)
            self._touch(s, version=s["version"] + 1, content=s["content"] + 1, size=s["size"] + 1)

    def edit_spread(self, count: int) -> int:
        """Edit `count` of the generated files, spread evenly over the library. Returns how many."""
        first, files = self.n_folders + 1, self.generated - self.n_folders - 1
        count = max(0, min(count, files))
        step = files // count if count else 0
        for j in range(count):
            self.edit(self._base_id(first + j * step))
        return count

    def rename(self, item_id: str, name: str) -> None:
        with self.graph.lock:
            s = self.state(item_id)
            self._touch(s, name=name, version=s["version"] + 1)

    def move(self, item_id: str, new_parent_id: str, name: str | None = None) -> None:
        """Move (and optionally rename); a folder's children keep their sequence numbers, as on
        Graph, where a moved folder's descendants are not reported again."""
        with self.graph.lock:
            s = self.state(item_id)
            self._touch(s, parent=new_parent_id, name=name or s["name"], version=s["version"] + 1)

    def delete(self, item_id: str, report_children: bool = True) -> None:
        with self.graph.lock:
            below = self.descendants(item_id)
            self._touch(self.state(item_id), deleted=True)
            for child in below:
                s = self.state(child)
                if report_children:
                    self._touch(s, deleted=True)
                else:  # gone, but only the folder shows in the delta
                    self.silent[child] = dict(s, deleted=True)
            self._paths.clear()

    def restore(self, item_id: str) -> None:
        """Bring an item back from the recycle bin, with everything that was under it."""
        with self.graph.lock:
            below = self.descendants(item_id, include_deleted=True)
            self._touch(self.state(item_id), deleted=False)
            for child in below:
                self._touch(self.state(child), deleted=False)

    def expire_delta_tokens(self) -> None:
        """Every delta and next link handed out so far answers 410 Gone."""
        with self.graph.lock:
            self.token_epoch += 1

    # -- wire format --------------------------------------------------------------------------------
    def _guid(self, item_id: str) -> str:
        """A stable GUID per item: the drive's prefix, then the item's number (0 for base items, 1 for new)."""
        k = self._base_index(item_id)
        if k is not None:
            return f"{self._guid_prefix}-8000-{k:012X}"
        tail = item_id[len(self.tag) + 2:]
        if tail[:1] == "N" and tail[1:].isdigit():
            return f"{self._guid_prefix}-8001-{int(tail[1:]):012X}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.id}/{item_id}")).upper()

    def _ctag(self, s: dict[str, Any]) -> str:
        return f'"c:{{{self._guid(s["id"])}}},{s["content"]}"'

    def web_url(self, path: str) -> str:
        base = self.site.web_url if self.site else f"https://{self.graph.sharepoint_host}/personal/{self.tag}"
        return f"{base}/{quote(self.name)}" + (f"/{quote(path)}" if path else "")

    def item_json(self, s: dict[str, Any], with_path: bool = False) -> dict[str, Any]:
        ref: dict[str, Any] = {"driveType": "documentLibrary", "driveId": self.id}
        if s["deleted"]:
            item = {"id": s["id"], "deleted": {"state": "deleted"}, "parentReference": dict(ref, id=s["parent"] or "")}
            item["folder" if s["kind"] == "folder" else "file"] = {} if s["kind"] == "file" else {"childCount": 0}
            return item
        path, quoted = self._path_pair(s["id"])
        item = {
            "id": s["id"], "name": s["name"],
            "eTag": f'"{{{self._guid(s["id"])}}},{s["version"]}"', "cTag": self._ctag(s),
            "createdDateTime": iso_after_epoch(s["created"]),
            "lastModifiedDateTime": iso_after_epoch(s["modified"]),
            "webUrl": self._web_url_quoted(quoted), "size": s["size"],
        }
        if s["kind"] == "root":
            item["root"] = {}
            item["folder"] = {"childCount": 0}
            item["parentReference"] = ref
            return item
        item["parentReference"] = dict(ref, id=s["parent"])
        if with_path:
            parent_path = self.path(s["parent"])
            item["parentReference"]["path"] = f"/drives/{self.id}/root:" + (f"/{parent_path}" if parent_path else "")
        if s["kind"] == "folder":
            item["folder"] = {"childCount": 10 if s["id"] in self.changed or s["parent"] else 0}
        else:
            item["file"] = {"mimeType": s["mime"], "hashes": {"quickXorHash": self._content_hash(s["id"], s["content"])}}
        return item

    @staticmethod
    def _content_hash(item_id: str, content: int) -> str:
        return base64.b64encode(hashlib.sha1(f"{item_id}:{content}".encode()).digest()).decode()

    def _web_url_quoted(self, quoted_path: str) -> str:
        base = self.site.web_url if self.site else f"https://{self.graph.sharepoint_host}/personal/{self.tag}"
        return f"{base}/{quote(self.name)}" + (f"/{quoted_path}" if quoted_path else "")

    def base_item_text(self, k: int) -> str:
        """json.dumps(item_json(state of untouched base item k)) for k >= 1, from a template: the hot path of
        a fresh enumeration (tests/fakes/test_graph.py checks that both agree)."""
        guid = f"{self._guid_prefix}-8000-{k:012X}"
        moment = iso_after_epoch(k)
        item_id = f"01{self.tag}{k:010d}"
        if k <= self.n_folders:
            name = f"folder-{k}"
            parent_id = f"01{self.tag}{(k - 1) // 10:010d}"
            size = 0
            facet = '"folder": {"childCount": 10}'
        else:
            i = k - self.n_folders - 1
            parent_id = f"01{self.tag}{i % (self.n_folders + 1):010d}"
            ext, mime = EXTENSIONS[i % len(EXTENSIONS)]
            name = f"file-{i}.{ext}"
            size = (k * 7919) % 1_000_003
            facet = f'"file": {{"mimeType": "{mime}", "hashes": {{"quickXorHash": "{self._content_hash(item_id, 1)}"}}}}'
        quoted_parent = self._path_pair(parent_id)[1]
        url = self._web_url_json + (f"/{quoted_parent}/{name}" if quoted_parent else f"/{name}")
        return (f'{{"id": "{item_id}", "name": "{name}", "eTag": "\\"{{{guid}}},1\\"", '
                f'"cTag": "\\"c:{{{guid}}},1\\"", "createdDateTime": "{moment}", "lastModifiedDateTime": "{moment}", '
                f'"webUrl": "{url}", "size": {size}, "parentReference": {self._drive_ref_json}, "id": "{parent_id}"}}, '
                f'{facet}}}')

    @functools.cached_property
    def _web_url_json(self) -> str:
        return json.dumps(self._web_url_quoted(""))[1:-1]

    def drive_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "driveType": "documentLibrary" if self.site else "business",
                "description": "", "createdDateTime": iso(EPOCH), "lastModifiedDateTime": iso(EPOCH),
                "webUrl": self.web_url(""), "owner": {"group": {"displayName": self.site.name}} if self.site else {}}

    def delta_page(self, since: int, after: int, top: int) -> tuple[list[dict[str, Any]], int, bool]:
        """Items with sequence > after (and > since), at most `top`; a fresh enumeration (since == 0)
        leaves out deleted items. Returns (items, last sequence examined, reached the end)."""
        out, last, done = self._delta_states(since, after, top)
        return [self.item_json(self._base_state(s) if isinstance(s, int) else s) for s in out], last, done

    def delta_page_text(self, since: int, after: int, top: int) -> tuple[list[str], int, bool]:
        """delta_page with each item already JSON text (untouched base items from the template)."""
        out, last, done = self._delta_states(since, after, top)
        return [self.base_item_text(s) if isinstance(s, int) and s > 0 else
                json.dumps(self.item_json(self._base_state(s) if isinstance(s, int) else s)) for s in out], last, done

    def _delta_states(self, since: int, after: int, top: int) -> tuple[list[dict[str, Any] | int], int, bool]:
        """delta_page's items as states, or as k for an untouched base item k (rendered later, cheaply)."""
        out: list[dict[str, Any] | int] = []
        last = after
        k = after  # base item k has sequence k + 1
        untouched = not self.changed and not self.silent
        while k < self.generated and len(out) < top:
            if untouched and k >= since:
                stop = min(self.generated, k + top - len(out))
                out.extend(range(k, stop))
                k = last = stop
                continue
            item_id = self._base_id(k)
            if item_id not in self.changed and item_id not in self.silent and k + 1 > since:
                out.append(k)
            last = k + 1
            k += 1
        if len(out) < top:
            for s in list(self.changed.values()):
                if s["seq"] <= max(after, since) or s["id"] in self.silent:
                    continue
                if since == 0 and s["deleted"]:
                    last = s["seq"]
                    continue
                out.append(s)
                last = s["seq"]
                if len(out) >= top:
                    break
            else:
                last = max(last, self.seq)
        done = len(out) < top or last >= self.seq
        if since == 0:
            out = [s for s in out if isinstance(s, int) or not s["deleted"]]
        return out, last, done


@dataclass
class FakeSite:
    host: str
    path: str  # "sites/eng"
    id: str
    name: str
    drives: list[FakeDrive] = field(default_factory=list)

    @property
    def web_url(self) -> str:
        return f"https://{self.host}/{self.path}"


class FakeGraph(FakeServer):
    """Entra + Graph on one HTTPS port. Use as a context manager, or start()/stop()."""

    thread_name = "fake-graph"

    def __init__(self, tenant: str = "contoso-tenant", client_id: str = "app-client-id",
                 client_secret: str = "s3cr3t-Value~fake", sharepoint_host: str = "contoso.sharepoint.com",
                 token_lifetime_s: int = 3599, tls: FakeTLS | None = None, log_size: int = 10000, port: int = 0):
        super().__init__(tls, port)
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.sharepoint_host = sharepoint_host
        self.token_lifetime_s = token_lifetime_s
        self.sites: dict[str, FakeSite] = {}
        self.drives: dict[str, FakeDrive] = {}
        self.users: dict[str, FakeDrive] = {}
        self.valid_tokens: set[str] = set()
        self.tokens_issued = 0
        self.requests: deque[tuple[str, str]] = deque(maxlen=log_size)  # (method, path?query)
        self._drive_tags = 0

    # -- set-up -------------------------------------------------------------------------------------
    def _tag(self) -> str:
        self._drive_tags += 1
        return f"D{self._drive_tags:02d}X"

    def add_site(self, path: str = "sites/eng", name: str = "Engineering") -> FakeSite:
        site_id = f"{self.sharepoint_host},{uuid.uuid5(uuid.NAMESPACE_URL, path)},{uuid.uuid5(uuid.NAMESPACE_DNS, path)}"
        site = FakeSite(self.sharepoint_host, path.strip("/"), site_id, name)
        self.sites[site.path.lower()] = site
        return site

    def add_drive(self, site: FakeSite | None, name: str, items: int = 1, folders_every: int = 50,
                  user: str | None = None) -> FakeDrive:
        tag = self._tag()
        drive_id = f"b!{base64.urlsafe_b64encode(f'{tag}-{name}'.encode()).decode().rstrip('=')}"
        drive = FakeDrive(self, drive_id, name, site, items, tag, folders_every)
        self.drives[drive_id] = drive
        if site is not None:
            site.drives.append(drive)
        if user:
            self.users[user.lower()] = drive
        return drive

    def inject(self, status: int, match: str = "", count: int = 1, skip: int = 0, retry_after: str | None = None,
               code: str | None = None) -> Fault:
        return self.add_fault(Fault(status, match, count, skip, retry_after, code))

    # -- server -------------------------------------------------------------------------------------
    @property
    def authority_host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"

    # -- request handling ---------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if path == "/_fake/edit" and method == "POST":  # a benchmark's "N files changed", from another process
            drive = next(iter(self.drives.values()))
            return 200, {}, {"edited": drive.edit_spread(int(query.get("count", "1")))}
        self.requests.append((method, raw_path))
        if path.startswith("/_download/"):
            return self._download(path, query, headers)
        if not path.startswith("/v1.0/"):
            return self._identity(method, path, body)
        fault = self.take_fault(path)
        if fault is not None:
            return self._fault_response(fault)
        with self.lock:
            if self.revocation_due():
                self.valid_tokens.clear()
            token = headers.get("authorization", "").removeprefix("Bearer ")
            if token not in self.valid_tokens:
                self.counts["401"] += 1
                return 401, {"WWW-Authenticate": 'Bearer realm=""'}, _graph_error(
                    "InvalidAuthenticationToken", "Access token has expired or is not valid yet.")
            return self._graph(path.removeprefix("/v1.0"), query)

    def _download(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        self.counts["download"] += 1
        if headers.get("authorization"):
            self.counts["download_with_token"] += 1  # the bearer token must never reach the download host
            return 400, {}, {"error": {"code": "invalidRequest", "message": "unexpected Authorization header"}}
        _, _, drive_id, item_id = path.split("/", 3)
        drive = self.drives.get(drive_id)
        s = drive.state(item_id) if drive else None
        if s is None or s["deleted"]:
            return 404, {}, _graph_error("itemNotFound", "The resource could not be found.")
        signature = hashlib.sha256(f"{drive_id}/{item_id}:{s['content']}".encode()).hexdigest()[:32]
        if query.get("tempauth") != signature:
            return 401, {}, _graph_error("unauthenticated", "The download URL has expired")
        return 200, {"Content-Type": "application/octet-stream"}, content_bytes(item_id, s["content"], s["size"])

    def fake_bug(self, message: str) -> Any:
        return _graph_error("fakeBug", message)

    def content_type(self, payload: Any) -> str:
        return "application/json; odata.metadata=minimal"

    def _fault_response(self, fault: Fault) -> tuple[int, dict[str, str], Any]:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        code = fault.code or {429: "activityLimitReached", 503: "serviceNotAvailable"}.get(fault.status, "generalException")
        message = {429: "The request has been throttled", 503: "Service unavailable"}.get(fault.status, "General exception")
        return fault.status, headers, _graph_error(code, message)

    def _identity(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], Any]:
        segments = path.strip("/").split("/")
        tenant = segments[0] if segments else ""
        base = self.base_url
        if path.endswith("/v2.0/.well-known/openid-configuration") and method == "GET":
            self.counts["openid"] += 1
            if tenant != self.tenant:
                return 400, {}, _aad_error("invalid_tenant", 90002, f"Tenant '{tenant}' not found. Check to make sure you "
                                           "have the correct tenant ID and are signing into the correct cloud.")
            return 200, {}, {"authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                             "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                             "issuer": f"{base}/{tenant}/v2.0", "token_endpoint_auth_methods_supported":
                                 ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                             "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                             "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys"}
        if path.endswith("/oauth2/v2.0/token") and method == "POST":
            self.counts["token"] += 1
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            if tenant != self.tenant:
                return 400, {}, _aad_error("invalid_request", 90002, f"Tenant '{tenant}' not found.")
            if form.get("grant_type") != "client_credentials":
                return 400, {}, _aad_error("unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
            if form.get("client_id") != self.client_id:
                return 400, {}, _aad_error("unauthorized_client", 700016, f"Application with identifier "
                                           f"'{form.get('client_id')}' was not found in the directory '{tenant}'.")
            if form.get("client_secret") != self.client_secret:
                return 401, {}, _aad_error("invalid_client", 7000215, "Invalid client secret provided. Ensure the secret "
                                           "being sent in the request is the client secret value, not the client secret "
                                           f"ID, for a secret added to app '{self.client_id}'.")
            if form.get("scope") != f"{base}/.default":
                return 400, {}, _aad_error("invalid_scope", 1002012, f"The provided value for scope "
                                           f"{form.get('scope')} is not valid. Client credential flows must have a "
                                           "scope value with /.default suffixed to the resource identifier.")
            with self.lock:
                self.tokens_issued += 1
                token = f"eyJ0eXAiOiJKV1Qi.fake-access-{self.tokens_issued}-{uuid.uuid4().hex}"
                self.valid_tokens.add(token)
            return 200, {}, {"token_type": "Bearer", "expires_in": self.token_lifetime_s,
                             "ext_expires_in": self.token_lifetime_s, "access_token": token}
        return 404, {}, {"error": "not_found", "error_description": f"no route {path}"}

    def _graph(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        segs = path.strip("/").split("/")
        if segs[0] == "sites" and len(segs) >= 2 and ":" in segs[1]:
            self.counts["site"] += 1
            host, _, rest = path.removeprefix("/sites/").partition(":")
            site = self.sites.get(rest.strip(":/").lower())
            if site is None or host.lower() != self.sharepoint_host:
                return 404, {}, _graph_error("itemNotFound", "Requested site could not be found")
            return 200, {}, {"id": site.id, "name": site.path.rsplit("/", 1)[-1], "displayName": site.name,
                             "webUrl": site.web_url, "createdDateTime": iso(EPOCH),
                             "siteCollection": {"hostname": site.host}}
        if segs[0] == "sites" and len(segs) == 3 and segs[2] == "drives":
            self.counts["drives"] += 1
            site = next((s for s in self.sites.values() if s.id == segs[1]), None)
            if site is None:
                return 404, {}, _graph_error("itemNotFound", "Requested site could not be found")
            return 200, {}, {"value": [d.drive_json() for d in site.drives]}
        if segs[0] == "users" and len(segs) == 3 and segs[2] == "drive":
            self.counts["user_drive"] += 1
            drive = self.users.get(segs[1].lower())
            if drive is None:
                return 404, {}, _graph_error("ResourceNotFound", "User not found")
            return 200, {}, drive.drive_json()
        if segs[0] == "drives" and len(segs) >= 2:
            drive = self.drives.get(segs[1])
            if drive is None:
                return 404, {}, _graph_error("itemNotFound", "The resource could not be found.")
            if len(segs) == 2:
                self.counts["drive"] += 1
                return 200, {}, drive.drive_json()
            if segs[2:] == ["root", "delta"]:
                return self._delta(drive, query)
            if len(segs) == 5 and segs[2] == "items" and segs[4] == "content":
                self.counts["content"] += 1
                s = drive.state(segs[3])
                if s is None or s["deleted"] or s["kind"] != "file":
                    return 404, {}, _graph_error("itemNotFound", "The resource could not be found.")
                # like SharePoint: a short-lived pre-authenticated URL on another host (localhost here, so a
                # client that forwards the bearer token there would be caught by _download)
                signature = hashlib.sha256(f"{drive.id}/{s['id']}:{s['content']}".encode()).hexdigest()[:32]
                port = self.server.server_address[1] if self.server else 0
                location = f"https://localhost:{port}/_download/{quote(drive.id)}/{quote(s['id'])}?tempauth={signature}"
                return 302, {"Location": location}, {}
            if len(segs) == 4 and segs[2] == "items":
                self.counts["item"] += 1
                s = drive.state(segs[3])
                if s is None or s["deleted"]:
                    return 404, {}, _graph_error("itemNotFound", "The resource could not be found.")
                return 200, {}, drive.item_json(s, with_path=True)
        return 400, {}, _graph_error("invalidRequest", f"Invalid request {path}")

    def _delta(self, drive: FakeDrive, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        self.counts["delta"] += 1
        top = int(query.get("$top", "200"))
        link = f"{self.graph_url}/drives/{drive.id}/root/delta"
        state = query.get("$skiptoken") or query.get("token")
        since = after = 0
        if state == "latest" and "$skiptoken" not in query:  # an empty page whose deltaLink is "now"
            self.counts["delta_latest"] += 1
            self.counts["delta"] -= 1
            with self.lock:
                token = base64.urlsafe_b64encode(f"{drive.token_epoch}.{drive.seq}.{drive.seq}.{top}".encode()).decode()
            context = json.dumps(f"{self.graph_url}/$metadata#Collection(driveItem)")
            return 200, {}, RawJSON(f'{{"@odata.context": {context}, "value": [], '
                                    f'"@odata.deltaLink": {json.dumps(f"{link}?token={token}")}}}')
        if state:
            try:
                epoch, since, after, top_in_token = (int(x) for x in base64.urlsafe_b64decode(state.encode()).decode().split("."))
            except ValueError:
                return 400, {}, _graph_error("invalidRequest", "Invalid token")
            if epoch != drive.token_epoch:
                self.counts["410"] += 1
                return 410, {"Location": f"{link}?$top={top}"}, {"error": {
                    "code": "resyncRequired", "message": "Resync required. Replace any local items with the server's "
                    "version (including deletes) if you're sure that the service was up to date with your local "
                    "changes when you last sync'd. Upload any local changes that the server doesn't know about.",
                    "innerError": {"code": "resyncChangesApplyDifferences", "date": iso(datetime.now(timezone.utc))}}}
            if "token" in query and "$skiptoken" not in query:
                after = since
                top = int(query.get("$top", top_in_token))  # a delta link keeps the page size it was made with
        with self.lock:
            items, last, done = drive.delta_page_text(since, after, top)
            if drive.shuffle_pages:
                random.Random(last).shuffle(items)
            if done:
                token = base64.urlsafe_b64encode(f"{drive.token_epoch}.{drive.seq}.{drive.seq}.{top}".encode()).decode()
                follow = ("@odata.deltaLink", f"{link}?token={token}")
            else:
                resume = last - 1 if drive.repeat_across_pages > 0 and top > 1 else last
                if resume != last:
                    drive.repeat_across_pages -= 1
                token = base64.urlsafe_b64encode(f"{drive.token_epoch}.{since}.{resume}.{top}".encode()).decode()
                follow = ("@odata.nextLink", f"{link}?$top={top}&$skiptoken={token}")
                fault = drive.link_faults.pop(0) if drive.link_faults else None
                if fault in ("circle", "empty"):
                    here = base64.urlsafe_b64encode(f"{drive.token_epoch}.{since}.{after}.{top}".encode()).decode()
                    follow = ("@odata.nextLink", f"{link}?$top={top}&$skiptoken={here}")
                    if fault == "empty":
                        items = []
                elif fault == "drop":
                    follow = ("@odata.count", 0)
        # what json.dumps({"@odata.context": ..., "value": [...], follow[0]: follow[1]}) gives, items pre-rendered
        context = json.dumps(f"{self.graph_url}/$metadata#Collection(driveItem)")
        return 200, {}, RawJSON(f'{{"@odata.context": {context}, "value": [{", ".join(items)}], '
                                f'{json.dumps(follow[0])}: {json.dumps(follow[1])}}}')


def _graph_error(code: str, message: str) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {"error": {"code": code, "message": message,
                      "innerError": {"date": iso(now), "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}}}


def _aad_error(error: str, code: int, description: str) -> dict[str, Any]:
    trace, corr = uuid.uuid4(), uuid.uuid4()
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return {"error": error, "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {corr} "
            f"Timestamp: {stamp}", "error_codes": [code], "timestamp": stamp, "trace_id": str(trace),
            "correlation_id": str(corr), "error_uri": "https://login.microsoftonline.com/error?code=" + str(code)}


def main(argv: list[str] | None = None) -> None:
    """Serve one generated library until killed; the connection details go to stdout as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.graph", description=main.__doc__)
    parser.add_argument("--items", type=int, default=100_000, help="items in the library, root and folders included")
    parser.add_argument("--folders-every", type=int, default=50, help="one folder per this many items")
    parser.add_argument("--library", default="Documents")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)

    def make(tmp: str) -> tuple[FakeGraph, Any]:
        graph = FakeGraph(tls=make_tls(tmp), port=args.port)
        site = graph.add_site("sites/eng", "Engineering")
        drive = graph.add_drive(site, args.library, items=args.items, folders_every=args.folders_every)
        return graph, lambda: {
            "base_url": graph.base_url, "graph_url": graph.graph_url, "authority_host": graph.authority_host,
            "ca_path": graph.tls.ca_path, "tenant": graph.tenant, "client_id": graph.client_id,
            "client_secret": graph.client_secret, "sharepoint_host": graph.sharepoint_host,
            "site_url": site.web_url, "drive_id": drive.id, "library": drive.name, "items": drive.generated,
            "folders": drive.n_folders, "files": drive.generated - 1 - drive.n_folders,
            "counts_url": f"{graph.base_url}/_fake/counts"}

    serve_until_killed("fake-graph-", make)


if __name__ == "__main__":
    main()
