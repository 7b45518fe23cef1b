"""The Drive fake answers in Drive v3's wire format: every response validates against the schemas of
Google's discovery document (../shared/api-specs/google-drive-v3.discovery.json), fields it does not
define included (a fake must not invent fields)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from file_connector_dagster.sources.http import tls_session
from tests.fakes.drive import FOLDER, SHORTCUT, FakeDriveService, parse_fields, parse_q

DISCOVERY = Path("/work/shared/api-specs/google-drive-v3.discovery.json")
if not DISCOVERY.exists():  # the spec travels with the repository's shared folder; fall back to google's bundled copy
    import googleapiclient

    DISCOVERY = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "drive.v3.json"
SCHEMAS: dict[str, Any] = json.loads(DISCOVERY.read_text())["schemas"]


def problems(value: Any, schema: dict[str, Any], where: str = "$") -> Iterator[str]:
    """What in `value` does not conform to a discovery-document schema."""
    if "$ref" in schema:
        yield from problems(value, SCHEMAS[schema["$ref"]], where)
        return
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            yield f"{where}: expected an object"
            return
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in props:
                yield from problems(item, props[key], f"{where}.{key}")
            elif extra:
                yield from problems(item, extra, f"{where}.{key}")
            else:
                yield f"{where}.{key}: not in the schema"
    elif kind == "array":
        if not isinstance(value, list):
            yield f"{where}: expected an array"
            return
        for i, item in enumerate(value):
            yield from problems(item, schema.get("items", {}), f"{where}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            yield f"{where}: expected a string, got {type(value).__name__}"
        elif schema.get("format") in ("int64", "uint64") and not value.lstrip("-").isdigit():
            yield f"{where}: expected an int64 string"
        elif schema.get("format") == "date-time":
            try:
                datetime.fromisoformat(value)
            except ValueError:
                yield f"{where}: not an RFC 3339 time"
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            yield f"{where}: expected an integer"
    elif kind == "boolean":
        if not isinstance(value, bool):
            yield f"{where}: expected a boolean"


def check(value: Any, schema: str) -> None:
    found = list(problems(value, {"$ref": schema}))
    assert not found, found[:10]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDriveService]:
    with FakeDriveService() as service:
        service.add_shared_drive("Engineering", files=400, folders_every=20)
        service.add_shared_drive("Sales", files=10)
        service.user_drive(service.subject, files=120, folders_every=20)
        service.share_with_me(service.subject, "from-partner.pdf")
        yield service


def session_for(fake: FakeDriveService, subject: str | None = None) -> requests.Session:
    import jwt
    import time

    now = int(time.time())
    claims = {"iss": fake.client_email, "aud": fake.token_url, "iat": now, "exp": now + 600,
              "scope": "https://www.googleapis.com/auth/drive.metadata.readonly", **({"sub": subject} if subject else {})}
    session = tls_session(fake.tls.ca_path)  # REQUESTS_CA_BUNDLE would override Session.verify
    token = session.post(fake.token_url, data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                               "assertion": jwt.encode(claims, fake.private_key_pem, algorithm="RS256")})
    assert token.status_code == 200 and token.json()["token_type"] == "Bearer" and token.json()["expires_in"] > 0
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    return session


def test_every_response_validates_against_the_discovery_schemas(fake: FakeDriveService) -> None:
    http = session_for(fake, fake.subject)
    api = fake.api_url
    drives = http.get(f"{api}/drives", params={"pageSize": 1, "fields": "*"}).json()
    check(drives, "DriveList")
    assert len(drives["drives"]) == 1 and drives["nextPageToken"]
    eng = next(c for c in fake.corpora.values() if c.name == "Engineering")
    check(http.get(f"{api}/drives/{eng.id}", params={"fields": "*"}).json(), "Drive")
    start = http.get(f"{api}/changes/startPageToken", params={"driveId": eng.id, "supportsAllDrives": "true"}).json()
    check(start, "StartPageToken")

    # every item of a shared drive and of My Drive, full representation
    kinds = set()
    for params in ({"corpora": "drive", "driveId": eng.id, "includeItemsFromAllDrives": "true", "supportsAllDrives": "true"},
                   {"corpora": "user"}):
        token = None
        while True:
            page = http.get(f"{api}/files", params={**params, "pageSize": 150, "fields": "*",
                                                    **({"pageToken": token} if token else {})}).json()
            check(page, "FileList")
            kinds.update(f["mimeType"] for f in page["files"])
            token = page.get("nextPageToken")
            if not token:
                break
    assert {FOLDER, SHORTCUT, "application/vnd.google-apps.document", "application/pdf"} <= kinds

    # changes of every kind: edit, rename, move, trash, untrash, permanent deletion
    item = eng.base_id(eng.n_folders + 3)
    eng.edit(item)
    eng.rename(eng.base_id(eng.n_folders + 4), "renamed.pdf")
    eng.move(eng.base_id(12), eng.root_id)
    eng.trash(eng.base_id(1))
    eng.untrash(eng.base_id(eng.n_folders + 5))
    eng.delete(eng.base_id(eng.n_folders + 6))
    changes = http.get(f"{api}/changes", params={"pageToken": start["startPageToken"], "driveId": eng.id,
                                                 "supportsAllDrives": "true", "includeItemsFromAllDrives": "true",
                                                 "includeRemoved": "true", "fields": "*"}).json()
    check(changes, "ChangeList")
    assert changes["newStartPageToken"] and len(changes["changes"]) >= 6
    removed = [c for c in changes["changes"] if c["removed"]]
    assert removed and "file" not in removed[0] and removed[0]["fileId"] == eng.base_id(eng.n_folders + 6)
    trashed = [c["file"] for c in changes["changes"] if c.get("file", {}).get("trashed")]
    assert trashed and all(f["driveId"] == eng.id for f in trashed)
    check(http.get(f"{api}/files/{item}", params={"fields": "*", "supportsAllDrives": "true"}).json(), "File")


def test_partial_responses_and_queries(fake: FakeDriveService) -> None:
    http = session_for(fake)
    eng = next(c for c in fake.corpora.values() if c.name == "Engineering")
    base = {"corpora": "drive", "driveId": eng.id, "includeItemsFromAllDrives": "true", "supportsAllDrives": "true"}
    page = http.get(f"{fake.api_url}/files", params={**base, "q": f"mimeType = '{FOLDER}' and trashed = false",
                                                     "pageSize": 1000, "fields": "nextPageToken,files(id,parents)"}).json()
    assert set(page) == {"files"} and all(set(f) == {"id", "parents"} for f in page["files"])
    live_folders = [s["id"] for s in eng.states() if s["mime"] == FOLDER and not s["trashed"] and not s["deleted"]]
    assert sorted(f["id"] for f in page["files"]) == sorted(live_folders) and len(live_folders) > 10
    default = http.get(f"{fake.api_url}/files", params={**base, "pageSize": 2}).json()
    assert set(default) == {"kind", "nextPageToken", "incompleteSearch", "files"}
    assert set(default["files"][0]) == {"kind", "id", "name", "mimeType"}
    children = http.get(f"{fake.api_url}/files", params={
        **base, "q": f"('{eng.base_id(0)}' in parents or '{eng.base_id(1)}' in parents) and trashed = false",
        "pageSize": 1000, "fields": "files(id,parents)"}).json()["files"]
    assert children and all(f["parents"][0] in (eng.base_id(0), eng.base_id(1)) for f in children)
    missing = http.get(f"{fake.api_url}/files", params={**base, "driveId": "0Anope"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == 404
    no_flag = http.get(f"{fake.api_url}/files", params={"corpora": "drive", "driveId": eng.id})
    assert no_flag.status_code == 400
    bad = http.get(f"{fake.api_url}/changes", params={"pageToken": "999999999"})
    assert bad.status_code == 400 and bad.json()["error"]["errors"][0]["location"] == "pageToken"
    throttled = fake.inject(403, match="/files")
    storm = http.get(f"{fake.api_url}/files", params=base)
    assert storm.status_code == 403 and throttled.count == 0
    assert storm.json()["error"]["errors"][0] == {"message": "User Rate Limit Exceeded", "domain": "usageLimits",
                                                  "reason": "userRateLimitExceeded"}


def test_fields_and_q_parsers() -> None:
    assert parse_fields("nextPageToken,files(id,name,owners(emailAddress)),a/b") == {
        "nextPageToken": None, "files": {"id": None, "name": None, "owners": {"emailAddress": None}}, "a": {"b": None}}
    assert parse_fields("*") is None
    state = {"id": "x", "parent": "p", "mime": FOLDER, "trashed": False, "name": "it's"}
    assert parse_q(f"mimeType = '{FOLDER}' and trashed = false")(state)
    assert not parse_q(f"mimeType != '{FOLDER}' and trashed = false")(state)
    assert parse_q("('q' in parents or 'p' in parents) and not trashed = true")(state)
    assert parse_q("name = 'it\\'s'")(state)
