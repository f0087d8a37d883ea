"""Expose the verified TLS client certificate to the app.

uvicorn does not implement the ASGI TLS extension; these protocol classes read the peer
certificate once per connection (after the handshake, which already verified it
against the fleet CA bundle) and hand it to every request on that connection through
the per-request state (``request.state.peer_cert_der``).

The device endpoint prefers httptools (C parser) when it is installed: enrollment and
telemetry are many small requests, where h11's pure-Python parsing is a visible share.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


def _with_peer_cert(app_state: dict[str, Any], transport: asyncio.Transport) -> dict[str, Any]:
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return {**app_state, "peer_cert_der": der}


class PeerCertH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app_state = _with_peer_cert(self.app_state, transport)


def peer_cert_protocol() -> type[asyncio.Protocol]:
    """The fastest HTTP/1.1 protocol available, with the peer certificate exposed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is optional
        return PeerCertH11Protocol

    class PeerCertHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.app_state = _with_peer_cert(self.app_state, transport)

    return PeerCertHttpToolsProtocol
