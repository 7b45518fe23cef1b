"""A throwaway certificate authority (trustme) for HTTPS fakes on 127.0.0.1."""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass
class FakeTLS:
    ca_path: str  # PEM of the CA, what a client passes as ca_bundle
    server_context: ssl.SSLContext


def make_tls(directory: str | Path | None = None) -> FakeTLS:
    """A CA plus a server certificate for 127.0.0.1 and localhost."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    directory = Path(directory or tempfile.mkdtemp(prefix="fake-tls-"))
    ca_path = directory / "fake-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    return FakeTLS(ca_path=str(ca_path), server_context=context)
