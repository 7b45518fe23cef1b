"""The one Definitions object workspace.yaml loads (connector.yaml from $FILE_CONNECTOR_CONFIG,
./connector.yaml, or the shipped example)."""

from .defs import build_definitions

defs = build_definitions()
