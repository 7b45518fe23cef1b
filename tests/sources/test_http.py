"""The shared HTTP client: Retry-After parsing, pacing, retry budget, 401 refresh, link safety."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any, Iterator

import pytest
import requests

from file_connector_dagster.errors import SourceError
from file_connector_dagster.sources.http import (
    AdaptivePacing, HttpClient, RetryPolicy, TokenBucket, describe_error_body, describe_jsonapi_errors, retry_after_seconds,
    tls_session,
)
from tests.fakes.graph import FakeGraph
from tests.fakes.tls import make_tls


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    now = time.time()
    assert 29 <= retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True), now=now) <= 31
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_token_bucket_paces_requests() -> None:
    bucket = TokenBucket(rate=100, burst=5)
    started = time.monotonic()
    for _ in range(25):
        bucket.acquire()
    assert time.monotonic() - started >= 0.18  # 20 beyond the burst at 100/s


@pytest.fixture(scope="module")
def fake() -> Any:
    graph = FakeGraph(tls=make_tls())
    graph.add_drive(graph.add_site(), "Documents", items=10)
    with graph:
        yield graph


def client(fake: FakeGraph, pacing: AdaptivePacing | None = None, **policy: Any) -> tuple[HttpClient, list[float], list[bool]]:
    slept: list[float] = []
    refreshes: list[bool] = []
    session = tls_session(fake.tls.ca_path)

    def auth(refresh: bool) -> dict[str, str]:
        refreshes.append(refresh)
        token = session.post(f"{fake.base_url}/{fake.tenant}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": fake.client_id, "client_secret": fake.client_secret,
            "scope": f"{fake.base_url}/.default"}).json()["access_token"] if refresh or not hasattr(auth, "token") else auth.token
        auth.token = token  # type: ignore[attr-defined]
        return {"Authorization": f"Bearer {token}"}

    http = HttpClient("endpoint 'x'", auth=auth, session=session, policy=RetryPolicy(**policy), sleep=slept.append,
                      pacing=pacing)
    return http, slept, refreshes


def test_backoff_with_jitter_grows_and_the_budget_ends_it(fake: FakeGraph) -> None:
    drive = next(iter(fake.drives))
    fake.inject(503, match="/drives/", count=50)
    http, slept, _ = client(fake, AdaptivePacing(initial_gap_s=0), backoff_base_s=1, max_wait_s=8, total_wait_s=20)
    with pytest.raises(SourceError, match=r"HTTP 503 serviceNotAvailable.*retry budget of 20s spent"):
        http.get_json(f"{fake.graph_url}/drives/{drive}?secret=xyz")
    assert 0.5 <= slept[0] <= 1 and 1 <= slept[1] <= 2 and 2 <= slept[2] <= 4 and all(w <= 8 for w in slept)
    assert sum(slept) <= 20
    fake.faults.clear()


def test_retry_after_is_honoured_and_401_refreshes_once(fake: FakeGraph) -> None:
    drive = next(iter(fake.drives))
    http, slept, refreshes = client(fake, AdaptivePacing(initial_gap_s=0))  # only the Retry-After sleeps
    fake.inject(429, match="/drives/", retry_after="3")
    assert http.get_json(f"{fake.graph_url}/drives/{drive}")["id"] == drive
    assert slept == [3.0]
    fake.valid_tokens.clear()
    assert http.get_json(f"{fake.graph_url}/drives/{drive}")["id"] == drive
    assert refreshes.count(True) == 1  # one refresh after the 401
    fake.inject(401, match="/drives/", count=2)
    with pytest.raises(SourceError, match="HTTP 401 .*still refused after refreshing"):
        http.get_json(f"{fake.graph_url}/drives/{drive}")


def test_tls_session_ignores_requests_ca_bundle(fake: FakeGraph, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent.pem")
    drive = next(iter(fake.drives))
    assert tls_session(fake.tls.ca_path).get(f"{fake.graph_url}/drives/{drive}").status_code == 401
    http = HttpClient("endpoint 'x'", session=tls_session(None))  # system store: the fake's CA is unknown
    with pytest.raises(SourceError, match="TLS verification failed"):
        http.get_json(f"{fake.graph_url}/drives/{drive}")


def _response(status: int, body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    return response


def test_jsonapi_error_bodies_are_described() -> None:
    body = {"jsonapi": {"version": "1.0"}, "errors": [
        {"id": "e1", "status": "404", "code": "NOT_FOUND", "title": "Folder not found", "detail": "No folder urn:x\nmore"},
        {"id": "e2", "status": "404", "code": "OTHER", "title": "x"}]}
    assert describe_jsonapi_errors(_response(404, body)) == "NOT_FOUND: Folder not found: No folder urn:x (and 1 more)"
    assert describe_jsonapi_errors(_response(400, {"error": {"code": "badRequest", "message": "m"}})) == "badRequest: m"
    assert describe_error_body(_response(404, body)) == ""  # Graph's describer does not read JSON:API


def test_links_are_followed_only_on_the_api_host() -> None:
    http = HttpClient("endpoint 'x'", link_origin="https://api.example.com/v1")
    assert http.checked_link("https://api.example.com/v1/next?page=2", "next") == "https://api.example.com/v1/next?page=2"
    assert http.checked_link("/data/v1/x?page%5Bnumber%5D=1", "next") == "https://api.example.com/data/v1/x?page%5Bnumber%5D=1"
    for bad in ("https://evil.example.com/v1/next", "//evil.example.com/x", "http://api.example.com/v1/next"):
        with pytest.raises(SourceError, match="links to another host"):
            http.checked_link(bad, "next")
    with pytest.raises(SourceError, match="links to another host"):
        HttpClient("endpoint 'x'").checked_link("https://api.example.com/x", "next")  # no origin declared: none


def test_no_pacing_until_throttled_then_a_gap_that_eases_off(fake: FakeGraph) -> None:
    drive = next(iter(fake.drives))
    url = f"{fake.graph_url}/drives/{drive}"
    http, slept, _ = client(fake)
    for _ in range(5):
        http.get_json(url)
    assert slept == []  # no fixed-rate pacing by default
    fake.inject(429, match="/drives/", retry_after="2")
    http.get_json(url)
    assert slept == [2.0]  # the Retry-After, then a gap before each following request
    for _ in range(10):
        http.get_json(url)
    gaps = slept[1:]
    # the retried request is the first success; the ninth request after it is the tenth: the gap halves,
    # which is below the first gap, so it is gone and the last request goes at full speed
    assert len(gaps) == 9 and all(0 < g <= 0.25 for g in gaps)  # less the time a request took
    assert http.pacing.gap_s == 0.0
    fake.inject(429, match="/drives/", count=2, retry_after="0")
    http.get_json(url)
    assert http.pacing.gap_s == 0.5  # a second throttle in a row doubles it
    assert http.waited_s == 2.0 and http.paced_s > 0  # the slow-down does not spend the retry budget


def test_adaptive_pacing_caps_the_gap() -> None:
    pacing = AdaptivePacing(initial_gap_s=1, max_gap_s=4, recover_after=2)
    for _ in range(5):
        pacing.throttled()
    assert pacing.gap_s == 4
    for _ in range(4):
        pacing.succeeded()
    assert pacing.gap_s == 1
    pacing.succeeded(), pacing.succeeded()
    assert pacing.gap_s == 0


def test_error_dialects_describe_and_classify_per_provider() -> None:
    import json as _json

    import requests as _requests

    from file_connector_dagster.sources.google_drive.client import GOOGLE_ERRORS
    from file_connector_dagster.sources.http import ErrorDialect, describe_error_body

    def response(status: int, body: object) -> _requests.Response:
        r = _requests.Response()
        r.status_code, r._content = status, _json.dumps(body).encode()
        return r

    google = {"error": {"code": 403, "message": "User Rate Limit Exceeded", "status": "PERMISSION_DENIED",
                        "errors": [{"domain": "usageLimits", "reason": "userRateLimitExceeded", "message": "x"}]}}
    assert describe_error_body(response(403, google)) == "403: User Rate Limit Exceeded"  # an integer code reads
    assert GOOGLE_ERRORS.describe(response(403, google)) == "userRateLimitExceeded: User Rate Limit Exceeded"
    assert GOOGLE_ERRORS.throttled(response(403, google)) and not ErrorDialect().throttled(response(403, google))
    forbidden = {"error": {"code": 403, "message": "No access", "errors": [{"reason": "forbidden"}]}}
    assert not GOOGLE_ERRORS.throttled(response(403, forbidden))
    assert GOOGLE_ERRORS.describe(response(400, {"error": "invalid_grant", "error_description": "Bad JWT."})) == \
        "invalid_grant: Bad JWT."


def test_a_request_chain_runs_ahead_of_its_consumer_and_hands_over_in_order():
    """ahead.Ahead over a chain of requests: each next request goes out as soon as the previous answer
    names it, while the consumer works on an earlier page (at most `depth` pages ahead); an error is raised
    where its page would have been; close() waits for the request in flight and leaves no thread."""
    import threading

    from file_connector_dagster.ahead import Ahead

    sent: list[tuple[int, float, str]] = []

    def chain(first: int, fail_at: int | None = None) -> Iterator[int]:
        page = first
        while page < 8:
            sent.append((page, time.monotonic(), threading.current_thread().name))
            time.sleep(0.05)  # the server prepares the page
            if page == fail_at:
                raise ValueError(f"page {page} failed")
            yield page
            page += 1  # the answer names the next page

    started = time.monotonic()
    ahead = Ahead(chain(0), depth=2, name="test-chain")
    got = []
    for page in ahead:
        got.append(page)
        time.sleep(0.05)  # the consumer builds the page's records meanwhile
    ahead.close(None)
    assert got == list(range(8))
    # requests and the consumer's work overlap: 8 x (50 + 50) ms one after the other, well under 0.8 s here
    assert time.monotonic() - started < 0.7
    assert {name for _, _, name in sent} == {"test-chain"}

    sent.clear()
    ahead = Ahead(chain(0, fail_at=3), depth=2, name="test-chain")
    got = []
    with pytest.raises(ValueError, match="page 3 failed"):
        for page in ahead:
            got.append(page)
    assert got == [0, 1, 2]
    ahead.close(None)

    sent.clear()
    ahead = Ahead(chain(0), depth=1, name="test-chain")
    first = next(iter(ahead))
    time.sleep(0.3)  # a slow consumer: the chain stops a page or two ahead, not at the end
    assert first == 0 and len(sent) <= 3
    ahead.close(None)
    assert not [t for t in threading.enumerate() if t.name == "test-chain"]
    assert len(sent) <= 4


