"""Expose the verified TLS client certificate to the app.

uvicorn does not implement the ASGI TLS extension; this protocol class reads the peer
certificate once per connection (after the handshake, which already verified it
against the fleet CA bundle) and hands it to every request on that connection through
the per-request state (``request.state.peer_cert_der``).
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol


class PeerCertH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.app_state = {**self.app_state, "peer_cert_der": der}
