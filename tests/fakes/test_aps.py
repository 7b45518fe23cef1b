"""The APS fake answers in the wire formats of ../shared/api-specs/aps-*.yaml: every response kind the
source reads is validated against the spec's schema with a real OpenAPI 3.0 validator."""

from __future__ import annotations

import base64
import functools
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from openapi_schema_validator import OAS30Validator

from file_connector_dagster.sources.http import tls_session
from tests.fakes.aps import FakeAPS
from tests.fakes.tls import make_tls

SPECS = Path("/work/shared/api-specs")
if not SPECS.exists():  # a checkout elsewhere: the specs next to the repository
    SPECS = Path(__file__).resolve().parents[3] / "shared" / "api-specs"


@functools.cache
def spec(name: str) -> dict[str, Any]:
    return yaml.safe_load((SPECS / name).read_text(encoding="utf-8"))


def problems(instance: Any, schema_name: str, spec_name: str = "aps-data-management.yaml",
             response: str | None = None) -> list[str]:
    """What does not conform to components/schemas/<schema_name> (or components/responses/<response>)."""
    components = spec(spec_name)["components"]
    ref = (f"#/components/responses/{response}/content/application~1json/schema" if response
           else f"#/components/schemas/{schema_name}")
    validator = OAS30Validator({"components": components, "$ref": ref})
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


@pytest.fixture(scope="module")
def aps() -> Any:
    fake = FakeAPS(tls=make_tls())
    project = fake.add_project("Tower A", items=450, folders=12)
    folder = project.top[0]  # holds folders and items
    project.delete(project.add_item(folder, "deleted.pdf"))  # a hidden item
    project.new_version(project.nodes[folder].children[-2])
    fake.add_project("Bridge B", items=5, folders=1)
    with fake:
        yield fake


def session_for(aps: FakeAPS) -> tuple[requests.Session, dict[str, Any]]:
    session = tls_session(aps.tls.ca_path)  # REQUESTS_CA_BUNDLE would override a plain Session.verify
    basic = base64.b64encode(f"{aps.client_id}:{aps.client_secret}".encode()).decode()
    token = session.post(f"{aps.api_url}/authentication/v2/token", headers={"Authorization": f"Basic {basic}"},
                         data={"grant_type": "client_credentials", "scope": "data:read"}).json()
    session.headers["Authorization"] = f"Bearer {token['access_token']}"
    return session, token


def test_token_and_errors_conform(aps: FakeAPS) -> None:
    _, token = session_for(aps)
    assert not problems(token, "twoLeggedToken", "aps-authentication.yaml")
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    refused = requests.post(f"{aps.api_url}/authentication/v2/token", verify=aps.tls.ca_path,
                            auth=(aps.client_id, "wrong"), data={"grant_type": "client_credentials", "scope": "data:read"})
    assert refused.status_code == 401 and refused.json()["errorCode"] == "AUTH-001"
    session, _ = session_for(aps)
    missing = session.get(f"{aps.api_url}/project/v1/hubs/b.nope")
    assert missing.status_code == 404 and not problems(missing.json(), "", response="404-general")
    assert missing.json()["errors"][0]["code"] == "NOT_FOUND"


def test_hubs_projects_and_top_folders_conform(aps: FakeAPS) -> None:
    session, _ = session_for(aps)
    base = f"{aps.api_url}/project/v1/hubs"
    assert not problems(session.get(base).json(), "Hubs")
    assert not problems(session.get(f"{base}/{aps.hub_id}").json(), "Hub")
    projects = session.get(f"{base}/{aps.hub_id}/projects", params={"page[limit]": 1}).json()
    assert not problems(projects, "Projects") and "next" in projects["links"]
    second = session.get(projects["links"]["next"]["href"]).json()
    assert [p["attributes"]["name"] for p in projects["data"] + second["data"]] == ["Tower A", "Bridge B"]
    project_id = projects["data"][0]["id"]
    assert not problems(session.get(f"{base}/{aps.hub_id}/projects/{project_id}").json(), "Project")
    top = session.get(f"{base}/{aps.hub_id}/projects/{project_id}/topFolders").json()
    assert not problems(top, "TopFolders")
    assert [f["attributes"]["name"] for f in top["data"]] == ["Project Files", "Plans"]
    assert all(f["attributes"]["lastModifiedTimeRollup"] for f in top["data"])


def test_folder_contents_conform_page_by_page(aps: FakeAPS) -> None:
    session, _ = session_for(aps)
    project = next(iter(aps.projects.values()))
    folder = project.top[0]
    url: str | None = f"{aps.api_url}/data/v1/projects/{project.id}/folders/{folder}/contents"
    params: dict[str, Any] | None = {"page[limit]": 10, "includeHidden": "true"}
    kinds, hidden, pages = set(), 0, 0
    while url:
        body = session.get(url, params=params).json()
        assert not problems(body, "FolderContents"), problems(body, "FolderContents")[:3]
        tips = {v["id"] for v in body.get("included", [])}
        for entry in body["data"]:
            kinds.add(entry["type"])
            hidden += entry["attributes"]["hidden"]
            if entry["type"] == "items":
                assert entry["relationships"]["tip"]["data"]["id"] in tips  # every item's tip version is included
        url, params, pages = (body["links"].get("next") or {}).get("href"), None, pages + 1
    assert kinds == {"folders", "items"} and hidden == 1 and pages >= 3
    visible = session.get(f"{aps.api_url}/data/v1/projects/{project.id}/folders/{folder}/contents").json()
    assert all(not e["attributes"]["hidden"] for e in visible["data"])  # hidden ones only with includeHidden
