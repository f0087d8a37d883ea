"""A small loopback device for real scans: a telnet service that asks for a login."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

IAC, WILL = 255, 251


class _Telnet(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5)
        try:
            sock.sendall(bytes((IAC, WILL, 1, IAC, WILL, 3)) + b"\r\nBusyBox on cam\r\nlogin: ")
            while sock.recv(1024):  # whatever comes, ask again; never let anyone in
                sock.sendall(b"\r\nLogin incorrect\r\nlogin: ")
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def telnet_device(address: str) -> Iterator[int]:
    """Serve the fake telnet on ``address`` (a 127.0.0.x); yields its port."""
    server = _Server((address, 0), _Telnet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
