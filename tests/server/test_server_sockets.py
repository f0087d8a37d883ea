"""The sockets `serve --device-workers` shares between processes."""

from __future__ import annotations

import asyncio
import socket

from fleetguard.server.listeners import reuse_port_socket
from tests.processes import free_port


def _accepted_nodelay(sock: socket.socket) -> int:
    """TCP_NODELAY of a connection accepted by asyncio on ``sock``."""

    async def accept_one() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                conn = transport.get_extra_info("socket")
                seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        host, port = sock.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        try:
            return await asyncio.wait_for(seen, 5)
        finally:
            writer.close()
            server.close()

    return asyncio.run(accept_one())


def test_shared_device_socket_sends_small_responses_without_delay() -> None:
    # Without TCP_NODELAY a response written in two parts waits for the client's
    # delayed ACK (~40 ms per request).
    sock = reuse_port_socket("127.0.0.1", free_port())
    assert _accepted_nodelay(sock) != 0


def test_several_processes_may_listen_on_the_device_port() -> None:
    port = free_port()
    first = reuse_port_socket("127.0.0.1", port)
    second = reuse_port_socket("127.0.0.1", port)
    try:
        assert first.getsockname() == second.getsockname()
    finally:
        first.close()
        second.close()
