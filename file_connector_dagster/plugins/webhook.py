"""`type: webhook`: POST a JSON summary of each event (generic, Slack blocks or a Teams MessageCard),
optionally signed with HMAC-SHA256, retried on 429 / 5xx / dropped connections within a small budget."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field
from ..config import EnvString, Secret
from ..sources.http import RETRY_STATUSES, tls_session
from .base import BasePlugin, PluginMetadata, SyncEvent
from .manager import register_plugin

SIGNATURE_HEADER = "X-File-Connector-Signature"  # "sha256=<hex of HMAC-SHA256(secret, timestamp + '.' + body)>"
TIMESTAMP_HEADER = "X-File-Connector-Timestamp"


class WebhookOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: EnvString  # e.g. ${SLACK_WEBHOOK_URL}: such URLs are credentials, keep them in the environment
    format: Literal["generic", "slack", "teams"] = "generic"
    secret: Secret | None = None  # shared secret for the signature header
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    backoff_s: float = Field(default=1.0, ge=0)
    ca_bundle: str | None = None


def _counts_text(event: SyncEvent) -> str:
    return ", ".join(f"{k} {v}" for k, v in event.counts.items()) or "no counts"


def payload(event: SyncEvent, fmt: str) -> dict[str, Any]:
    """The JSON body for one event in the chosen format."""
    summary = _counts_text(event)
    if fmt == "slack":
        text = f"*{event.headline}*\n{summary}" + (f"\nError: `{event.error}`" if event.error else "")
        blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
        if event.run_url:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{event.run_url}|Dagster run>"}]})
        return {"text": event.headline, "blocks": blocks}
    if fmt == "teams":
        facts = [{"name": k, "value": str(v)} for k, v in event.counts.items()]
        if event.error:
            facts.append({"name": "error", "value": event.error})
        card: dict[str, Any] = {
            "@type": "MessageCard", "@context": "https://schema.org/extensions", "summary": event.headline,
            "themeColor": "2EB886" if event.event != "failure" else "D00000", "title": event.headline,
            "sections": [{"facts": facts, "text": summary}],
        }
        if event.run_url:
            card["potentialAction"] = [{"@type": "OpenUri", "name": "Open the Dagster run",
                                        "targets": [{"os": "default", "uri": event.run_url}]}]
        return card
    return {"source": "file-connector", **event.as_dict()}


class WebhookPlugin(BasePlugin):
    type_name = "webhook"
    metadata = PluginMetadata("webhook", "1.0.0", "POST each sync result as JSON (generic, Slack or Teams)",
                              "File Connector", ("requests",))
    Options = WebhookOptions

    def initialize(self) -> None:
        # Our own retry loop, not urllib3's Retry: that one logs the URL path, and webhook paths are tokens.
        self.session = tls_session(self.options.ca_bundle)  # type: ignore[attr-defined]

    def cleanup(self) -> None:
        self.session.close()

    def execute(self, context: SyncEvent) -> dict[str, Any]:
        opts: WebhookOptions = self.options  # type: ignore[assignment]
        url = opts.url.resolve(f"plugin {self.name}: url: ")
        host = urlsplit(url).hostname or "?"  # errors name the host only: webhook paths carry tokens
        body = json.dumps(payload(context, opts.format), separators=(",", ":"), default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "file-connector", **opts.headers}
        if opts.secret is not None:
            timestamp = str(int(time.time()))
            key = opts.secret.resolve(f"plugin {self.name}: secret: ").encode()
            digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        for attempt in range(opts.retries + 1):
            last = attempt == opts.retries
            try:
                response = self.session.post(url, data=body, headers=headers, timeout=opts.timeout_s)
            except requests.RequestException as exc:
                if last:
                    raise RuntimeError(f"POST to {host} failed after {attempt + 1} attempts "
                                       f"({type(exc).__name__})") from None
                time.sleep(self._backoff(attempt, None))
                continue
            if response.status_code < 300:
                return {"posted_to": host, "status": response.status_code, "attempts": attempt + 1}
            if response.status_code not in RETRY_STATUSES or last:
                raise RuntimeError(f"POST to {host} answered HTTP {response.status_code} "
                                   f"after {attempt + 1} attempt{'s' if attempt else ''}")
            time.sleep(self._backoff(attempt, response.headers.get("Retry-After")))
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        """Retry-After (seconds) when given, else exponential backoff with jitter; at most 60 s."""
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), 60.0)
        base = self.options.backoff_s * 2 ** attempt  # type: ignore[attr-defined]
        return min(base + random.uniform(0, base / 2), 60.0)


register_plugin(WebhookPlugin.type_name, WebhookPlugin)
