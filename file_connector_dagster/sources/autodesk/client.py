"""APS 2-legged OAuth and the Data Management calls the source makes (plain Python, no Dagster).

- Token: `POST {api_url}/authentication/v2/token` with HTTP Basic client credentials,
  `grant_type=client_credentials`, scope `data:read`; cached until shortly before it expires; a 401
  from Data Management drops it and fetches a new one once (the shared HttpClient asks).
- Errors: Data Management answers JSON:API `{"errors": [...]}`; the token endpoint answers
  `{"developerMessage", "errorCode"}` (or the OAuth `error`/`error_description` pair). The describer is
  declared here, for the shared HttpClient, which names the request and never the secret.
- Pacing: one token bucket per endpoint family (hubs/projects, folder contents) per process, so every
  project synced in this process shares the documented per-minute limits.
"""

from __future__ import annotations

import base64
import threading
import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Iterator
from urllib.parse import quote, urlsplit

import requests

from ...config import redact
from ...errors import SourceError
from ..http import (
    AdaptivePacing, HttpClient, RetryPolicy, TokenBucket, bucket_for, describe_jsonapi_errors, json_body,
)
from .settings import AutodeskDetails

SCOPE = "data:read"


def describe_aps_error(response: requests.Response) -> str:
    """'code: message' from any APS error body: JSON:API errors[], the auth service's errorCode +
    developerMessage, or OAuth's error + error_description."""
    found = describe_jsonapi_errors(response)
    if found:
        return found
    try:
        body = json_body(response)
    except ValueError:
        return ""
    if isinstance(body, dict) and (body.get("developerMessage") or body.get("errorCode")):
        return ": ".join(str(body[k]).splitlines()[0] for k in ("errorCode", "developerMessage") if body.get(k))
    return ""


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class ApsAuth:
    """Bearer headers for the 2-legged client-credentials flow; one token shared by the source's clients."""

    def __init__(self, details: AutodeskDetails, session: requests.Session, label: str,
                 cancel: threading.Event | None = None):
        self.details, self.session, self.label, self.cancel = details, session, label, cancel
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.issued = 0

    def token(self, refresh: bool = False) -> str:
        with self._lock:
            if refresh or self._token is None or time.monotonic() >= self._expires_at:
                self._token, lifetime = self._fetch()
                # renew a minute early (a tenth of the lifetime for short-lived tokens)
                self._expires_at = time.monotonic() + lifetime - min(60.0, lifetime / 10)
                self.issued += 1
            return self._token

    def _fetch(self) -> tuple[str, float]:
        d = self.details
        secret = d.client_secret.resolve(f"{self.label}: client_secret: ")
        client = HttpClient(f"{self.label}: authentication", session=self.session, timeout_s=d.timeout_s,
                            policy=RetryPolicy(max_wait_s=d.max_wait_s, total_wait_s=d.throttle_budget_s,
                                               backoff_base_s=d.backoff_base_s),
                            describe_error=describe_aps_error, cancel=self.cancel)
        try:
            response = client.request("POST", f"{d.api_url}/authentication/v2/token",
                                      data={"grant_type": "client_credentials", "scope": SCOPE},
                                      headers={"Authorization": _basic(d.client_id, secret)},
                                      ok_statuses=frozenset({400, 401, 403}), what="POST /authentication/v2/token")
        except SourceError as exc:
            raise SourceError(redact(str(exc)), retryable=exc.retryable) from None
        if response.status_code != 200:
            problem = describe_aps_error(response) or "no description"
            raise SourceError(redact(f"{client.label}: POST /authentication/v2/token: HTTP {response.status_code} "
                                     f"{problem} (client_id {d.client_id}; check client_id, client_secret and that the "
                                     "app has the Data Management API)"), retryable=False)
        body = json_body(response)
        if not isinstance(body, dict) or not body.get("access_token"):
            raise SourceError(f"{client.label}: POST /authentication/v2/token: the answer holds no access_token")
        return str(body["access_token"]), float(body.get("expires_in") or 3599)

    def __call__(self, refresh: bool) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(refresh)}"}


class ApsClient:
    """The Data Management calls, paced per endpoint family, with one-line errors."""

    def __init__(self, details: AutodeskDetails, session: requests.Session, auth: ApsAuth, label: str,
                 cancel: threading.Event | None = None, budget_s: float | None = None):
        """budget_s: for a quick check, every retry and timeout fits into that many seconds."""
        d = self.details = details
        self.api_url = d.api_url
        host = urlsplit(d.api_url).netloc
        policy = RetryPolicy(max_wait_s=d.max_wait_s, total_wait_s=d.throttle_budget_s, backoff_base_s=d.backoff_base_s)
        timeout = d.timeout_s
        if budget_s is not None:
            policy = RetryPolicy(max_wait_s=min(d.max_wait_s, budget_s / 4), total_wait_s=budget_s / 2,
                                 backoff_base_s=min(d.backoff_base_s, 1.0), max_attempts=3)
            timeout = min(d.timeout_s, max(1.0, budget_s / 3))
        self.http = HttpClient(label, auth=auth, session=session, policy=policy, timeout_s=timeout,
                               describe_error=describe_aps_error, link_origin=d.api_url,
                               pacing=AdaptivePacing(initial_gap_s=d.slow_down_gap_s), cancel=cancel)
        self.projects_bucket = self._bucket(f"{host} projects", d.projects_requests_per_minute)
        self.contents_bucket = self._bucket(f"{host} contents", d.contents_requests_per_minute)
        self.region_headers = {"x-ads-region": d.region}
        self.server_time: datetime | None = None  # the Date of the last folder listing's response

    def _note_date(self, response: requests.Response) -> requests.Response:
        try:
            self.server_time = parsedate_to_datetime(response.headers.get("Date") or "")
        except (TypeError, ValueError):
            self.server_time = None
        return response

    @staticmethod
    def _bucket(key: str, per_minute: float) -> TokenBucket | None:
        # a burst of one second's worth: any window of a few seconds or more stays under the rate
        return bucket_for(key, per_minute / 60, max(1.0, per_minute / 60)) if per_minute > 0 else None

    @property
    def calls(self) -> int:
        return self.http.calls

    def get_one(self, path: str, missing: str, bucket: TokenBucket | None = None) -> dict[str, Any]:
        """GET one resource's `data`; a 404 (or 403) is a SourceError that names what is missing."""
        response = self.http.request("GET", f"{self.api_url}{path}", ok_statuses=frozenset({403, 404}),
                                     bucket=bucket or self.projects_bucket, what=f"GET {path}")
        if response.status_code in (403, 404):
            detail = describe_aps_error(response)
            raise SourceError(f"{self.http.label}: {missing} (GET {path} answered {response.status_code}"
                              f"{' ' + detail if detail else ''})", retryable=False)
        return json_body(response).get("data") or {}

    def paged(self, path: str, params: dict[str, Any], bucket: TokenBucket | None) -> Iterator[dict[str, Any]]:
        """Every page of a JSON:API collection, following links.next on the API host."""
        url: str | None = f"{self.api_url}{path}"
        while url:
            body = self.http.get_json(url, params=params, what=f"GET {path}", bucket=bucket)
            yield body
            following = ((body.get("links") or {}).get("next") or {}).get("href")
            url = self.http.checked_link(following, f"GET {path}") if following else None
            params = {}

    def hubs(self) -> list[dict[str, Any]]:
        return [h for body in self.paged("/project/v1/hubs", {}, self.projects_bucket) for h in body.get("data") or []]

    def projects(self, hub_id: str) -> list[dict[str, Any]]:
        path = f"/project/v1/hubs/{quote(hub_id, safe='')}/projects"
        return [p for body in self.paged(path, {"page[limit]": 100}, self.projects_bucket) for p in body.get("data") or []]

    def top_folders(self, hub_id: str, project_id: str) -> list[dict[str, Any]]:
        path = f"/project/v1/hubs/{quote(hub_id, safe='')}/projects/{quote(project_id, safe='')}/topFolders"
        response = self._note_date(self.http.request(
            "GET", f"{self.api_url}{path}", ok_statuses=frozenset({403, 404}), bucket=self.projects_bucket,
            what="GET /project/v1/hubs/{hub}/projects/{project}/topFolders"))
        if response.status_code in (403, 404):
            raise SourceError(f"{self.http.label}: project {project_id} not found or not readable by this app "
                              f"(topFolders answered {response.status_code} {describe_aps_error(response)})".rstrip(),
                              retryable=False)
        return json_body(response).get("data") or []

    def contents_url(self, project_id: str, folder_id: str) -> str:
        return (f"{self.api_url}/data/v1/projects/{quote(project_id, safe='')}/folders/{quote(folder_id, safe='')}"
                f"/contents?page%5Blimit%5D={self.details.page_size}&includeHidden=true")

    def contents_page(self, url: str) -> requests.Response:
        """One page of a folder's contents; 403/404 come back to the caller (that folder failed, not the sync)."""
        return self._note_date(self.http.request(
            "GET", url, headers=self.region_headers, ok_statuses=frozenset({403, 404}), bucket=self.contents_bucket,
            what="GET /data/v1/projects/{project}/folders/{folder}/contents"))
