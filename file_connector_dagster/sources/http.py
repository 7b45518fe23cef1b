"""The HTTP client every network source shares: TLS, retries with Retry-After, adaptive slow-down, one-line errors.

Provider-neutral: a source gives it a label for error messages, an optional `auth` callable that
returns headers (asked again with `refresh=True` after a 401), its throttling knobs and, when its
errors read differently, an ErrorDialect; the client does the rest. Plain Python, no Dagster.

No fixed-rate pacing by default: the providers' guidance is to honour Retry-After, and a per-process
limit does not coordinate Dagster's separate run processes anyway (Dagster pools and run-queue limits
do). After a 429/503 the client spaces its next requests out (AdaptivePacing) and eases back to full
speed as requests succeed again. A fixed rate (`requests_per_second`) stays available as an option.

Why not only urllib3's Retry: it caps the sleep (`backoff_max`) but has no total budget across a
sync, cannot refresh a bearer token on 401, and raises an exception that names the full URL (with
its query). The transport underneath is still requests + urllib3.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urljoin, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter

from pathlib import Path

from ..errors import ConfigError, SourceError
from .base import Source

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
THROTTLE_STATUSES = frozenset({429, 503})

AuthHeaders = Callable[[bool], Mapping[str, str]]  # refresh -> {"Authorization": ...}


def json_body(response: requests.Response) -> Any:
    """The response's JSON body. orjson parses a page of 1,000 items several times faster than the json
    module that `json_body(response)` uses, and a listing is mostly parsing pages.

    Raises:
        ValueError: the body is not JSON (orjson.JSONDecodeError is a ValueError, as requests' own is).
    """
    return orjson.loads(response.content)


class PinnedVerifyAdapter(HTTPAdapter):
    """An adapter whose TLS verification is fixed at construction.

    requests merges REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE into every request and lets that override
    Session.verify; an adapter sees the merged value last, so pinning it here makes the configured
    CA bundle (or the system default) win whatever the environment says.
    """

    def __init__(self, verify: bool | str = True, **kwargs: Any):
        self.pinned_verify = verify
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs["verify"] = self.pinned_verify
        return super().send(request, *args, **kwargs)


def tls_session(ca_bundle: str | None = None, pool_size: int = 10) -> requests.Session:
    """A requests.Session that verifies with `ca_bundle` (a PEM path) or the default trust store,
    whatever REQUESTS_CA_BUNDLE says. Also usable as msal's `http_client`."""
    session = requests.Session()
    adapter = PinnedVerifyAdapter(verify=ca_bundle or True, pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = ca_bundle or True
    return session


class HttpSource(Source):
    """A source that talks HTTP(S): one requests session, opened on first use and verified with
    endpoint_details.ca_bundle (a PEM path relative to connector.yaml), closed with the source."""

    _session: requests.Session | None = None

    @property
    def ca_bundle(self) -> str | None:
        return self.local_path(getattr(self.details, "ca_bundle", None))

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            ca_bundle = self.ca_bundle
            if ca_bundle and not Path(ca_bundle).is_file():
                raise ConfigError(f"endpoint {self.endpoint!r}: ca_bundle: file {ca_bundle} not found")
            self._session = self._open_session(ca_bundle)
        return self._session

    def _open_session(self, ca_bundle: str | None) -> requests.Session:
        return tls_session(ca_bundle)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


class TokenBucket:
    """Client-side pacing: at most `rate` requests a second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, max(burst, 1.0)
        self.tokens = self.burst
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Take one token, sleeping until there is one. Returns the seconds slept."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.tokens -= 1
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            sleep(wait)
        return wait


_BUCKETS: dict[tuple[str, float, float], TokenBucket] = {}
_BUCKETS_LOCK = threading.Lock()


def bucket_for(host: str, rate: float, burst: float) -> TokenBucket:
    """One bucket per host (and setting) per process, so every container synced in this process
    shares the same budget for that host."""
    with _BUCKETS_LOCK:
        key = (host, rate, burst)
        if key not in _BUCKETS:
            _BUCKETS[key] = TokenBucket(rate, burst)
        return _BUCKETS[key]


class AdaptivePacing:
    """Slow down after the server throttles, speed up again as requests succeed.

    Retry-After covers the refused request; without a gap, the requests after it walk straight into the
    next 429. Each throttle doubles the gap between requests (the first is `initial_gap_s`, at most
    `max_gap_s`); every `recover_after` successes in a row halve it, and below `initial_gap_s` it is gone.
    `initial_gap_s=0` turns the slow-down off.
    """

    def __init__(self, initial_gap_s: float = 0.25, max_gap_s: float = 30.0, recover_after: int = 10):
        self.initial_gap_s, self.max_gap_s, self.recover_after = initial_gap_s, max_gap_s, recover_after
        self.gap_s = 0.0
        self.successes = 0
        self.last_start: float | None = None

    def before_request(self, sleep: Callable[[float], None]) -> float:
        """Sleep what is left of the gap since the last request started. Returns the seconds slept."""
        wait = 0.0
        if self.gap_s and self.last_start is not None:
            wait = max(0.0, self.last_start + self.gap_s - time.monotonic())
            if wait:
                sleep(wait)
        self.last_start = time.monotonic()
        return wait

    def retry_waited(self) -> None:
        """A retry wait (Retry-After or backoff) just ended: it spaced the next request already."""
        self.last_start = None

    def throttled(self) -> None:
        self.gap_s = min(self.max_gap_s, max(self.initial_gap_s, self.gap_s * 2))
        self.successes = 0

    def succeeded(self) -> None:
        if not self.gap_s:
            return
        self.successes += 1
        if self.successes >= self.recover_after:
            self.successes = 0
            self.gap_s = self.gap_s / 2 if self.gap_s / 2 >= self.initial_gap_s else 0.0


@dataclass
class RetryPolicy:
    """How long a client may wait out throttling and transient failures.

    Attributes:
        max_wait_s: the longest single wait; a Retry-After asking for more fails the request
            instead (waiting less than the server asked only earns another 429).
        total_wait_s: budget for all waits of one client (one sync); when spent, fail.
        backoff_base_s: first backoff when no Retry-After is given; doubles each attempt, with jitter.
        max_attempts: attempts per request.
    """

    max_wait_s: float = 120.0
    total_wait_s: float = 900.0
    backoff_base_s: float = 1.0
    max_attempts: int = 10


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when missing or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def describe_error_body(response: requests.Response) -> str:
    """'code: message' from a JSON error body ({"error": {...}} or {"error": "...", ...}), else ''."""
    try:
        body = json_body(response)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        inner = error.get("innerError") or error.get("innererror") or {}
        if isinstance(inner, dict) and inner.get("code") and inner.get("code") != code:
            code = f"{code}/{inner['code']}" if code else inner["code"]
        message = str(error.get("message") or "").splitlines()[0] if error.get("message") else ""
        return ": ".join(p for p in (code, message) if p)
    if isinstance(error, str):
        description = str(body.get("error_description") or body.get("message") or "")
        return ": ".join(p for p in (error, description.splitlines()[0] if description else "") if p)
    return ""


@dataclass(frozen=True)
class ErrorDialect:
    """How a provider words its errors; a source declares its own, the client stays provider-neutral.

    Attributes:
        describe: 'code: message' from an error response's body (for the one-line error).
        throttled: whether a refused response outside 429/5xx is throttling all the same, to be waited
            out like a 429 (Google Drive answers its rate limits with 403 and a reason in the body).
    """

    describe: Callable[[requests.Response], str] = describe_error_body
    throttled: Callable[[requests.Response], bool] = lambda response: False

def describe_jsonapi_errors(response: requests.Response) -> str:
    """'code: title: detail' of the first entry of a JSON:API error body ({"errors": [{...}]}) (APS Data
    Management, among others), else what describe_error_body finds."""
    try:
        body = json_body(response)
    except ValueError:
        return ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        parts = [str(first[k]).splitlines()[0] for k in ("code", "title", "detail") if first.get(k)]
        unique = [p for i, p in enumerate(parts) if p not in parts[:i]]
        return ": ".join(unique) + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
    return describe_error_body(response)


class HttpClient:
    """requests with retries (429/5xx/connection errors), adaptive slow-down after throttling, optional
    fixed-rate pacing, a 401 token refresh and clean errors.

    Args:
        label: how errors name the caller, e.g. "endpoint 'sp', container 'Documents'".
        auth: returns the auth headers; called with refresh=True once after a 401.
        ca_bundle: PEM file to verify TLS with (default: the system trust store).
        policy: RetryPolicy.
        requests_per_second, burst: fixed-rate pacing per host (off by default; 0 turns it off).
        pacing: AdaptivePacing (the slow-down after a 429/503).
        timeout_s: connect/read timeout per attempt.
        errors: the provider's ErrorDialect (describe + throttling); default: describe_error, no extra throttling.
        describe_error: the provider's error body -> 'code: message' (describe_error_body for Graph and
            OAuth shapes, describe_jsonapi_errors for JSON:API).
        link_origin: the API's scheme://host; links from responses (next pages) are followed only there,
            so the bearer token goes nowhere else. Relative links resolve against it.
    """

    def __init__(self, label: str, auth: AuthHeaders | None = None, ca_bundle: str | None = None,
                 policy: RetryPolicy | None = None, requests_per_second: float = 0.0, burst: float = 10.0,
                 timeout_s: float = 60.0, session: requests.Session | None = None,
                 sleep: Callable[[float], None] | None = None, pacing: AdaptivePacing | None = None,
                 errors: ErrorDialect | None = None,
                 describe_error: Callable[[requests.Response], str] = describe_error_body,
                 link_origin: str | None = None, cancel: threading.Event | None = None):
        self.label = label
        self.cancel = cancel or threading.Event()  # set: every wait ends at once and the request fails
        self.errors = errors or ErrorDialect(describe=describe_error)
        self.auth = auth
        self.policy = policy or RetryPolicy()
        self.requests_per_second, self.burst = requests_per_second, burst
        self.timeout_s = timeout_s
        self.session = session or tls_session(ca_bundle)
        self.sleep = sleep or self._sleep_unless_cancelled
        self.describe_error = describe_error
        self.link_origin = link_origin
        self.calls = 0  # HTTP attempts made (what ChangePage.api_calls reports)
        self._one_at_a_time = threading.RLock()  # a listing's request thread (ahead.Ahead) and the listing share the client
        self.waited_s = 0.0  # time spent waiting out throttling and failures, against the budget
        self.pacing = pacing or AdaptivePacing()
        self.paced_s = 0.0  # time spent in the slow-down after throttling (not against the budget)

    def close(self) -> None:
        self.session.close()

    def _cancelled(self) -> SourceError:
        return SourceError(f"{self.label}: stopped: the sync was cancelled", retryable=True)

    def _sleep_unless_cancelled(self, seconds: float) -> None:
        """Wait, unless the sync this client serves stops meanwhile (then raise at once)."""
        if self.cancel.wait(seconds):
            raise self._cancelled()

    @staticmethod
    def describe(method: str, url: str) -> str:
        """'GET /path' without scheme, host or query (queries can hold tokens)."""
        return f"{method} {urlsplit(url).path or '/'}"

    def checked_link(self, link: Any, what: str) -> str:
        """A link from a response, made absolute against link_origin; a link to any other host raises."""
        origin = urlsplit(self.link_origin or "")
        url = urljoin(f"{origin.scheme}://{origin.netloc}/", str(link))
        parts = urlsplit(url)
        if not self.link_origin or (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
            raise SourceError(f"{self.label}: {what}: the response links to another host ({parts.netloc}); not followed")
        return url

    def _fail(self, what: str, problem: str, retryable: bool = True) -> SourceError:
        return SourceError(f"{self.label}: {what}: {problem}", retryable=retryable)

    def request(self, method: str, url: str, *, params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, data: Any = None,
                ok_statuses: frozenset[int] = frozenset(), what: str | None = None, stream: bool = False,
                allow_redirects: bool = True, bucket: TokenBucket | None = None) -> requests.Response:
        """Send a request; returns a 2xx response, or one whose status is in ok_statuses.

        Args:
            stream: leave the body unread (iterate it, then close the response).
            allow_redirects: follow 3xx (False: a 3xx in ok_statuses comes back as it is).
            bucket: pace this request with it (a provider's per-endpoint-family limit) instead of the
                per-host pacing.

        Raises:
            SourceError: any other status, after retries for 429/5xx; the message names the request
                path and the provider's error code and message, never headers or the query.
        """
        with self._one_at_a_time:
            return self._request(method, url, params=params, headers=headers, data=data, ok_statuses=ok_statuses,
                                 what=what, stream=stream, allow_redirects=allow_redirects, bucket=bucket)

    def _request(self, method: str, url: str, *, params: Mapping[str, Any] | None, headers: Mapping[str, str] | None,
                 data: Any, ok_statuses: frozenset[int], what: str | None, stream: bool, allow_redirects: bool,
                 bucket: TokenBucket | None) -> requests.Response:
        what = what or self.describe(method, url)
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            if self.cancel.is_set():
                raise self._cancelled()
            if bucket is not None:
                bucket.acquire(self.sleep)
            elif self.requests_per_second > 0:
                bucket_for(urlsplit(url).netloc, self.requests_per_second, self.burst).acquire(self.sleep)
            self.paced_s += self.pacing.before_request(self.sleep)
            send_headers = dict(headers or {})
            if self.auth is not None:
                send_headers.update(self.auth(False))
            self.calls += 1
            try:
                response = self.session.request(method, url, params=params, headers=send_headers, data=data,
                                                timeout=self.timeout_s, stream=stream, allow_redirects=allow_redirects)
            except requests.exceptions.SSLError as exc:
                raise self._fail(what, f"TLS verification failed ({type(exc).__name__}); set ca_bundle "
                                       "for a private certificate authority", retryable=False) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{'timed out' if isinstance(exc, requests.Timeout) else 'cannot connect'} to {urlsplit(url).netloc}"
                self._wait(what, problem, attempt, None)
                continue
            status = response.status_code
            if 200 <= status < 300 or status in ok_statuses:
                self.pacing.succeeded()
                return response
            if status == 401 and self.auth is not None and not refreshed:
                refreshed = True
                log.info("%s: %s: HTTP 401, refreshing the access token once", self.label, what)
                response.close()
                self.auth(True)
                continue
            detail = self.errors.describe(response)
            problem = f"HTTP {status}" + (f" {detail}" if detail else "")
            throttled = status in THROTTLE_STATUSES or self.errors.throttled(response)
            if status in RETRY_STATUSES or throttled:
                if throttled:
                    self.pacing.throttled()
                response.close()
                self._wait(what, problem, attempt, retry_after_seconds(response.headers.get("Retry-After")))
                continue
            if status == 401:
                problem += " (still refused after refreshing the access token)"
            # 4xx other than throttling/timeouts will answer the same next time: no point retrying the run
            raise self._fail(what, problem, retryable=not (400 <= status < 500) or status in (408, 409, 423))

    def get_json(self, url: str, params: Mapping[str, Any] | None = None, what: str | None = None,
                 bucket: TokenBucket | None = None) -> dict[str, Any]:
        response = self.request("GET", url, params=params, what=what, bucket=bucket)
        try:
            body = json_body(response)
        except ValueError:
            raise self._fail(what or self.describe("GET", url), "the response is not JSON") from None
        if not isinstance(body, dict):
            raise self._fail(what or self.describe("GET", url), "the response is not a JSON object")
        return body

    def _wait(self, what: str, problem: str, attempt: int, retry_after: float | None) -> None:
        """Sleep before the next attempt, or raise when attempts, the per-wait cap or the budget run out."""
        policy = self.policy
        if attempt >= policy.max_attempts:
            raise self._fail(what, f"{problem}; gave up after {attempt} attempts")
        if retry_after is not None:
            if retry_after > policy.max_wait_s:
                raise self._fail(what, f"{problem}; the server asked to retry after {retry_after:.0f}s, "
                                       f"more than max_wait_s={policy.max_wait_s:g}")
            wait = retry_after
        else:
            ceiling = min(policy.max_wait_s, policy.backoff_base_s * 2 ** (attempt - 1))
            wait = random.uniform(ceiling / 2, ceiling)  # jitter so parallel clients spread out
        if self.waited_s + wait > policy.total_wait_s:
            raise self._fail(what, f"{problem}; retry budget of {policy.total_wait_s:g}s spent "
                                   f"({self.waited_s:.0f}s waited)")
        log.warning("%s: %s: %s; retrying in %.1fs (attempt %d)", self.label, what, problem, wait, attempt + 1)
        self.waited_s += wait
        self.sleep(wait)
        self.pacing.retry_waited()
