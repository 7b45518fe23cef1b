"""Sources: where listings come from. `build_source` makes one from an endpoint's config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Container, Health, Source, register_source, source_class, source_types

if TYPE_CHECKING:
    from ..config import ConnectorConfig, EndpointConfig


def build_source(config: "ConnectorConfig", endpoint: "EndpointConfig") -> Source:
    """Instantiate the endpoint's source; relative paths resolve against connector.yaml's folder."""
    cls = source_class(endpoint.type)
    return cls(endpoint.name, endpoint.endpoint_details, project_id=endpoint.project_id,
               user_id=endpoint.user_id, base_dir=config.base_dir)


__all__ = ["Container", "Health", "Source", "build_source", "register_source", "source_class", "source_types"]
