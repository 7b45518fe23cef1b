"""Autodesk Construction Cloud and BIM 360 Docs over APS Data Management (`type: autodesk`).

- settings.py: the endpoint_details model; client.py: 2-legged OAuth, the Data Management calls, pacing
  per endpoint family, APS error bodies; tree.py: the project's folder/item tree kept in the store;
  walk.py: one sync of a project (which folders to list, what is gone, the cursor).
- Containers are the hub's projects (all, or those named in `projects`), keyed by project id.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import quote

from ...config import redact
from ...errors import ConfigError, SourceError
from ...records import ChangePage, Folder, SyncState
from ..base import Container, Health, register_source
from ..http import HttpSource, json_body
from .client import ApsAuth, ApsClient
from .settings import AutodeskDetails
from .walk import ProjectWalk

__all__ = ["AutodeskDetails", "AutodeskSource"]


class AutodeskSource(HttpSource):
    """The files of ACC / BIM 360 projects, one partition per project."""

    type_name = "autodesk"
    Details = AutodeskDetails

    def __init__(self, endpoint: str, details: AutodeskDetails, project_id: str | None = None,
                 user_id: str | None = None, base_dir: Path = Path(".")):
        super().__init__(endpoint, details, project_id, user_id, base_dir)
        self.details: AutodeskDetails = details
        self._auth: ApsAuth | None = None
        self._hub: tuple[str, str] | None = None  # (id, name)
        self._names: dict[str, str] = {}  # project id -> name

    # -- plumbing -----------------------------------------------------------------------------------
    @property
    def auth(self) -> ApsAuth:
        if self._auth is None:
            self._auth = ApsAuth(self.details, self.session, f"endpoint {self.endpoint!r}", self.cancel_event)
        return self._auth

    def _label(self, container: str | None = None) -> str:
        if container is None:
            return f"endpoint {self.endpoint!r}"
        name = self._names.get(container)
        return f"endpoint {self.endpoint!r}, container {container!r}" + (f" ({name})" if name else "")

    def _client(self, container: str | None = None, budget_s: float | None = None) -> ApsClient:
        return ApsClient(self.details, self.session, self.auth, self._label(container), self.cancel_event,
                         budget_s=budget_s)

    # -- hub and projects ---------------------------------------------------------------------------
    def _hub_is_an_id(self) -> bool:
        wanted = self.details.hub.strip()
        return wanted[:2] in ("b.", "a.") and len(wanted) > 8

    def hub_id(self, client: ApsClient) -> str:
        """The hub's id; a hub given by id costs no request (a wrong one fails at its first use)."""
        return self.details.hub.strip() if self._hub is None and self._hub_is_an_id() else self.hub(client)[0]

    def hub(self, client: ApsClient) -> tuple[str, str]:
        """(hub id, name) of the configured hub, given by id or by name, checked with the API."""
        if self._hub is None:
            wanted = self.details.hub.strip()
            if self._hub_is_an_id():
                data = client.get_one(f"/project/v1/hubs/{quote(wanted, safe='')}",
                                      f"hub: hub {wanted!r} not found or the app is not added to it")
                self._hub = (wanted, str((data.get("attributes") or {}).get("name") or wanted))
            else:
                hubs = client.hubs()
                match = [h for h in hubs if str((h.get("attributes") or {}).get("name", "")).lower() == wanted.lower()]
                if not match:
                    names = ", ".join(sorted(str((h.get("attributes") or {}).get("name")) for h in hubs)) or "none"
                    raise SourceError(f"{client.http.label}: hub: no hub named {wanted!r} visible to this app "
                                      f"(hubs: {names})", retryable=False)
                self._hub = (str(match[0]["id"]), wanted)
        return self._hub

    def _projects(self, client: ApsClient) -> list[dict[str, Any]]:
        hub_id, hub_name = self.hub(client)
        projects = client.projects(hub_id)
        wanted = self.details.projects
        if wanted == "all":
            return projects
        by_key: dict[str, dict[str, Any]] = {}
        for project in projects:
            by_key[str(project.get("id"))] = project
            by_key.setdefault(str((project.get("attributes") or {}).get("name", "")).lower(), project)
        missing = [w for w in wanted if w not in by_key and w.lower() not in by_key]
        if missing:
            names = ", ".join(sorted(str((p.get("attributes") or {}).get("name")) for p in projects)) or "none"
            raise SourceError(f"{client.http.label}: projects: no project {missing[0]!r} in hub {hub_name!r} "
                              f"(projects: {names})", retryable=False)
        chosen = [by_key.get(w) or by_key[w.lower()] for w in wanted]
        return list({str(p["id"]): p for p in chosen}.values())

    def containers(self) -> list[Container]:
        client = self._client()
        out = []
        for project in self._projects(client):
            name = str((project.get("attributes") or {}).get("name") or project["id"])
            self._names[str(project["id"])] = name
            out.append(Container(key=str(project["id"]), name=name, details={
                "hub_id": self.hub(client)[0], "web_url": ((project.get("links") or {}).get("webView") or {}).get("href")}))
        return out

    def health(self) -> Health:
        checks: dict[str, str] = {}
        client = self._client()
        for check, probe in (("token", lambda: self.auth.token()), ("hub", lambda: self.hub(client)),
                             ("projects", lambda: self._projects(client))):
            try:
                result = probe()
            except (SourceError, ConfigError) as exc:
                checks[check] = redact(str(exc))
                return Health(ok=False, checks=checks)
            checks[check] = "ok" if check != "projects" or result else "no projects visible to this app"
        return Health(ok=all(v == "ok" for v in checks.values()), checks=checks)

    # -- sync ---------------------------------------------------------------------------------------
    def sync(self, container: str, cursor: str | None, folders: Mapping[str, Folder]) -> Iterator[ChangePage]:
        """Walk the project's folders; see walk.py. Cursors are JSON."""
        client = self._client(container)
        hub_id = self.hub_id(client)
        project = client.get_one(f"/project/v1/hubs/{quote(hub_id, safe='')}/projects/{quote(container, safe='')}",
                                 "project not found in the hub, or the app has no access to it")
        name = str((project.get("attributes") or {}).get("name") or container)
        self._names[container] = name
        client.http.label = self._label(container)
        walk = ProjectWalk(client, endpoint=self.endpoint, hub_id=hub_id, project_id=container, project_name=name,
                           cursor=cursor, folders=folders, page_size=self.details.page_size,
                           full_listing_days=self.details.full_listing_days, record_project_id=self.project_id,
                           record_user_id=self.user_id)
        yield from walk.pages()


    # -- probe --------------------------------------------------------------------------------------
    def pending_changes(self, container: str, state: SyncState, limit: int, budget_s: float) -> int:
        """Data Management has no change feed; the folders' roll-ups say where something changed. The
        last sync kept the newest top-folder roll-up from when its walk began (`since`, the provider's
        clock, so changes during that walk count). The probe walks down only the folders whose
        lastModifiedTimeRollup is newer and counts the items and folders modified after it (a changed
        folder showing nothing newer, e.g. an item removed, counts once), up to `limit`. It stores
        nothing; a never-synced project, a walk cut short or an older cursor count as due."""
        try:
            cursor = json.loads(state.cursor) if state.cursor else {}
        except ValueError:
            cursor = {}
        since = cursor.get("since") if isinstance(cursor, dict) and "stack" not in cursor else None
        if not since:
            return limit
        client = self._client(container, budget_s=budget_s)
        deadline = time.monotonic() + budget_s

        def newer(entry: dict[str, Any], attribute: str) -> bool:
            return str((entry.get("attributes") or {}).get(attribute) or "") > since

        folders = [f["id"] for f in client.top_folders(self.hub_id(client), container)
                   if isinstance(f, dict) and f.get("id") and newer(f, "lastModifiedTimeRollup")]
        count = 0
        while folders and count < limit:
            folder_id, before, changed_below = folders.pop(), count, 0
            url: str | None = client.contents_url(container, folder_id)
            while url and count < limit:
                if time.monotonic() > deadline:
                    raise SourceError(f"{client.http.label}: counting pending changes took longer than "
                                      f"{budget_s:.0f}s")
                response = client.contents_page(url)
                if response.status_code in (403, 404):
                    break  # the sync reports it; counted once below
                body = json_body(response)
                for entry in body.get("data") or ():
                    if not isinstance(entry, dict):
                        continue
                    if entry.get("type") == "folders" and newer(entry, "lastModifiedTimeRollup"):
                        folders.append(str(entry.get("id")))
                        changed_below += 1
                    count += newer(entry, "lastModifiedTime")
                following = ((body.get("links") or {}).get("next") or {}).get("href")
                url = client.http.checked_link(following, "probe") if following else None
            if count == before and not changed_below:  # its roll-up moved, yet nothing newer is shown
                count += 1
        return min(count, limit)


register_source(AutodeskSource.type_name, AutodeskSource)
