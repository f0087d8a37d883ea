"""A stand-in for the device endpoint's telemetry routes (mutual TLS, same contract).

Used only while `fleetguard serve` does not have the routes yet: POST /v1/telemetry and
/v1/heartbeat (202), GET /v1/commands (pending commands), POST /v1/commands/result.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fleetguard.protocol import MessageRejectedError, decode_message


class StubDeviceEndpoint:
    def __init__(self, *, cert: Path, key: Path, ca: Path) -> None:
        self.received: dict[str, list[Any]] = {"telemetry": [], "heartbeat": [], "result": []}
        self.pending_commands: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        app = Starlette(routes=[
            Route("/v1/telemetry", self._message("telemetry"), methods=["POST"]),
            Route("/v1/heartbeat", self._message("heartbeat"), methods=["POST"]),
            Route("/v1/commands/result", self._message("result"), methods=["POST"]),
            Route("/v1/commands", self._commands, methods=["GET"]),
        ])
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", ssl_certfile=str(cert),
            ssl_keyfile=str(key), ssl_ca_certs=str(ca), ssl_cert_reqs=ssl.CERT_REQUIRED,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _message(self, kind: str) -> Any:
        async def handle(request: Request) -> Response:
            body = await request.body()
            try:
                message = decode_message(body, request.headers.get("content-type", ""))
            except MessageRejectedError as exc:
                return JSONResponse({"error": {"code": exc.reason.value, "message": str(exc)}},
                                    status_code=400)
            with self.lock:
                self.received[kind].append(message)
            return Response(status_code=202)

        return handle

    async def _commands(self, request: Request) -> Response:
        with self.lock:
            answered = {r.id for r in self.received["result"]}
            return JSONResponse([c for c in self.pending_commands if c["id"] not in answered])

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise AssertionError("the stub endpoint did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
