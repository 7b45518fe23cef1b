"""Google Drive v3 over the shared HTTP client: the service account's JWT-bearer token and the calls.

Auth is the OAuth 2.0 JWT bearer grant (RFC 7523) Google documents for service accounts: an RS256
assertion signed with the key (PyJWT + cryptography), `aud` the token URL, `sub` the user to act as
under domain-wide delegation. The token is cached until a minute before it expires; a 401 asks for
a new one once (HttpClient does that through `auth(refresh=True)`).

Drive's quirks are declared to HttpClient as an ErrorDialect: its JSON errors carry an integer
`code` and the useful word in `errors[].reason`, and it answers rate limits with 403
userRateLimitExceeded / rateLimitExceeded, which are throttling, not refusals.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import requests

from ...config import Secret, redact
from ...errors import ConfigError, SourceError
from ..http import ErrorDialect, HttpClient, describe_error_body, json_body
from .settings import DEFAULT_TOKEN_URL, GoogleDriveDetails

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
THROTTLE_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded"})
FOLDER = "application/vnd.google-apps.folder"
SHORTCUT = "application/vnd.google-apps.shortcut"
FILE_FIELDS = ("id,name,mimeType,parents,driveId,trashed,size,md5Checksum,sha256Checksum,version,createdTime,"
               "modifiedTime,webViewLink,shortcutDetails(targetId,targetMimeType),owners(displayName,emailAddress),"
               "lastModifyingUser(displayName,emailAddress)")
FOLDER_FIELDS = "id,name,mimeType,parents,driveId,trashed"


def _google_error(response: requests.Response) -> tuple[str, str]:
    """(reason, message) of a Google JSON error ({"error": {"code": 403, "message", "errors": [{"reason"}]}})."""
    try:
        body = json_body(response)
    except ValueError:
        return "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    errors = error.get("errors") if isinstance(error.get("errors"), list) else []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    reason = str(first.get("reason") or error.get("status") or "")
    message = str(error.get("message") or first.get("message") or "")
    return reason, message.splitlines()[0] if message else ""


def describe_google_error(response: requests.Response) -> str:
    """'reason: message' from Google's error body; OAuth token errors as the shared client reads them."""
    reason, message = _google_error(response)
    if not (reason or message):
        return describe_error_body(response)
    return ": ".join(p for p in (reason, message) if p)


def google_throttled(response: requests.Response) -> bool:
    return response.status_code == 403 and _google_error(response)[0] in THROTTLE_REASONS


GOOGLE_ERRORS = ErrorDialect(describe=describe_google_error, throttled=google_throttled)


def invalid_page_token(response: requests.Response) -> bool:
    """A 400/404/410 that says the pageToken is no longer valid (start over with a full listing)."""
    if response.status_code not in (400, 404, 410):
        return False
    try:
        errors = json_body(response)["error"].get("errors") or []
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return any(isinstance(e, dict) and (e.get("location") == "pageToken" or e.get("reason") == "invalidPageToken")
               for e in errors)


class ServiceAccountKey:
    """The fields of a service account's JSON key this source needs (never printed)."""

    def __init__(self, info: Mapping[str, Any], where: str):
        missing = [k for k in ("client_email", "private_key") if not isinstance(info.get(k), str) or not info.get(k)]
        if info.get("type") not in (None, "service_account"):
            raise ConfigError(f"{where}: is a {info.get('type')!r} key, not a service account key "
                              "(create a JSON key for a service account)")
        if missing:
            raise ConfigError(f"{where}: the JSON key has no {missing[0]} (is it a service account key?)")
        self.client_email: str = info["client_email"]
        self.private_key: str = info["private_key"]
        self.private_key_id: str | None = info.get("private_key_id")
        self.token_uri: str | None = info.get("token_uri")

    def __repr__(self) -> str:
        return f"ServiceAccountKey({self.client_email})"


def load_key(details: GoogleDriveDetails, base_dir: Path, label: str) -> ServiceAccountKey:
    """Read the key from its file or environment variable; one line naming the field on any problem."""
    where = f"{label}: service_account_key"
    value = details.service_account_key
    text = value.resolve(f"{where}: ") if isinstance(value, Secret) else None
    if text is None or not text.lstrip().startswith("{"):
        path = Path(text.strip() if text is not None else str(value)).expanduser()
        path = path if path.is_absolute() else base_dir / path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{where}: file {path} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: cannot read {path}: {type(exc).__name__}") from None
        where = f"{where} ({path})"
    try:
        info = json.loads(text)
    except ValueError:
        raise ConfigError(f"{where}: not valid JSON (expected the service account's JSON key)") from None
    if not isinstance(info, dict):
        raise ConfigError(f"{where}: not a JSON object (expected the service account's JSON key)")
    return ServiceAccountKey(info, where)


class ServiceAccountAuth:
    """Bearer headers for HttpClient from the JWT bearer grant; tokens cached until shortly before expiry."""

    REFRESH_MARGIN_S = 60.0
    ASSERTION_LIFETIME_S = 3600  # the longest Google accepts

    def __init__(self, details: GoogleDriveDetails, session: requests.Session, label: str, base_dir: Path,
                 cancel: threading.Event | None = None):
        self.details, self.session, self.label, self.base_dir = details, session, label, base_dir
        self.cancel = cancel
        self._key: ServiceAccountKey | None = None
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        self.tokens_fetched = 0

    @property
    def key(self) -> ServiceAccountKey:
        if self._key is None:
            self._key = load_key(self.details, self.base_dir, self.label)
        return self._key

    @property
    def token_url(self) -> str:
        return self.details.token_url or self.key.token_uri or DEFAULT_TOKEN_URL

    def _fail(self, problem: str, retryable: bool = False) -> SourceError:
        return SourceError(redact(f"{self.label}: authentication at {self.token_url} failed: {problem}"),
                           retryable=retryable)

    def _assertion(self) -> str:
        import jwt  # PyJWT signs RS256 through cryptography

        key = self.key
        now = int(time.time())
        claims = {"iss": key.client_email, "scope": " ".join(self.details.scopes), "aud": self.token_url,
                  "iat": now, "exp": now + self.ASSERTION_LIFETIME_S}
        if self.details.subject:
            claims["sub"] = self.details.subject
        headers = {"kid": key.private_key_id} if key.private_key_id else None
        try:
            return jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise ConfigError(f"{self.label}: service_account_key: its private_key cannot sign "
                              f"({type(exc).__name__}); download a new JSON key") from None

    def token(self, refresh: bool = False) -> str:
        with self._lock:
            if not refresh and self._token and time.monotonic() < self._expires:
                return self._token
            client = HttpClient(self.label, session=self.session, timeout_s=self.details.timeout_s,
                                errors=GOOGLE_ERRORS, cancel=self.cancel)
            data = {"grant_type": JWT_BEARER, "assertion": self._assertion()}
            try:
                response = client.request("POST", self.token_url, data=data, ok_statuses=frozenset({400, 401, 403}),
                                          what=f"POST {client.describe('POST', self.token_url).split(' ', 1)[1]}")
            except SourceError as exc:
                raise self._fail(str(exc).removeprefix(f"{self.label}: "), exc.retryable) from None
            try:
                body = json_body(response)
            except ValueError:
                body = None
            if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
                detail = describe_error_body(response) or f"HTTP {response.status_code}"
                hint = ""
                if self.details.subject and "unauthorized_client" in detail:
                    hint = (f" (domain-wide delegation for client {self.key.client_email} and these scopes is "
                            f"not enabled, or subject {self.details.subject!r} is not a user of the domain)")
                raise self._fail(f"{detail}{hint}")
            self._token = str(body["access_token"])
            lifetime = float(body.get("expires_in") or 3600)
            self._expires = time.monotonic() + max(0.0, lifetime - self.REFRESH_MARGIN_S)
            self.tokens_fetched += 1
            return self._token

    def __call__(self, refresh: bool) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(refresh)}"}


class DriveApi:
    """The Drive v3 calls the source makes, each one request through HttpClient."""

    def __init__(self, http: HttpClient, api_url: str, page_size: int):
        self.http, self.api_url, self.page_size = http, api_url, page_size

    def _get(self, path: str, params: dict[str, Any], what: str,
             ok_statuses: frozenset[int] = frozenset()) -> tuple[int, dict[str, Any]]:
        response = self.http.request("GET", f"{self.api_url}{path}", params=params, what=what, ok_statuses=ok_statuses)
        if response.status_code != 200:
            return response.status_code, {"_response": response}
        try:
            body = json_body(response)
        except ValueError:
            raise SourceError(f"{self.http.label}: {what}: the response is not JSON") from None
        if not isinstance(body, dict):
            raise SourceError(f"{self.http.label}: {what}: the response is not a JSON object")
        return 200, body

    @staticmethod
    def _drive_params(drive_id: str | None) -> dict[str, Any]:
        return {"supportsAllDrives": "true", **({"driveId": drive_id} if drive_id else {})}

    def start_page_token(self, drive_id: str | None) -> str:
        status, body = self._get("/changes/startPageToken", self._drive_params(drive_id),
                                 "GET /changes/startPageToken", frozenset({404}))
        if status == 404:
            raise self.not_found("the shared drive", "GET /changes/startPageToken")
        token = body.get("startPageToken")
        if not isinstance(token, str) or not token:
            raise SourceError(f"{self.http.label}: GET /changes/startPageToken: no startPageToken in the response")
        return token

    def not_found(self, what: str, request: str) -> SourceError:
        return SourceError(f"{self.http.label}: {what} was not found or is no longer shared with the service "
                           f"account ({request} answered 404)", retryable=False)

    def list_files(self, drive_id: str | None, q: str, fields: str, page_token: str | None) -> dict[str, Any] | None:
        """One files.list page; None when page_token is no longer valid."""
        params: dict[str, Any] = {"q": q, "pageSize": self.page_size,
                                  "fields": f"nextPageToken,incompleteSearch,files({fields})"}
        if drive_id:
            params.update(corpora="drive", driveId=drive_id, includeItemsFromAllDrives="true", supportsAllDrives="true")
        else:
            params.update(corpora="user", supportsAllDrives="true")
        if page_token:
            params["pageToken"] = page_token
        status, body = self._get("/files", params, "GET /files", frozenset({400, 404, 410}))
        if status != 200:
            response = body["_response"]
            if page_token and invalid_page_token(response):
                return None
            if status == 404 and drive_id:
                raise self.not_found("the shared drive", "GET /files")
            raise SourceError(f"{self.http.label}: GET /files: HTTP {status} {describe_google_error(response)}",
                              retryable=False)
        return body

    def list_changes(self, drive_id: str | None, page_token: str, my_drive: bool,
                     fields: str | None = None) -> dict[str, Any] | None:
        """One changes.list page (`fields`: a partial response); None when page_token is invalid or expired."""
        params: dict[str, Any] = {"pageToken": page_token, "pageSize": self.page_size, "includeRemoved": "true",
                                  "fields": fields or f"nextPageToken,newStartPageToken,changes(changeType,removed,"
                                                      f"fileId,driveId,time,file({FILE_FIELDS}))",
                                  **self._drive_params(drive_id)}
        if drive_id:
            params["includeItemsFromAllDrives"] = "true"
        if my_drive:
            params["restrictToMyDrive"] = "true"
        status, body = self._get("/changes", params, "GET /changes", frozenset({400, 404, 410}))
        if status != 200:
            response = body["_response"]
            if invalid_page_token(response):
                return None
            if status == 404 and drive_id:
                raise self.not_found("the shared drive", "GET /changes")
            raise SourceError(f"{self.http.label}: GET /changes: HTTP {status} {describe_google_error(response)}",
                              retryable=False)
        return body

    def get_file(self, file_id: str, fields: str) -> dict[str, Any] | None:
        """files.get; None on 404 (gone, or not visible to the account)."""
        status, body = self._get(f"/files/{requests.utils.quote(file_id, safe='')}",
                                 {"fields": fields, "supportsAllDrives": "true"}, "GET /files/{id}", frozenset({404}))
        return None if status == 404 else body

    def drives(self) -> Iterator[dict[str, Any]]:
        """Every shared drive the account is a member of (drives.list, all pages)."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"pageSize": 100, "fields": "nextPageToken,drives(id,name,createdTime,hidden)"}
            if token:
                params["pageToken"] = token
            _, body = self._get("/drives", params, "GET /drives")
            yield from body.get("drives") or []
            token = body.get("nextPageToken")
            if not token:
                return
