"""endpoint_details of a `type: google_drive` endpoint."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...config import Secret

METADATA_SCOPE = "https://www.googleapis.com/auth/drive.metadata.readonly"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
DEFAULT_API_URL = "https://www.googleapis.com/drive/v3"
MY_DRIVE = "my-drive"  # the container key of the subject's My Drive


def _https(value: str, example: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError(f"{value!r} is not an https URL like {example}")
    return value.strip().rstrip("/")


class GoogleDriveDetails(BaseModel):
    """What to sync and how to authenticate.

    service_account_key: the service account's JSON key, as a file path (relative to connector.yaml)
        or an environment reference (${NAME} or {env: NAME}) whose value is the JSON or a file path.
        Never inline.
    subject: a user to act as (domain-wide delegation); needed for my_drive.
    shared_drives: "all" (every shared drive the account is a member of) or a list of ids or names.
    my_drive: the subject's My Drive as container "my-drive".
    folder_id: one folder's subtree as one container (keyed by the folder id).
    """

    model_config = ConfigDict(extra="forbid")

    service_account_key: Secret | str
    subject: str | None = None
    scopes: list[str] = Field(default_factory=lambda: [METADATA_SCOPE], min_length=1)
    shared_drives: Literal["all"] | list[str] | None = None
    my_drive: bool = False
    folder_id: str | None = None
    token_url: str | None = None  # default: the key's token_uri, else Google's
    api_url: str = DEFAULT_API_URL
    ca_bundle: str | None = None  # PEM file for a private CA (proxies, tests), relative to connector.yaml
    page_size: int = Field(default=1000, ge=1, le=1000)  # files.list / changes.list pageSize
    max_wait_s: float = Field(default=120.0, gt=0)  # longest single wait on throttling
    throttle_budget_s: float = Field(default=900.0, ge=0)  # all waits of one sync together
    backoff_base_s: float = Field(default=1.0, gt=0)  # first backoff when Retry-After is missing
    requests_per_second: float = Field(default=0.0, ge=0)  # fixed client-side pacing per host; 0 = off
    timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("service_account_key", mode="before")
    @classmethod
    def _key(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"env"}:
            return Secret._coerce(value)
        if isinstance(value, dict) or (isinstance(value, str) and (value.lstrip().startswith("{")
                                                                   or "PRIVATE KEY" in value)):
            raise ValueError("the key must be a file path or an environment reference such as ${NAME}, "
                             "never the JSON itself")
        if isinstance(value, str) and re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", value.strip()):
            return Secret._coerce(value.strip())
        if isinstance(value, str) and "${" in value:
            raise ValueError(f"{value!r}: use exactly one environment reference such as ${{NAME}}, or a file path")
        return value

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str | None) -> str | None:
        return None if value is None else _https(value, DEFAULT_TOKEN_URL)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        return _https(value, DEFAULT_API_URL)

    @field_validator("shared_drives", mode="before")
    @classmethod
    def _drives(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "all":
            return [value]
        return value

    @model_validator(mode="after")
    def _something_to_sync(self) -> "GoogleDriveDetails":
        if not (self.shared_drives or self.my_drive or self.folder_id):
            raise ValueError("shared_drives, my_drive, folder_id: set at least one (nothing to sync)")
        if self.my_drive and not self.subject:
            raise ValueError("my_drive: needs subject (the user whose My Drive to sync, by domain-wide delegation)")
        return self
