"""`virustotal`: looks each file's hash up with VirusTotal API v3 (GET {api_url}/files/{hash}).

- 200: the verdict from data.attributes.last_analysis_stats goes to metadata.processors.virustotal; a
  file flagged malicious by any engine (or suspicious by more than suspicious_threshold) is skipped
  as infected.
- 404 NotFoundError: unknown to VirusTotal, recorded as {"status": "unknown"}; never called clean.
- 429 QuotaExceededError: this file and the rest stay pending for the next run (no attempt counted).
- 401: a ConfigError (one line: the key is wrong), which stops the files step; the key never
  appears in any output.
- Unreachable: the files stay pending.
Requests are paced to requests_per_minute (4: the public API's quota). Verdicts are cached in the
store's processor_cache by hash for cache_ttl_hours, so a hash is asked once per TTL across files,
containers, endpoints and runs. A file needs a sha256, sha1 or md5 (from content_hash or its source);
files without one, or over max_file_size_mb, are skipped with the reason.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any, Callable
from urllib.parse import quote, urlsplit

import requests
from pydantic import Field, field_validator

from ..config import Secret, redact
from ..errors import ConfigError
from ..records import FileRecord
from .base import Processor, ProcessorContext, ProcessorOptions, ProcessResult, register_processor

CACHE = "virustotal"
_USABLE = ("sha256", "sha1", "md5")


class VirusTotalOptions(ProcessorOptions):
    api_key: Secret  # ${NAME} or {env: NAME}, resolved when the files step runs
    api_url: str = "https://www.virustotal.com/api/v3"
    requests_per_minute: float = Field(default=4, gt=0)
    cache_ttl_hours: float = Field(default=24 * 7, gt=0)
    max_file_size_mb: float = Field(default=650, gt=0)  # VirusTotal's own upload limit
    suspicious_threshold: int | None = Field(default=None, ge=0)  # skip when suspicious > this (None: never)
    timeout_s: float = Field(default=30, gt=0)

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not a URL like https://www.virustotal.com/api/v3")
        return value.rstrip("/")


def lookup_hash(record: FileRecord) -> str | None:
    """The hash to ask VirusTotal about: content_hash's sha256, else the source's sha256 / sha1 / md5."""
    if record.content_hash and record.content_hash.split(":", 1)[0] in _USABLE:
        return record.content_hash.split(":", 1)[1].lower()
    hashes = record.metadata.get("hashes") or {}
    for algorithm in _USABLE:
        if hashes.get(algorithm):
            return str(hashes[algorithm]).lower()
    return None


class QuotaSpent(Exception):
    pass


class VirusTotal(Processor):
    """Looks files up by hash with VirusTotal and skips the infected ones."""

    type_name = "virustotal"
    Options = VirusTotalOptions

    def __init__(self, options: VirusTotalOptions, name: str | None = None):
        super().__init__(options, name)
        self._session: requests.Session | None = None
        self._key: str | None = None
        self._last_request = float("-inf")
        self._lock = threading.Lock()
        self._quota_spent = False
        self.clock: Callable[[], float] = time.monotonic
        self.sleep: Callable[[float], None] = time.sleep
        self.requests_made = 0

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def process(self, batch: list[FileRecord], context: ProcessorContext) -> dict[str, ProcessResult]:
        o = self.options
        results: dict[str, ProcessResult] = {}
        wanted: dict[str, list[FileRecord]] = {}
        for record in batch:
            if record.size is not None and record.size > o.max_file_size_mb * 1024 * 1024:
                results[record.external_id] = ProcessResult.skipped(f"larger than max_file_size_mb={o.max_file_size_mb:g}")
            elif (digest := lookup_hash(record)) is None:
                results[record.external_id] = ProcessResult.skipped(
                    "no usable hash (sha256, sha1 or md5): put content_hash before virustotal")
            else:
                wanted.setdefault(digest, []).append(record)
        verdicts = context.store.cache_get(CACHE, list(wanted)) if context.store is not None and wanted else {}
        fresh: dict[str, dict[str, Any]] = {}
        for digest in wanted:
            if digest in verdicts:
                continue
            if self._quota_spent:
                break
            try:
                fresh[digest] = verdicts[digest] = self._lookup(digest)
            except QuotaSpent:
                self._quota_spent = True
                context.log.warning(f"{self.name}: VirusTotal quota exceeded (HTTP 429 QuotaExceededError); "
                                    "the remaining files are looked up on the next run")
            except requests.RequestException as exc:
                context.log.warning(f"{self.name}: VirusTotal unreachable ({type(exc).__name__}); files stay pending")
                break
        if fresh and context.store is not None:
            context.store.cache_put(CACHE, fresh, timedelta(hours=o.cache_ttl_hours))
        for digest, records in wanted.items():
            verdict = verdicts.get(digest)
            for record in records:
                results[record.external_id] = self._result(verdict)
        return results

    def _result(self, verdict: dict[str, Any] | None) -> ProcessResult:
        if verdict is None:
            return ProcessResult.later("VirusTotal quota exceeded or unreachable; looked up on the next run")
        if verdict.get("status") == "unknown":
            return ProcessResult.processed(verdict)
        malicious, suspicious = int(verdict.get("malicious") or 0), int(verdict.get("suspicious") or 0)
        threshold = self.options.suspicious_threshold
        if malicious > 0 or (threshold is not None and suspicious > threshold):
            return ProcessResult.skipped(f"infected: {malicious} engines flag it malicious, {suspicious} suspicious",
                                         {**verdict, "infected": True})
        return ProcessResult.processed({**verdict, "infected": False})

    def _lookup(self, digest: str) -> dict[str, Any]:
        """One GET, paced; returns the verdict to cache. Raises QuotaSpent on 429, ConfigError on 401/403."""
        o = self.options
        if self._session is None:
            self._key = o.api_key.resolve(f"processor {self.name}: api_key: ")
            self._session = requests.Session()
        with self._lock:
            wait = self._last_request + 60.0 / o.requests_per_minute - self.clock()
            if wait > 0:
                self.sleep(wait)
            self._last_request = self.clock()
        self.requests_made += 1
        response = self._session.get(f"{o.api_url}/files/{quote(digest)}", headers={"x-apikey": self._key or ""},
                                     timeout=o.timeout_s)
        with response:
            error = _error(response)
            if response.status_code == 200:
                attributes = (response.json().get("data") or {}).get("attributes") or {}
                stats = attributes.get("last_analysis_stats") or {}
                return {"status": "known", **{k: int(stats.get(k) or 0) for k in
                                              ("malicious", "suspicious", "harmless", "undetected")},
                        "last_analysis_date": attributes.get("last_analysis_date"), "hash": digest}
            if response.status_code == 404:
                return {"status": "unknown", "hash": digest}
            if response.status_code == 429:
                raise QuotaSpent()
            if response.status_code in (401, 403):
                raise ConfigError(redact(f"processor {self.name}: VirusTotal refused the API key "
                                         f"(HTTP {response.status_code} {error}); check api_key"))
            raise requests.HTTPError(f"HTTP {response.status_code} {error}")


def _error(response: requests.Response) -> str:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return ""
    return ": ".join(str(p) for p in (error.get("code"), error.get("message")) if p)


register_processor(VirusTotal.type_name, VirusTotal)
