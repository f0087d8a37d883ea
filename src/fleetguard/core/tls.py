"""TLS client contexts for fleetguard's own connections: one place for the policy.

Every client that talks to a fleetguard endpoint (the broker, the HTTPS device and
operator endpoints) trusts only the CA it is given, never the system's store, checks the
server's name, and speaks TLS 1.2 or newer. The scanner is the exception, on purpose: it
must reach the weak TLS it reports (``scan._net.insecure_tls_context``).
"""

from __future__ import annotations

import ssl
from pathlib import Path

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def client_context(
    *,
    ca_file: str | Path | None = None,
    ca_pem: str | bytes | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> ssl.SSLContext:
    """A context that verifies the server against ``ca_file`` or ``ca_pem`` (exactly one),
    with the client certificate ``cert_file`` (and ``key_file``, unless it holds the key).

    Raises:
        ValueError: not exactly one CA was given, or a key without a certificate.
        OSError, ssl.SSLError: a file cannot be read or does not hold what it should.
    """
    if (ca_file is None) == (ca_pem is None):
        raise ValueError("give the CA as a file or as PEM text, one of the two")
    if key_file is not None and cert_file is None:
        raise ValueError("a client key needs its certificate")
    cadata = ca_pem.decode() if isinstance(ca_pem, bytes) else ca_pem
    # With a CA given, create_default_context loads only that CA, not the system's.
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=None if ca_file is None else str(ca_file), cadata=cadata)
    context.minimum_version = MINIMUM_VERSION
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context
