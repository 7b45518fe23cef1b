"""endpoint_details of a `type: autodesk` endpoint (Autodesk Construction Cloud / BIM 360 over APS)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...config import Secret

# The documented Data Management limits are about 50 requests a minute on hubs/projects and 300 on
# folder contents; the defaults stay a little under them.
PROJECTS_PER_MINUTE = 45.0
CONTENTS_PER_MINUTE = 270.0


class AutodeskDetails(BaseModel):
    """endpoint_details of a `type: autodesk` endpoint."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1)
    client_secret: Secret  # ${NAME} or {env: NAME}, resolved at sync time
    hub: str = Field(min_length=1)  # hub id (b.<account guid>) or the hub's name
    projects: Literal["all"] | list[str] = "all"  # project ids (b.<guid>) or names
    region: Literal["US", "EMEA", "AUS", "CAN", "DEU", "IND", "JPN", "GBR"] = "US"  # sent as x-ads-region
    api_url: str = "https://developer.api.autodesk.com"
    ca_bundle: str | None = None  # PEM file for a private CA, relative to connector.yaml
    page_size: int = Field(default=200, ge=1, le=200)  # page[limit] of folder contents (APS maximum 200)
    full_listing_days: float = Field(default=7.0, ge=0)  # list every folder this often; 0 = never
    projects_requests_per_minute: float = Field(default=PROJECTS_PER_MINUTE, ge=0)  # 0 = no pacing
    contents_requests_per_minute: float = Field(default=CONTENTS_PER_MINUTE, ge=0)
    max_wait_s: float = Field(default=120.0, gt=0)  # longest single wait on 429/503
    throttle_budget_s: float = Field(default=900.0, ge=0)  # all waits of one sync together
    backoff_base_s: float = Field(default=1.0, gt=0)  # first backoff when Retry-After is missing
    slow_down_gap_s: float = Field(default=0.25, ge=0)  # gap between requests after a 429/503, doubling; 0 = off
    timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.netloc or parts.query:
            raise ValueError(f"{value!r} is not an https URL like https://developer.api.autodesk.com")
        return value.rstrip("/")

    @field_validator("projects", mode="before")
    @classmethod
    def _projects(cls, value: object) -> object:
        if isinstance(value, str) and value != "all":
            return [value]
        if isinstance(value, list) and not value:
            raise ValueError("list at least one project id or name, or write `all`")
        return value
