"""Google's own client (google-api-python-client + google-auth, service-account credentials) against
the Drive fake: the token grant, files.list paging, changes, errors, as Google's client expects them."""

from __future__ import annotations

from typing import Iterator

import pytest

pytest.importorskip("googleapiclient")

import google_auth_httplib2  # noqa: E402
import httplib2  # noqa: E402
from google.oauth2 import service_account  # noqa: E402
from googleapiclient.discovery import build  # noqa: E402
from googleapiclient.errors import HttpError  # noqa: E402

from tests.fakes.drive import FakeDriveService  # noqa: E402

SCOPE = "https://www.googleapis.com/auth/drive.metadata.readonly"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDriveService]:
    with FakeDriveService() as service:
        service.add_shared_drive("Engineering", files=250, folders_every=25)
        service.user_drive(service.subject, files=40, folders_every=10)
        yield service


def drive_service(fake: FakeDriveService, subject: str | None = None):
    credentials = service_account.Credentials.from_service_account_info(fake.key_info(), scopes=[SCOPE], subject=subject)
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(ca_certs=fake.tls.ca_path))
    return build("drive", "v3", http=http, client_options={"api_endpoint": fake.api_url + "/"}, static_discovery=True)


def test_google_client_lists_pages_and_changes(fake: FakeDriveService) -> None:
    drive = drive_service(fake)
    eng = next(c for c in fake.corpora.values() if c.name == "Engineering")
    assert [d["name"] for d in drive.drives().list().execute()["drives"]] == ["Engineering"]
    start = drive.changes().getStartPageToken(driveId=eng.id, supportsAllDrives=True).execute()["startPageToken"]
    files = drive.files()
    request = files.list(corpora="drive", driveId=eng.id, includeItemsFromAllDrives=True, supportsAllDrives=True,
                         q="trashed = false", pageSize=100, fields="nextPageToken,files(id,name,size,version,parents)")
    seen = []
    while request is not None:  # the client's own paging helper follows nextPageToken
        response = request.execute()
        seen.extend(response["files"])
        request = files.list_next(request, response)
    assert len(seen) == eng.generated and len({f["id"] for f in seen}) == len(seen)
    assert all(isinstance(f["version"], str) for f in seen)
    eng.rename(seen[-1]["id"], "renamed.pdf")
    eng.trash(seen[-2]["id"])
    changes = drive.changes().list(pageToken=start, driveId=eng.id, supportsAllDrives=True,
                                   includeItemsFromAllDrives=True, includeRemoved=True,
                                   fields="newStartPageToken,nextPageToken,changes(fileId,removed,file(name,trashed))").execute()
    assert [(c["fileId"], c["file"]["name"], c["file"]["trashed"]) for c in changes["changes"]] == [
        (seen[-1]["id"], "renamed.pdf", False), (seen[-2]["id"], seen[-2]["name"], True)]
    assert int(changes["newStartPageToken"]) > int(start)
    assert fake.count("token") >= 1


def test_google_client_with_delegation_and_errors(fake: FakeDriveService) -> None:
    drive = drive_service(fake, subject=fake.subject)
    root = drive.files().get(fileId="root", fields="id,name").execute()
    assert root["id"] == fake.users[fake.subject].root_id
    mine = drive.files().list(corpora="user", q="trashed = false", fields="files(id,owners(emailAddress))").execute()
    assert mine["files"] and all(f["owners"][0]["emailAddress"] == fake.subject for f in mine["files"])
    with pytest.raises(HttpError) as missing:
        drive.files().get(fileId="nope", supportsAllDrives=True).execute()
    assert missing.value.resp.status == 404 and missing.value.reason.startswith("File not found")
    fake.inject(403, match="/files")
    with pytest.raises(HttpError) as limited:
        drive.files().list(corpora="user").execute(num_retries=0)
    assert limited.value.resp.status == 403 and limited.value.error_details[0]["reason"] == "userRateLimitExceeded"
    fake.inject(403, match="/files")
    assert "files" in drive.files().list(corpora="user").execute(num_retries=2)  # google's client retries it too
    from google.auth.exceptions import RefreshError

    fake.delegation = False
    try:
        with pytest.raises(RefreshError, match="unauthorized_client"):
            drive_service(fake, subject="mallory@example.com").files().get(fileId="root").execute()
    finally:
        fake.delegation = True
