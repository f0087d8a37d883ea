"""Real receivers on 127.0.0.1 for the notification tests: an HTTPS webhook endpoint that
verifies signatures as a SOC's would, with answers scripted per request."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.agent.pki import TestCA


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def verify_signature(secret: str, headers: dict[str, str], body: bytes,
                     tolerance_s: float = 300) -> bool:
    """The receiver's recipe of docs/notifications.md, as a receiver would write it."""
    timestamp = headers.get("x-fleetguard-timestamp", "")
    given = headers.get("x-fleetguard-signature", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance_s:
        return False
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                                    hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


@dataclass
class Script:
    """Answers for successive requests: (status, headers); 200 once the list is used up."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> tuple[int, dict[str, str]]:
        with self.lock:
            return self.answers.pop(0) if self.answers else (200, {})


class HttpsReceiver:
    def __init__(self, ca: TestCA, directory: Path) -> None:
        key, cert = ca.issue("receiver", server=True)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "key.pem").write_bytes(key)
        (directory / "cert.pem").write_bytes(cert)
        self.requests: list[Received] = []
        self.script = Script()
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status, headers = receiver.script.next()
                with receiver._arrived:
                    receiver.requests.append(Received(
                        {k.lower(): v for k, v in self.headers.items()}, body,
                        time.monotonic()))
                    receiver._arrived.notify_all()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/hooks/fleetguard"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._arrived.wait(left)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
