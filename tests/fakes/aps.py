"""A fake of Autodesk Platform Services: the 2-legged token endpoint and Data Management (hubs,
projects, topFolders, folder contents) for BIM 360 / ACC projects.

A real HTTPS server on 127.0.0.1 (trustme CA), so the real requests client runs end to end. Wire
formats follow ../shared/api-specs/aps-authentication.yaml and aps-data-management.yaml (JSON:API:
`data`, `included` tip versions, `links.next`; errors as `{"errors": [...]}`); tests/fakes/test_aps.py
validates the responses against those schemas.

The model: per project a tree of folders and items. Every change advances a fake clock and stamps the
changed node and each of its ancestors' lastModifiedTimeRollup, as APS does, so an incremental
client can skip unchanged subtrees. Deleting marks a node hidden (BIM 360 / ACC keep deleted items,
visible with includeHidden=true); `purge` makes it vanish.

For benchmarks it runs in a process of its own:

    python -m tests.fakes.aps --items 50000 --folders 2000 --port 0

prints one JSON line (api_url, ca_path, client_id, client_secret, hub_id, project_id, ...) and serves
until killed; GET /_fake/counts answers its request counters.

Faults: fail N requests (429 with Retry-After, 5xx, 403, 404), a rate limit per endpoint family that
answers 429 beyond N requests in a window, revoke access tokens after N requests.
"""

from __future__ import annotations

import argparse
import base64
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .server import Fault, FakeServer, serve_until_killed
from .tls import FakeTLS, make_tls

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
EXTENSIONS = [("pdf", "application/pdf"), ("dwg", "application/acad"), ("rvt", "application/octet-stream"),
              ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"), ("ifc", "application/x-step")]
USERS = [("BW9RM76WZBGL", "Ada Lovelace"), ("X8KQ2LMN4PZT", "Grace Hopper"), ("QW3ER5TY7UIO", "Alan Turing")]


def stamp(tick: int) -> str:
    """The fake clock as APS writes times: '2024-01-01T00:00:07.000Z'."""
    return (EPOCH + timedelta(seconds=tick)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Node:
    id: str
    kind: str  # "folder" | "item"
    parent: str | None  # None for a top folder (its parent is the project's root folder)
    name: str
    created: int
    modified: int
    rollup: int = 0
    hidden: bool = False
    version: int = 1
    size: int = 0
    ext: str = "pdf"
    mime: str = "application/pdf"
    user: int = 0
    children: list[str] = field(default_factory=list)  # in creation order


class FakeProject:
    def __init__(self, aps: "FakeAPS", project_id: str, name: str):
        self.aps, self.id, self.name = aps, project_id, name
        self.root_id = f"urn:adsk.wipprod:fs.folder:co.root-{project_id[2:10]}"
        self.nodes: dict[str, Node] = {}
        self.top: list[str] = []
        self.ids = 0

    # -- building and changing the tree --------------------------------------------------------------
    def _new_id(self, kind: str) -> str:
        self.ids += 1
        tag = self.id[2:10]
        return (f"urn:adsk.wipprod:fs.folder:co.{tag}-{self.ids:07d}" if kind == "folder"
                else f"urn:adsk.wipprod:dm.lineage:{tag}-{self.ids:07d}")

    def _touch(self, node: Node) -> None:
        """A change at the next tick: the node and every ancestor get it as their roll-up."""
        tick = self.aps.tick()
        node.modified = tick
        current: Node | None = node
        while current is not None:
            current.rollup = tick
            current = self.nodes.get(current.parent) if current.parent else None

    def add_folder(self, parent: str | None, name: str) -> str:
        with self.aps.lock:
            node = Node(self._new_id("folder"), "folder", parent, name, self.aps.tick(), 0)
            self.nodes[node.id] = node
            (self.nodes[parent].children if parent else self.top).append(node.id)
            self._touch(node)
            return node.id

    def add_item(self, folder: str, name: str, size: int = 1000, user: int = 0) -> str:
        with self.aps.lock:
            ext = name.rsplit(".", 1)[-1] if "." in name else ""
            mime = dict(EXTENSIONS).get(ext, "application/octet-stream")
            node = Node(self._new_id("item"), "item", folder, name, self.aps.tick(), 0, size=size, ext=ext,
                        mime=mime, user=user)
            self.nodes[node.id] = node
            self.nodes[folder].children.append(node.id)
            self._touch(node)
            return node.id

    def new_version(self, item: str, name: str | None = None, size: int | None = None, rollup: bool = True) -> None:
        """Upload a new version (optionally renaming the file, as a rename does in Docs). rollup=False
        leaves the folders' roll-ups as they were: a change an incremental client cannot see."""
        with self.aps.lock:
            node = self.nodes[item]
            node.version += 1
            node.name = name or node.name
            node.size = node.size + 1 if size is None else size
            node.user = (node.user + 1) % len(USERS)
            if rollup:
                self._touch(node)
            else:
                node.modified = self.aps.tick()

    def rename_folder(self, folder: str, name: str) -> None:
        with self.aps.lock:
            node = self.nodes[folder]
            node.name = name
            self._touch(node)

    def move(self, node_id: str, new_parent: str | None) -> None:
        """Move an item or a folder; both the old and the new parent chain get a new roll-up."""
        with self.aps.lock:
            node = self.nodes[node_id]
            old_parent = node.parent
            (self.nodes[old_parent].children if old_parent else self.top).remove(node_id)
            (self.nodes[new_parent].children if new_parent else self.top).append(node_id)
            node.parent = new_parent
            if old_parent:
                self._touch(self.nodes[old_parent])
            self._touch(node)

    def delete(self, node_id: str) -> None:
        """What deleting in Docs does: the node (and everything under it) is hidden."""
        self._set_hidden(node_id, True)

    def restore(self, node_id: str) -> None:
        self._set_hidden(node_id, False)

    def _set_hidden(self, node_id: str, hidden: bool) -> None:
        with self.aps.lock:
            stack = [node_id]
            while stack:
                node = self.nodes[stack.pop()]
                node.hidden = hidden
                stack.extend(node.children)
            self._touch(self.nodes[node_id])

    def purge(self, node_id: str) -> None:
        """The node vanishes from every listing (as if the app lost access to it)."""
        with self.aps.lock:
            node = self.nodes[node_id]
            (self.nodes[node.parent].children if node.parent else self.top).remove(node_id)
            if node.parent:
                self._touch(self.nodes[node.parent])
            stack = [node_id]
            while stack:
                gone = self.nodes.pop(stack.pop())
                stack.extend(gone.children)

    def generate(self, items: int, folders: int, top: tuple[str, ...] = ("Project Files", "Plans"),
                 fan_out: int = 4) -> None:
        """`folders` folders under the top folders (a tree with the given fan-out), `items` items spread
        round-robin over all of them. Everything at one tick, as a fresh project would be."""
        with self.aps.lock:
            tick = self.aps.tick()
            all_folders: list[str] = []
            for name in top:
                node = Node(self._new_id("folder"), "folder", None, name, tick, tick, tick)
                self.nodes[node.id] = node
                self.top.append(node.id)
                all_folders.append(node.id)
            for k in range(folders):
                parent = all_folders[k // fan_out] if k // fan_out < len(all_folders) else all_folders[-1]
                node = Node(self._new_id("folder"), "folder", parent, f"Folder {k:04d}", tick, tick, tick)
                self.nodes[node.id] = node
                self.nodes[parent].children.append(node.id)
                all_folders.append(node.id)
            for i in range(items):
                ext, mime = EXTENSIONS[i % len(EXTENSIONS)]
                folder = all_folders[i % len(all_folders)]
                node = Node(self._new_id("item"), "item", folder, f"Sheet-{i:06d}.{ext}", tick, tick, tick,
                            size=(i * 7919) % 5_000_011 + 1, ext=ext, mime=mime, user=i % len(USERS))
                self.nodes[node.id] = node
                self.nodes[folder].children.append(node.id)

    # -- what a correct client must end up with -------------------------------------------------------
    def path(self, node_id: str) -> str:
        parts, current = [], self.nodes.get(node_id)
        while current is not None:
            parts.append(current.name)
            current = self.nodes.get(current.parent) if current.parent else None
        return "/".join(reversed(parts))

    def live_items(self) -> dict[str, dict[str, Any]]:
        """item id -> {path, version, name} for every item that is not hidden."""
        return {n.id: {"path": self.path(n.id), "version": n.version, "name": n.name}
                for n in self.nodes.values() if n.kind == "item" and not n.hidden}

    def folder_ids(self) -> list[str]:
        return [n.id for n in self.nodes.values() if n.kind == "folder"]

    # -- wire format ----------------------------------------------------------------------------------
    def web_view(self, node: Node) -> str:
        folder = node.id if node.kind == "folder" else node.parent
        base = f"https://acc.autodesk.com/docs/files/projects/{self.id[2:]}?folderUrn={quote(str(folder), safe='')}"
        return base if node.kind == "folder" else base + f"&entityId={quote(node.id, safe='')}"

    def _links(self, kind: str, node_id: str) -> dict[str, Any]:
        base = f"{self.aps.api_url}/data/v1/projects/{self.id}/{kind}/{quote(node_id, safe='')}"
        return {"refs": {"links": {"self": {"href": f"{base}/relationships/refs"}, "related": {"href": f"{base}/refs"}}},
                "links": {"links": {"self": {"href": f"{base}/relationships/links"}}}}

    def folder_json(self, node: Node) -> dict[str, Any]:
        user_id, user_name = USERS[node.user]
        parent = node.parent or self.root_id
        href = f"{self.aps.api_url}/data/v1/projects/{self.id}/folders/{quote(node.id, safe='')}"
        return {
            "type": "folders", "id": node.id,
            "attributes": {
                "name": node.name, "displayName": node.name, "objectCount": len(node.children),
                "createTime": stamp(node.created), "createUserId": user_id, "createUserName": user_name,
                "lastModifiedTime": stamp(node.modified), "lastModifiedUserId": user_id,
                "lastModifiedUserName": user_name, "lastModifiedTimeRollup": stamp(node.rollup),
                "hidden": node.hidden, "path": f"/{self.id}/{self.path(node.id)}",
                "extension": {"type": "folders:autodesk.bim360:Folder", "version": "1.0",
                              "schema": {"href": f"{self.aps.api_url}/schema/v1/versions/folders%3Aautodesk.bim360%3AFolder-1.0"},
                              "data": {}},
            },
            "links": {"self": {"href": href}, "webView": {"href": self.web_view(node)}},
            "relationships": {
                "parent": {"links": {"related": {"href": f"{href}/parent"}}, "data": {"type": "folders", "id": parent}},
                **self._links("folders", node.id),
                "contents": {"links": {"related": {"href": f"{href}/contents"}}},
            },
        }

    def version_id(self, node: Node) -> str:
        return node.id.replace("dm.lineage:", "fs.file:vf.") + f"?version={node.version}"

    def item_json(self, node: Node) -> tuple[dict[str, Any], dict[str, Any]]:
        """The item and its tip version (what `included` carries)."""
        creator_id, creator = USERS[0]
        user_id, user_name = USERS[node.user]
        project = f"{self.aps.api_url}/data/v1/projects/{self.id}"
        item_href = f"{project}/items/{quote(node.id, safe='')}"
        version_id = self.version_id(node)
        version_href = f"{project}/versions/{quote(version_id, safe='')}"
        item = {
            "type": "items", "id": node.id,
            "attributes": {
                "displayName": node.name, "createTime": stamp(node.created), "createUserId": creator_id,
                "createUserName": creator, "lastModifiedTime": stamp(node.modified), "lastModifiedUserId": user_id,
                "lastModifiedUserName": user_name, "hidden": node.hidden, "reserved": False,
                "extension": {"type": "items:autodesk.bim360:File", "version": "1.0",
                              "schema": {"href": f"{self.aps.api_url}/schema/v1/versions/items%3Aautodesk.bim360%3AFile-1.0"},
                              "data": {}},
            },
            "links": {"self": {"href": item_href}, "webView": {"href": self.web_view(node)}},
            "relationships": {
                "parent": {"links": {"related": {"href": f"{item_href}/parent"}},
                           "data": {"type": "folders", "id": node.parent}},
                "tip": {"links": {"related": {"href": f"{item_href}/tip"}}, "data": {"type": "versions", "id": version_id}},
                "versions": {"links": {"related": {"href": f"{item_href}/versions"}}},
                **self._links("items", node.id),
            },
        }
        version = {
            "type": "versions", "id": version_id,
            "attributes": {
                "name": node.name, "displayName": node.name, "versionNumber": node.version, "mimeType": node.mime,
                "fileType": node.ext, "storageSize": node.size, "createTime": stamp(node.modified),
                "createUserId": user_id, "createUserName": user_name, "lastModifiedTime": stamp(node.modified),
                "lastModifiedUserId": user_id, "lastModifiedUserName": user_name,
                "extension": {"type": "versions:autodesk.bim360:File", "version": "1.0",
                              "schema": {"href": f"{self.aps.api_url}/schema/v1/versions/versions%3Aautodesk.bim360%3AFile-1.0"},
                              "data": {}},
            },
            "links": {"self": {"href": version_href}, "webView": {"href": self.web_view(node)}},
            "relationships": {
                "item": {"links": {"related": {"href": item_href}}, "data": {"type": "items", "id": node.id}},
                **self._links("versions", version_id),
                "storage": {"data": {"type": "objects", "id": f"urn:adsk.objects:os.object:wip.dm.prod/{node.id[-15:]}.{node.ext}"},
                            "meta": {"link": {"href": f"{self.aps.api_url}/oss/v2/buckets/wip.dm.prod/objects/{node.id[-15:]}.{node.ext}"}}},
            },
        }
        return item, version

    def project_json(self) -> dict[str, Any]:
        hub = f"{self.aps.api_url}/project/v1/hubs/{self.aps.hub_id}"
        href = f"{hub}/projects/{self.id}"
        return {
            "type": "projects", "id": self.id,
            "attributes": {"name": self.name, "scopes": ["b360project.{}".format(self.id[2:]), "global"],
                           "extension": {"type": "projects:autodesk.bim360:Project", "version": "1.0",
                                         "schema": {"href": f"{self.aps.api_url}/schema/v1/versions/projects%3Aautodesk.bim360%3AProject-1.0"},
                                         "data": {}}},
            "links": {"self": {"href": href}, "webView": {"href": f"https://acc.autodesk.com/docs/files/projects/{self.id[2:]}"}},
            "relationships": {
                "hub": {"data": {"type": "hubs", "id": self.aps.hub_id}, "links": {"related": {"href": hub}}},
                "rootFolder": {"data": {"type": "folders", "id": self.root_id},
                               "meta": {"link": {"href": f"{self.aps.api_url}/data/v1/projects/{self.id}/folders/{quote(self.root_id, safe='')}"}}},
                "topFolders": {"links": {"related": {"href": f"{href}/topFolders"}}},
            },
        }


class FakeAPS(FakeServer):
    """APS auth + Data Management on one HTTPS port. Use as a context manager, or start()/stop()."""

    thread_name = "fake-aps"

    def __init__(self, client_id: str = "aps-client-id-0123456789", client_secret: str = "aps-S3cret~value-fake",
                 hub_name: str = "Contoso Construction", token_lifetime_s: int = 3599, tls: FakeTLS | None = None,
                 port: int = 0, relative_links: bool = False):
        super().__init__(tls, port)
        self.client_id, self.client_secret = client_id, client_secret
        self.hub_id = f"b.{uuid.uuid5(uuid.NAMESPACE_DNS, hub_name)}"
        self.hub_name = hub_name
        self.token_lifetime_s = token_lifetime_s
        self.relative_links = relative_links  # links.next as a path, as some APS endpoints answer
        self.clock = 0
        # time stands still: changes land in the second of the last one and share its roll-up (APS times
        # have whole seconds), responses too
        self.same_second = False
        self.projects: dict[str, FakeProject] = {}
        self.rate_limits: dict[str, tuple[int, float]] = {}  # family -> (requests, window seconds)
        self._recent: dict[str, deque[float]] = {}
        self.valid_tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.tokens_issued = 0
        self.requests: deque[tuple[str, str, dict[str, str]]] = deque(maxlen=20000)  # method, path?query, headers

    def tick(self) -> int:
        """The second of the next change: the next one, or (same_second) the current one."""
        with self.lock:
            if not (self.same_second and self.clock):
                self.clock += 1
            return self.clock

    def http_date(self) -> str:
        """The Date header, from the fake clock: every response takes a second (so a change made after it
        has a later roll-up), unless same_second holds time still."""
        with self.lock:
            if not self.same_second:
                self.clock += 1
            return format_datetime(EPOCH + timedelta(seconds=self.clock), usegmt=True)

    # -- set-up ---------------------------------------------------------------------------------------
    def add_project(self, name: str, items: int = 0, folders: int = 0, project_id: str | None = None) -> FakeProject:
        project_id = project_id or f"b.{uuid.uuid5(uuid.NAMESPACE_URL, f'{self.hub_id}/{name}')}"
        project = FakeProject(self, project_id, name)
        with self.lock:
            self.projects[project_id] = project
        if items or folders:
            project.generate(items, folders)
        return project

    def inject(self, status: int, match: str = "", count: int = 1, skip: int = 0, retry_after: str | None = None) -> Fault:
        return self.add_fault(Fault(status, match, count, skip, retry_after))

    def limit(self, family: str, requests: int, window_s: float) -> None:
        """Answer 429 (Retry-After: the seconds until the window frees a slot) beyond `requests`
        requests of a family ("projects" or "contents") within any `window_s` seconds."""
        self.rate_limits[family] = (requests, window_s)

    # -- server ---------------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return self.base_url

    # -- request handling -----------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.requests.append((method, raw_path, headers))
        if path == "/authentication/v2/token":
            return self._token(method, headers, body)
        family = "contents" if path.startswith("/data/") else "projects"
        fault = self.take_fault(path)
        if fault is not None:
            return fault.status, ({"Retry-After": fault.retry_after} if fault.retry_after else {}), \
                _errors(fault.status, {429: "TOO_MANY_REQUESTS", 403: "FORBIDDEN", 404: "NOT_FOUND"}.get(
                    fault.status, "INTERNAL_ERROR"), {429: "Rate limit exceeded"}.get(fault.status, "Injected fault"))
        with self.lock:
            throttled = self._rate_limited(family)
            if throttled is not None:
                self.counts["429"] += 1
                return 429, {"Retry-After": str(throttled)}, _errors(429, "TOO_MANY_REQUESTS", "Rate limit exceeded",
                                                                      f"Too many requests to {family}; retry later")
            if self.revocation_due():
                self.valid_tokens.clear()
            token = headers.get("authorization", "").removeprefix("Bearer ")
            if self.valid_tokens.get(token, 0) < time.monotonic():
                self.counts["401"] += 1
                return 401, {}, {"developerMessage": "The token is invalid or has expired.", "errorCode": "AUTH-006",
                                 "moreInfo": "https://aps.autodesk.com/en/docs/oauth/v2/developers_guide/error_handling/"}
            return self._api(path, query, headers)

    def fake_bug(self, message: str) -> Any:
        return _errors(500, "FAKE_BUG", message)

    def content_type(self, payload: Any) -> str:
        return "application/vnd.api+json" if isinstance(payload, dict) and "jsonapi" in payload else "application/json"

    def _rate_limited(self, family: str) -> int | None:
        if family not in self.rate_limits:
            return None
        limit, window = self.rate_limits[family]
        now = time.monotonic()
        recent = self._recent.setdefault(family, deque())
        while recent and recent[0] <= now - window:
            recent.popleft()
        if len(recent) >= limit:
            return max(1, int(recent[0] + window - now + 0.999))
        recent.append(now)
        return None

    def _token(self, method: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        self.counts["token"] += 1
        form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
        if method != "POST":
            return 405, {}, {"developerMessage": "Method not allowed", "errorCode": ""}
        basic = headers.get("authorization", "")
        try:
            client_id, _, secret = base64.b64decode(basic.removeprefix("Basic ")).decode().partition(":")
        except ValueError:
            client_id, secret = "", ""
        if not basic.startswith("Basic ") or client_id != self.client_id or secret != self.client_secret:
            return 401, {}, {"developerMessage": "The client_id specified does not have access to the api product",
                             "moreInfo": "https://aps.autodesk.com/en/docs/oauth/v2/developers_guide/error_handling/#error-codes",
                             "errorCode": "AUTH-001"}
        if form.get("grant_type") != "client_credentials":
            return 400, {}, {"developerMessage": "Unsupported grant_type", "errorCode": "AUTH-008"}
        if "data:read" not in form.get("scope", "").split():
            return 400, {}, {"developerMessage": f"Invalid scope {form.get('scope')!r}", "errorCode": "AUTH-010"}
        with self.lock:
            self.tokens_issued += 1
            token = f"eyJhbGciOiJSUzI1NiJ9.fake-aps-{self.tokens_issued}-{uuid.uuid4().hex}"
            self.valid_tokens[token] = time.monotonic() + self.token_lifetime_s
        return 200, {}, {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime_s}

    def _api(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        segs = path.strip("/").split("/")
        if segs[:2] == ["project", "v1"] and len(segs) >= 3 and segs[2] == "hubs":
            if len(segs) == 3:
                self.counts["hubs"] += 1
                return 200, {}, {"jsonapi": {"version": "1.0"}, "links": {"self": {"href": f"{self.api_url}/project/v1/hubs"}},
                                 "data": [self.hub_json()]}
            if segs[3] != self.hub_id:
                return 404, {}, _errors(404, "NOT_FOUND", "Hub not found", f"The hub {segs[3]} does not exist or "
                                        "the app has no access to it")
            if len(segs) == 4:
                self.counts["hub"] += 1
                return 200, {}, {"jsonapi": {"version": "1.0"}, "links": {"self": {"href": f"{self.api_url}{path}"}},
                                 "data": self.hub_json()}
            if len(segs) == 5 and segs[4] == "projects":
                return self._projects(path, query)
            project = self.projects.get(segs[5]) if len(segs) >= 6 else None
            if project is None:
                return 404, {}, _errors(404, "NOT_FOUND", "Project not found", f"The project {segs[5] if len(segs) > 5 else ''} "
                                        "does not exist or the app has no access to it")
            if len(segs) == 6:
                self.counts["project"] += 1
                return 200, {}, {"jsonapi": {"version": "1.0"}, "links": {"self": {"href": f"{self.api_url}{path}"}},
                                 "data": project.project_json()}
            if segs[6:] == ["topFolders"]:
                self.counts["topFolders"] += 1
                with self.lock:
                    data = [project.folder_json(project.nodes[f]) for f in project.top]
                return 200, {}, {"jsonapi": {"version": "1.0"}, "links": {"self": {"href": f"{self.api_url}{path}"}},
                                 "data": data}
        if segs[:3] == ["data", "v1", "projects"] and len(segs) == 7 and segs[4] == "folders" and segs[6] == "contents":
            return self._contents(path, query, segs[3], segs[5], headers)
        return 400, {}, _errors(400, "BAD_INPUT", "Bad request", f"No route {path}")

    def hub_json(self) -> dict[str, Any]:
        href = f"{self.api_url}/project/v1/hubs/{self.hub_id}"
        return {"type": "hubs", "id": self.hub_id,
                "attributes": {"name": self.hub_name, "region": "US",
                               "extension": {"type": "hubs:autodesk.bim360:Account", "version": "1.0",
                                             "schema": {"href": f"{self.api_url}/schema/v1/versions/hubs%3Aautodesk.bim360%3AAccount-1.0"},
                                             "data": {}}},
                "links": {"self": {"href": href}},
                "relationships": {"projects": {"links": {"related": {"href": f"{href}/projects"}}}}}

    def _page(self, total: int, query: dict[str, str]) -> tuple[int, int] | None:
        try:
            number = int(query.get("page[number]", "0"))
            limit = int(query.get("page[limit]", "200"))
        except ValueError:
            return None
        if number < 0 or not 1 <= limit <= 200:
            return None
        return number, limit

    def _link(self, path: str, query: dict[str, str], number: int) -> dict[str, str]:
        href = f"{path}?{'&'.join(f'{quote(k)}={quote(v)}' for k, v in {**query, 'page[number]': str(number)}.items())}"
        return {"href": href if self.relative_links else f"{self.api_url}{href}"}

    def _projects(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        self.counts["projects"] += 1
        with self.lock:
            projects = list(self.projects.values())
        paging = self._page(len(projects), query)
        if paging is None:
            return 400, {}, _errors(400, "BAD_INPUT", "Invalid page parameters")
        number, limit = paging
        chunk = projects[number * limit:(number + 1) * limit]
        links: dict[str, Any] = {"self": self._link(path, query, number)}
        if (number + 1) * limit < len(projects):
            links["next"] = self._link(path, query, number + 1)
        return 200, {}, {"jsonapi": {"version": "1.0"}, "links": links, "data": [p.project_json() for p in chunk]}

    def _contents(self, path: str, query: dict[str, str], project_id: str, folder_id: str,
                  headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        self.counts["contents"] += 1
        project = self.projects.get(project_id)
        if project is None:
            return 404, {}, _errors(404, "NOT_FOUND", "Project not found")
        with self.lock:
            folder = project.nodes.get(folder_id)
            if folder is None or folder.kind != "folder":
                return 404, {}, _errors(404, "NOT_FOUND", "Folder not found", f"No folder with id {folder_id}")
            hidden_too = query.get("includeHidden") == "true"
            children = [project.nodes[c] for c in folder.children if hidden_too or not project.nodes[c].hidden]
            paging = self._page(len(children), query)
            if paging is None:
                return 400, {}, _errors(400, "BAD_INPUT", "Invalid page parameters",
                                        "page[limit] must be between 1 and 200")
            number, limit = paging
            chunk = children[number * limit:(number + 1) * limit]
            data, included = [], []
            for node in chunk:
                if node.kind == "folder":
                    data.append(project.folder_json(node))
                else:
                    item, version = project.item_json(node)
                    data.append(item)
                    included.append(version)
        links: dict[str, Any] = {"self": self._link(path, query, number)}
        if number > 0:
            links["first"] = self._link(path, query, 0)
            links["prev"] = self._link(path, query, number - 1)
        if (number + 1) * limit < len(children):
            links["next"] = self._link(path, query, number + 1)
        body: dict[str, Any] = {"jsonapi": {"version": "1.0"}, "links": links, "data": data}
        if included:
            body["included"] = included
        return 200, {}, body


def _errors(status: int, code: str, title: str, detail: str = "") -> dict[str, Any]:
    """A Data Management error body: JSON:API `errors`."""
    return {"jsonapi": {"version": "1.0"}, "errors": [
        {"id": str(uuid.uuid4()), "status": str(status), "code": code, "title": title, "detail": detail or title}]}


def main(argv: list[str] | None = None) -> None:
    """Serve one generated project until killed; the connection details go to stdout as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.aps", description=main.__doc__)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--folders", type=int, default=2_000)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)

    def make(tmp: str) -> tuple[FakeAPS, Any]:
        aps = FakeAPS(tls=make_tls(tmp), port=args.port)
        project = aps.add_project("Tower A", items=args.items, folders=args.folders)
        return aps, lambda: {
            "api_url": aps.api_url, "ca_path": aps.tls.ca_path, "client_id": aps.client_id,
            "client_secret": aps.client_secret, "hub_id": aps.hub_id, "project_id": project.id,
            "items": args.items, "folders": len(project.folder_ids()), "counts_url": f"{aps.api_url}/_fake/counts"}

    serve_until_killed("fake-aps-", make)


if __name__ == "__main__":
    main()
