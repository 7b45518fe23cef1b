"""Errors a user can act on: one line naming the endpoint, container and field or request."""


class FileConnectorError(Exception):
    """Base of the errors the CLI prints as one line, without a traceback."""


class ConfigError(FileConnectorError):
    """connector.yaml is wrong (names the file, endpoint and field)."""


class SourceError(FileConnectorError):
    """A provider refused or failed a request (names the endpoint, container and request)."""


class StoreError(FileConnectorError):
    """The store failed (names the store and the operation)."""
