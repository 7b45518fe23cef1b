"""Errors a user can act on: one line naming the endpoint, container and field or request."""


class FileConnectorError(Exception):
    """Base of the errors the CLI prints as one line, without a traceback.

    `retryable` tells schedulers whether running again later can help (throttling, a dropped
    connection) or not (bad config, wrong credentials, a site that does not exist).
    """

    retryable: bool = True

    def __init__(self, message: str, *, retryable: bool | None = None):
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class ConfigError(FileConnectorError):
    """connector.yaml is wrong (names the file, endpoint and field)."""

    retryable = False


class SourceError(FileConnectorError):
    """A provider refused or failed a request (names the endpoint, container and request)."""


class SyncInterrupted(FileConnectorError):
    """The sync was stopped on request (Ctrl-C, a cancelled run): recorded as interrupted, its lease
    released, its cursor at the last committed page. Not retried: the user asked it to stop."""

    retryable = False


class ContentUnavailable(SourceError):
    """A file's content cannot be read from its source: the source type cannot serve content, or the
    file is gone. Processors record such a file as skipped with this reason."""

    retryable = False


class StoreError(FileConnectorError):
    """The store failed (names the store and the operation)."""


def secret_forms(secret: str) -> set[str]:
    """A secret as text may carry it: as is, and percent-encoded the ways URIs and forms encode it."""
    from urllib.parse import quote, quote_plus

    return {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}


def scrub(text: str, *secrets: str | None) -> str:
    """`text` with every secret (of 4 characters or more, in any of its forms) replaced by ***."""
    forms = {form for secret in secrets if secret for form in secret_forms(secret)}
    for form in sorted(forms, key=len, reverse=True):
        if len(form) >= 4:
            text = text.replace(form, "***")
    return text
