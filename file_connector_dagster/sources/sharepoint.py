"""SharePoint document libraries and OneDrive for Business over Microsoft Graph (`type: sharepoint`).

- Auth: msal ConfidentialClientApplication, client-credentials flow, scope `<graph host>/.default`;
  msal caches the token and renews it before expiry; a 401 mid-sync drops the cached token once.
- Containers: the drives (document libraries) of a site, or one drive by id, or a user's OneDrive.
- sync(): a full enumeration first takes `root/delta?token=latest` (the watermark: a deltaLink of the
  drive as it is before the listing), then enumerates `/drives/{id}/root/delta` page by page (each
  Graph page becomes one ChangePage whose cursor holds the nextLink and the watermark, so a killed run
  resumes mid-drive); the last page's cursor holds the watermark, so the next sync replays every change
  made since the listing began (Graph does not promise that an enumeration reports a file deleted after
  its page was delivered), then only the changes from each deltaLink. A 410 Gone starts a fresh
  enumeration whose end tombstones whatever no longer exists.
- Delta items carry no path, so a folder tree (id -> parent, name) is kept in the store between syncs
  (ChangePage.folders) and renamed or moved folders become ChangePage.moves for the store to rewrite
  every path under them.

Memory stays at one Graph page plus the folder tree.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Mapping
from urllib.parse import quote, urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config import Secret, redact
from ..errors import ConfigError, ContentUnavailable, SourceError
from ..records import ChangePage, FileRecord, Folder, SyncState
from .base import Container, Health, register_source
from .http import HttpClient, HttpSource, RetryPolicy, json_body

log = logging.getLogger(__name__)

MICROSOFT_AUTHORITY_HOSTS = frozenset({
    "login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn", "login.partner.microsoftonline.cn",
    "login.microsoftonline.de", "login.windows.net", "login.microsoft.com", "sts.windows.net",
})
DELTA_SELECT = ("id,name,size,createdDateTime,lastModifiedDateTime,eTag,cTag,webUrl,file,folder,package,root,"
                "deleted,parentReference")
_SITE_URL = re.compile(r"^https://(?P<host>[A-Za-z0-9.\-]+(?::\d+)?)/(?P<path>(?:sites|teams)/[^/?#]+(?:/[^/?#]+)*)/?$")
_FRACTION = re.compile(r"(\.\d{6})\d+")


class SharePointDetails(BaseModel):
    """endpoint_details of a `type: sharepoint` endpoint."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: Secret  # ${NAME} or {env: NAME}, resolved at sync time
    site_url: str | None = None  # https://contoso.sharepoint.com/sites/eng (or /teams/name)
    document_library: str | list[str] | None = None  # library name(s); every library when omitted
    drive_id: str | None = None  # one drive directly
    user: str | None = None  # a user's OneDrive for Business (UPN or id)
    authority_host: str = "login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_bundle: str | None = None  # PEM file for a private CA, relative to connector.yaml
    # Graph $top: 999 is the largest the delta API honours (docs/sharepoint.md, "Page size"); every page is
    # a round trip of hundreds of milliseconds on real Graph, so the largest page is the fastest listing.
    page_size: int = Field(default=999, ge=1, le=999)
    max_wait_s: float = Field(default=120.0, gt=0)  # longest single wait on 429/503
    throttle_budget_s: float = Field(default=900.0, ge=0)  # all waits of one sync together
    backoff_base_s: float = Field(default=1.0, gt=0)  # first backoff when Retry-After is missing
    # Fixed-rate pacing per host, off by default: Retry-After and the slow-down after a 429 do the pacing
    requests_per_second: float = Field(default=0.0, ge=0)
    timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("site_url")
    @classmethod
    def _site_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not _SITE_URL.match(value.strip()):
            raise ValueError(f"{value!r} is not a SharePoint site URL like https://contoso.sharepoint.com/sites/name "
                             "or https://contoso.sharepoint.com/teams/name")
        return value.strip().rstrip("/")

    @field_validator("graph_url")
    @classmethod
    def _graph_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.netloc:
            raise ValueError(f"{value!r} is not an https URL like https://graph.microsoft.com/v1.0")
        return value.rstrip("/")

    @field_validator("authority_host")
    @classmethod
    def _authority_host(cls, value: str) -> str:
        host = value.strip().removeprefix("https://").rstrip("/")
        if not host or "/" in host or value.startswith("http://"):
            raise ValueError(f"{value!r} is not a host name like login.microsoftonline.com (msal needs https)")
        return host

    @model_validator(mode="after")
    def _one_target(self) -> "SharePointDetails":
        targets = [name for name in ("site_url", "drive_id", "user") if getattr(self, name)]
        if len(targets) != 1:
            raise ValueError("site_url, drive_id, user: set exactly one of them "
                             f"({'none set' if not targets else ', '.join(targets) + ' are all set'})")
        if self.document_library and not self.site_url:
            raise ValueError("document_library: only applies together with site_url")
        return self

    @property
    def libraries(self) -> list[str]:
        if not self.document_library:
            return []
        return [self.document_library] if isinstance(self.document_library, str) else list(self.document_library)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)  # Python 3.11 reads Graph's "2024-05-01T10:00:00Z" as it is
    except ValueError:
        pass
    try:  # more than 6 fractional digits ("...00.1234567Z")
        return datetime.fromisoformat(_FRACTION.sub(r"\1", value.replace("Z", "+00:00")))
    except ValueError:
        return None


# msal's token cache and HTTP cache (the tenant's OpenID metadata), shared by the sources of one process that
# authenticate as the same app: a CLI sync lists the containers and then runs the sync, each with its own
# source, and would otherwise ask for the metadata and a token twice. Keyed by a hash of the secret, so a
# changed secret never reuses a token obtained with the old one.
_MSAL_CACHES: dict[tuple[str, str, str], tuple[Any, dict[Any, Any]]] = {}
_MSAL_CACHES_LOCK = threading.Lock()


def _msal_caches(authority: str, client_id: str, secret: str) -> tuple[Any, dict[Any, Any]]:
    import msal

    key = (authority, client_id, hashlib.sha256(secret.encode()).hexdigest())
    with _MSAL_CACHES_LOCK:
        if key not in _MSAL_CACHES:
            _MSAL_CACHES[key] = (msal.TokenCache(), {})
        return _MSAL_CACHES[key]


class GraphAuth:
    """Bearer headers from msal's client-credentials flow; msal caches and renews the token (one cache per
    app and secret in a process)."""

    def __init__(self, details: SharePointDetails, session: requests.Session, label: str):
        self.details, self.session, self.label = details, session, label
        graph = urlsplit(details.graph_url)
        self.scopes = [f"{graph.scheme}://{graph.netloc}/.default"]
        self.authority = f"https://{details.authority_host}/{details.tenant_id}"
        self._app: Any = None

    def _fail(self, problem: str, retryable: bool = False) -> SourceError:
        return SourceError(redact(f"{self.label}: authentication at {self.authority} failed: {problem}"),
                           retryable=retryable)

    def app(self) -> Any:
        if self._app is None:
            import msal

            secret = self.details.client_secret.resolve(f"{self.label}: client_secret: ")
            host = self.details.authority_host.split(":")[0].lower()
            token_cache, http_cache = _msal_caches(self.authority, self.details.client_id, secret)
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.details.client_id, client_credential=secret, authority=self.authority,
                    http_client=self.session, instance_discovery=host in MICROSOFT_AUTHORITY_HOSTS,
                    token_cache=token_cache, http_cache=http_cache)
            except ValueError:
                # msal replaces the server's answer with a generic text; the usual cause is the tenant
                raise self._fail(f"tenant {self.details.tenant_id!r} not found (its OpenID configuration cannot "
                                 "be read); check tenant_id and authority_host") from None
            except requests.exceptions.SSLError:
                raise self._fail("TLS verification failed; set ca_bundle for a private certificate authority") from None
            except requests.RequestException as exc:
                raise self._fail(f"cannot reach {self.details.authority_host} ({type(exc).__name__})", True) from None
        return self._app

    def token(self, refresh: bool = False) -> str:
        app = self.app()
        if refresh:
            app.remove_tokens_for_client()
        try:
            result = app.acquire_token_for_client(scopes=self.scopes)
        except requests.RequestException as exc:
            raise self._fail(f"cannot reach the token endpoint ({type(exc).__name__})", True) from None
        if "access_token" not in result:
            description = str(result.get("error_description") or "").split(" Trace ID:")[0].splitlines()
            raise self._fail(f"{result.get('error', 'error')}: {description[0] if description else 'no description'} "
                             f"(client_id {self.details.client_id})")
        return result["access_token"]

    def __call__(self, refresh: bool) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(refresh)}"}


class FolderTree:
    """The drive's folders (id -> parent id, name) and their paths; the root has parent None."""

    def __init__(self, folders: Mapping[str, Folder]):
        self.nodes: dict[str, tuple[str | None, str]] = {f.folder_id: (f.parent_id, f.name) for f in folders.values()}
        self._paths: dict[str, str] = {}

    def __contains__(self, folder_id: str) -> bool:
        return folder_id in self.nodes

    def path(self, folder_id: str | None) -> str | None:
        """'A/B' for a folder, '' for the root, None when a folder on the way up is unknown."""
        if folder_id is None or folder_id not in self.nodes:
            return None
        if folder_id in self._paths:
            return self._paths[folder_id]
        parts, current, seen = [], folder_id, set()
        while True:
            if current not in self.nodes or current in seen:
                return None  # not cached: a folder added later may complete the chain
            seen.add(current)
            parent, name = self.nodes[current]
            if parent is None:
                break
            parts.append(name)
            current = parent
        result = "/".join(reversed(parts))
        self._paths[folder_id] = result
        return result

    def set(self, folder_id: str, parent_id: str | None, name: str) -> bool:
        """Add or change a folder. Returns whether anything changed."""
        if self.nodes.get(folder_id) == (parent_id, name):
            return False
        if folder_id in self.nodes:
            self._paths.clear()  # every path below it may change
        # a new folder changes no cached path (only complete chains are cached)
        self.nodes[folder_id] = (parent_id, name)
        return True

    def remove(self, folder_id: str) -> list[str]:
        """Drop a folder and everything below it. Returns the ids removed."""
        if folder_id not in self.nodes:
            return []
        children: dict[str | None, list[str]] = {}
        for fid, (parent, _) in self.nodes.items():
            children.setdefault(parent, []).append(fid)
        removed, stack = [], [folder_id]
        while stack:
            fid = stack.pop()
            removed.append(fid)
            stack.extend(children.get(fid, []))
        for fid in removed:
            del self.nodes[fid]
        self._paths.clear()
        return removed


def _is_folder(item: Mapping[str, Any]) -> bool:
    return "folder" in item or "package" in item or "root" in item


class SharePointSource(HttpSource):
    """SharePoint document libraries / OneDrive for Business through Microsoft Graph."""

    type_name = "sharepoint"
    Details = SharePointDetails

    def __init__(self, endpoint: str, details: SharePointDetails, project_id: str | None = None,
                 user_id: str | None = None, base_dir: Path = Path(".")):
        super().__init__(endpoint, details, project_id, user_id, base_dir)
        self.details: SharePointDetails = details
        self.graph_url = details.graph_url
        self._auth: GraphAuth | None = None
        self._names: dict[str, str] = {}  # drive id -> library name

    # -- plumbing ---------------------------------------------------------------------------------
    def _open_session(self, ca_bundle: str | None) -> requests.Session:
        session = super()._open_session(ca_bundle)
        session.request = functools.partial(session.request, timeout=self.details.timeout_s)  # type: ignore[method-assign]
        return session

    @property
    def auth(self) -> GraphAuth:
        if self._auth is None:
            self._auth = GraphAuth(self.details, self.session, f"endpoint {self.endpoint!r}")
        return self._auth

    def _label(self, container: str | None = None) -> str:
        if container is None:
            return f"endpoint {self.endpoint!r}"
        name = self._names.get(container)
        return f"endpoint {self.endpoint!r}, container {container!r}" + (f" ({name})" if name else "")

    def _client(self, container: str | None = None, budget_s: float | None = None) -> HttpClient:
        """The HTTP client of a sync; with budget_s, one for a quick check whose retries and
        timeouts all fit into that many seconds."""
        d = self.details
        policy = RetryPolicy(max_wait_s=d.max_wait_s, total_wait_s=d.throttle_budget_s, backoff_base_s=d.backoff_base_s)
        timeout = d.timeout_s
        if budget_s is not None:
            policy = RetryPolicy(max_wait_s=min(d.max_wait_s, budget_s / 4), total_wait_s=budget_s / 2,
                                 backoff_base_s=min(d.backoff_base_s, 1.0), max_attempts=3)
            timeout = min(d.timeout_s, max(1.0, budget_s / 3))
        return HttpClient(self._label(container), auth=self.auth, policy=policy, session=self.session,
                          requests_per_second=d.requests_per_second, burst=max(1.0, 2 * d.requests_per_second),
                          timeout_s=timeout, link_origin=self.graph_url, cancel=self.cancel_event)

    # -- containers -------------------------------------------------------------------------------
    def _site(self, client: HttpClient) -> dict[str, Any]:
        match = _SITE_URL.match(self.details.site_url or "")
        assert match is not None  # validated by SharePointDetails
        host = match["host"].split(":")[0]
        url = f"{self.graph_url}/sites/{host}:/{quote(match['path'])}"
        return self._get_one(client, url, {"$select": "id,name,displayName,webUrl"},
                             f"site_url: site {self.details.site_url} not found", f"GET /sites/{host}:/{match['path']}")

    def _get_one(self, client: HttpClient, url: str, params: dict[str, str], missing: str, request: str) -> dict[str, Any]:
        """GET one object; a 404 is a SourceError that names the field to fix (a retry cannot help)."""
        response = client.request("GET", url, params=params, ok_statuses=frozenset({404}))
        if response.status_code == 404:
            raise SourceError(f"{client.label}: {missing} ({request} answered 404)", retryable=False)
        return json_body(response)

    def _drives(self, client: HttpClient) -> list[dict[str, Any]]:
        d = self.details
        select = {"$select": "id,name,webUrl,driveType"}
        if d.drive_id:
            return [self._get_one(client, f"{self.graph_url}/drives/{quote(d.drive_id)}", select,
                                  f"drive_id: drive {d.drive_id!r} not found", "GET /drives/{id}")]
        if d.user:
            return [self._get_one(client, f"{self.graph_url}/users/{quote(d.user)}/drive", select,
                                  f"user: no OneDrive for user {d.user!r}", "GET /users/{user}/drive")]
        site = self._site(client)
        drives: list[dict[str, Any]] = []
        url: str | None = f"{self.graph_url}/sites/{site['id']}/drives"
        params: dict[str, str] | None = select
        while url:
            body = client.get_json(url, params=params)
            drives.extend(body.get("value") or [])
            url = client.checked_link(body["@odata.nextLink"], "list drives") if body.get("@odata.nextLink") else None
            params = None
        if d.libraries:
            by_name = {str(dr.get("name", "")).lower(): dr for dr in drives}
            missing = [name for name in d.libraries if name.lower() not in by_name]
            if missing:
                raise SourceError(f"{client.label}: document_library: no library named {missing[0]!r} in "
                                  f"{d.site_url} (libraries: {', '.join(sorted(str(dr.get('name')) for dr in drives)) or 'none'})",
                                  retryable=False)
            drives = [by_name[name.lower()] for name in d.libraries]
        return drives

    def containers(self) -> list[Container]:
        drives = self._drives(self._client())
        for drive in drives:
            self._names[drive["id"]] = drive.get("name") or drive["id"]
        return [Container(key=drive["id"], name=drive.get("name") or drive["id"],
                          details={"web_url": drive.get("webUrl"), "drive_type": drive.get("driveType")})
                for drive in drives]

    def health(self) -> Health:
        checks: dict[str, str] = {}
        client = self._client()
        try:
            self.auth.token()
            checks["token"] = "ok"
        except (SourceError, ConfigError) as exc:
            checks["token"] = redact(str(exc))
            return Health(ok=False, checks=checks)
        if self.details.site_url:
            try:
                self._site(client)
                checks["site"] = "ok"
            except SourceError as exc:
                checks["site"] = redact(str(exc))
                return Health(ok=False, checks=checks)
        try:
            drives = self._drives(client)
            checks["drives"] = "ok" if drives else "no document libraries visible to this app"
        except SourceError as exc:
            checks["drives"] = redact(str(exc))
        return Health(ok=all(v == "ok" for v in checks.values()), checks=checks)

    # -- probe ------------------------------------------------------------------------------------
    def pending_changes(self, container: str, state: SyncState, limit: int, budget_s: float) -> int:
        """Items the stored deltaLink returns now (folders included, the root not), counted page by
        page up to `limit`. The stored cursor is not touched: the next sync replays the same delta."""
        cursor = json.loads(state.cursor) if state.cursor else {}
        if not cursor.get("delta"):
            return limit  # never listed, or a listing was cut short: a sync is due
        client = self._client(container, budget_s=budget_s)
        deadline = time.monotonic() + budget_s
        link: str | None = client.checked_link(cursor["delta"], "probe")
        count = 0
        while link and count < limit:
            if time.monotonic() > deadline:
                raise SourceError(f"{client.label}: counting pending changes took longer than {budget_s:.0f}s")
            response = client.request("GET", link, ok_statuses=frozenset({410}), what=f"GET /drives/{container}/root/delta")
            if response.status_code == 410:
                return limit  # the delta link expired: the next sync lists everything again
            try:
                body = json_body(response)
            except ValueError:
                raise SourceError(f"{client.label}: GET /drives/{container}/root/delta: the response is not JSON") from None
            count += sum(1 for item in body.get("value") or [] if isinstance(item, dict) and "root" not in item)
            next_link = body.get("@odata.nextLink")
            link = client.checked_link(next_link, "probe") if next_link else None
        return min(count, limit)

    # -- content ----------------------------------------------------------------------------------
    def open_content(self, record: FileRecord, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """GET /drives/{drive}/items/{id}/content answers 302 with a pre-authenticated download URL
        (on a SharePoint host): that URL is fetched without the bearer token."""
        client = self._client(record.container)
        what = "GET /drives/{drive}/items/{id}/content"
        response = client.request("GET", f"{self.graph_url}/drives/{quote(record.container)}/items/"
                                         f"{quote(record.external_id)}/content",
                                  ok_statuses=frozenset({302, 404}), allow_redirects=False, stream=True, what=what)
        if response.status_code == 404:
            response.close()
            raise ContentUnavailable(f"{client.label}: {record.path}: the file is gone ({what} answered 404)")
        if response.status_code == 302:
            location = response.headers.get("Location")
            response.close()
            if not location or urlsplit(location).scheme != "https":
                raise SourceError(f"{client.label}: {what}: the redirect has no https download URL")
            download = HttpClient(client.label, policy=client.policy, session=self.session,
                                  timeout_s=self.details.timeout_s, cancel=self.cancel_event)
            response = download.request("GET", location, stream=True, what=f"{what} (download URL)")
        return self._chunks(response, chunk_size)

    @staticmethod
    def _chunks(response: requests.Response, chunk_size: int) -> Iterator[bytes]:
        with response:
            yield from response.iter_content(chunk_size)

    # -- sync -------------------------------------------------------------------------------------
    def sync(self, container: str, cursor: str | None, folders: Mapping[str, Folder]) -> Iterator[ChangePage]:
        """Yield one ChangePage per Graph delta page. Cursors are JSON: {"next": link, "full": bool,
        "since": watermark} mid-way, {"delta": link} after the last page (after a full enumeration: the
        watermark taken before it)."""
        state: dict[str, Any] = {}
        if cursor:
            try:
                state = json.loads(cursor)
            except ValueError:
                raise SourceError(f"{self._label(container)}: the stored cursor is not a SharePoint cursor; "
                                  "run a full sync") from None
        client = self._client(container)
        response = client.request("GET", f"{self.graph_url}/drives/{quote(container)}",
                                  params={"$select": "id,name,webUrl"}, ok_statuses=frozenset({404}))
        if response.status_code == 404:
            raise SourceError(f"{client.label}: drive not found (GET /drives/{{id}} answered 404); "
                              "the library may have been deleted", retryable=False)
        library = json_body(response).get("name") or container
        self._names[container] = library
        client.label = self._label(container)

        fresh = f"{self.graph_url}/drives/{quote(container)}/root/delta?$top={self.details.page_size}&$select={DELTA_SELECT}"
        since: str | None = None  # the watermark of a full enumeration (None on a plain delta)
        if state.get("delta"):
            link, full, starts = state["delta"], False, False
        elif state.get("next"):
            link, full, starts, since = state["next"], bool(state.get("full")), False, state.get("since")
        else:
            link, full, starts, since = fresh, True, True, self._watermark(client, container, fresh)
        link = client.checked_link(link, "resume")
        tree = FolderTree(folders if (state.get("delta") or state.get("next")) else {})
        seen_folders: set[str] | None = set() if starts else None  # to drop folders a full listing no longer has
        calls_before = 0
        visited: set[str] = set()  # delta links requested in this run
        empty_repeats = 0  # empty pages that asked for the same link again (a server catching up)
        while True:
            visited.add(link)
            response = client.request("GET", link, ok_statuses=frozenset({410}), what=f"GET /drives/{container}/root/delta")
            if response.status_code == 410:
                if starts:
                    raise SourceError(f"{client.label}: GET /drives/{container}/root/delta: HTTP 410 on a fresh enumeration")
                log.warning("%s: the delta link expired (410 Gone); listing the whole library again", client.label)
                response.close()
                link, full, starts, seen_folders = fresh, True, True, set()
                since = self._watermark(client, container, fresh)
                continue
            try:
                body = json_body(response)
            except ValueError:
                raise SourceError(f"{client.label}: GET /drives/{container}/root/delta: the response is not JSON") from None
            page = self._page(client, container, library, body.get("value") or [], tree, seen_folders)
            next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
            page.full_listing, page.starts_listing = full, starts
            if next_link:
                if next_link in visited:  # a page that sends us back: Graph would loop for ever
                    empty_repeats += 0 if (page.upserts or page.deletions or page.moves) else 1
                    if page.upserts or page.deletions or page.moves or empty_repeats > 20:
                        raise SourceError(f"{client.label}: GET /drives/{container}/root/delta: the next link "
                                          "points back to a page already read (circular @odata.nextLink)")
                page.cursor = json.dumps({"next": client.checked_link(next_link, "delta"), "full": full,
                                          **({"since": since} if since else {})})
            elif delta_link:
                # after a full enumeration, resume from its watermark: what changed during the listing
                # (a file deleted after its page came) is replayed by the next sync, never lost
                page.cursor = json.dumps({"delta": since or client.checked_link(delta_link, "delta")})
                page.last = True
                if full and seen_folders is not None:  # folders the whole listing did not see are gone
                    gone = [fid for fid in tree.nodes if fid not in seen_folders]
                    for fid in gone:
                        tree.nodes.pop(fid, None)
                    page.folder_deletions.extend(gone)
            else:
                raise SourceError(f"{client.label}: GET /drives/{container}/root/delta: "
                                  "the response has neither @odata.nextLink nor @odata.deltaLink")
            page.api_calls = client.calls - calls_before
            calls_before = client.calls
            yield page
            if page.last:
                return
            link, starts = next_link, False

    @staticmethod
    def _watermark(client: HttpClient, container: str, fresh: str) -> str:
        """`root/delta?token=latest`: an empty page whose deltaLink stands for the drive as it is now, taken
        before a full enumeration. Its changes are what the enumeration may have missed."""
        what = f"GET /drives/{container}/root/delta (latest token)"
        response = client.request("GET", f"{fresh}&token=latest", what=what)
        try:
            link = json_body(response).get("@odata.deltaLink")
        except (ValueError, AttributeError):
            raise SourceError(f"{client.label}: {what}: the response is not a JSON object") from None
        if not link:
            raise SourceError(f"{client.label}: {what}: the response has no @odata.deltaLink")
        return client.checked_link(link, "delta")

    def _page(self, client: HttpClient, container: str, library: str, items: list[dict[str, Any]],
              tree: FolderTree, seen_folders: set[str] | None) -> ChangePage:
        """Turn one page of delta items into a ChangePage, updating the folder tree on the way.

        Order matters, because the store applies moves, then deletions, then upserts: folder changes
        first (parents before children), each move computed against the tree as it stands, so the
        store's paths and the tree stay in step; then deleted items; then files.
        """
        latest: dict[str, dict[str, Any]] = {}
        for item in items:  # an id repeated within the page: the last one wins
            if isinstance(item, dict) and item.get("id"):
                latest.pop(item["id"], None)
                latest[item["id"]] = item
        moves: list[tuple[str, str | None]] = []
        changed_folders: dict[str, Folder] = {}
        folder_deletions: list[str] = []
        errors: list[str] = []
        deleted = [i for i in latest.values() if "deleted" in i]
        live_folders = {i["id"]: i for i in latest.values() if "deleted" not in i and _is_folder(i)}
        files = [i for i in latest.values() if "deleted" not in i and not _is_folder(i)]

        def set_folder(folder_id: str, parent_id: str | None, name: str) -> None:
            old = tree.path(folder_id)
            if seen_folders is not None:
                seen_folders.add(folder_id)
            if not tree.set(folder_id, parent_id, name):
                return
            changed_folders[folder_id] = Folder(folder_id, parent_id, name)
            new = tree.path(folder_id)
            if new is None and parent_id is not None:
                new = self._resolve(client, container, parent_id, tree, changed_folders, seen_folders, errors)
                new = tree.path(folder_id)
            if old and old != new:
                moves.append((old, new))

        done: set[str] = set()

        def apply(folder_id: str) -> None:
            if folder_id in done:
                return
            done.add(folder_id)
            item = live_folders[folder_id]
            if "root" in item:
                set_folder(folder_id, None, "")
                return
            parent = (item.get("parentReference") or {}).get("id")
            if parent in live_folders:
                apply(parent)  # parents first, whatever order the page came in
            set_folder(folder_id, parent, str(item.get("name", "")))

        for folder_id in live_folders:
            apply(folder_id)

        for item in deleted:
            if item["id"] in tree:
                old = tree.path(item["id"])
                folder_deletions.extend(tree.remove(item["id"]))
                if old:
                    moves.append((old, None))  # tombstone every file that was under it
        records: list[FileRecord | str] = [i["id"] for i in deleted]

        for item in files:
            parent = (item.get("parentReference") or {}).get("id")
            parent_path = tree.path(parent)
            if parent_path is None and parent:
                parent_path = self._resolve(client, container, parent, tree, changed_folders, seen_folders, errors)
            name = str(item.get("name", ""))
            if parent_path is None:
                errors.append(f"{name}: parent folder {parent} is unknown; listed at the top of the library")
                parent_path = ""
            records.append(self._record(item, container, library, parent_path))

        page = ChangePage.from_changes(records)
        page.moves = moves
        page.folders = [f for fid, f in changed_folders.items() if fid in tree]
        page.folder_deletions = folder_deletions
        page.errors = errors
        return page

    def _resolve(self, client: HttpClient, container: str, folder_id: str, tree: FolderTree,
                 changed: dict[str, Folder], seen_folders: set[str] | None, errors: list[str]) -> str | None:
        """Fetch folders missing from the tree (a child listed before its parent) up to a known one.
        Returns the path of folder_id, or None when it cannot be found (deleted meanwhile)."""
        current: str | None = folder_id
        for _ in range(256):
            if current is None or current in tree:
                break
            response = client.request("GET", f"{self.graph_url}/drives/{quote(container)}/items/{quote(current)}",
                                      params={"$select": "id,name,parentReference,root,folder,package"},
                                      ok_statuses=frozenset({404}), what=f"GET /drives/{container}/items/{{id}}")
            if response.status_code == 404:
                return None
            item = json_body(response)
            parent = None if "root" in item else (item.get("parentReference") or {}).get("id")
            name = "" if "root" in item else str(item.get("name", ""))
            tree.set(current, parent, name)
            changed[current] = Folder(current, parent, name)
            if seen_folders is not None:
                seen_folders.add(current)
            current = parent
        return tree.path(folder_id)

    def _record(self, item: Mapping[str, Any], container: str, library: str, parent_path: str) -> FileRecord:
        name = str(item.get("name", ""))
        file_facet = item.get("file") or {}
        graph_hashes = file_facet.get("hashes") or {}
        hashes = {key: graph_hashes[src] for key, src in
                  (("quickXorHash", "quickXorHash"), ("sha256", "sha256Hash"), ("sha1", "sha1Hash"))
                  if graph_hashes.get(src)}
        ctag, etag = item.get("cTag"), item.get("eTag")
        return FileRecord(
            external_id=item["id"],
            title=name,
            path=f"{parent_path}/{name}" if parent_path else name,
            endpoint=self.endpoint,
            container=container,
            file_link=item.get("webUrl"),
            date_created=_time(item.get("createdDateTime")),
            date_updated=_time(item.get("lastModifiedDateTime")),
            size=item.get("size"),
            mime_type=file_facet.get("mimeType"),
            change_key=ctag or etag,
            project_id=self.project_id,
            user_id=self.user_id,
            metadata={"etag": etag, "ctag": ctag, "web_url": item.get("webUrl"), "hashes": hashes,
                      "drive_id": container, "library": library, "parent_path": parent_path},
        )


register_source(SharePointSource.type_name, SharePointSource)
