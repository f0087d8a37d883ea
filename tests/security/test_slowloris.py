"""Slowloris, slow bodies, idle and connection floods against a real `fleetguard serve`.

The server runs as a process with its open-file limit lowered to 2,048 (hard), as on a
small host, so that a flood that used up the process's descriptors would show. Deadlines
are the defaults (10 s); the bounds below are generous since CI machines are busy.
"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fleetguard.server.connections.limits import DEVICE_ENDPOINT, OPERATOR_API
from tests.integration.server import FLEETGUARD, run_cli
from tests.processes import free_port, stop_process
from tests.support import code_for, secret_from_uri

pytestmark = pytest.mark.process

SERVER_FILES = 2048
#: A deadline of 10 s must have struck by then, however busy the machine.
DROPPED_WITHIN_S = 45.0


@dataclass
class Server:
    data_dir: Path
    port: int
    device_port: int
    admin_password: str
    log_path: Path

    @property
    def bundle(self) -> str:
        return str(self.data_dir / "ca" / "bundle.pem")

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.bundle)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _lower_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_FILES, SERVER_FILES))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("slowloris")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("FLEETGUARD_")}
    data_dir = tmp / "data"
    init = run_cli("init", "--data-dir", str(data_dir), env=env)
    assert init.returncode == 0, init.stderr + init.stdout
    password = next(line.removeprefix("admin password: ")
                    for line in init.stdout.splitlines() if line.startswith("admin password: "))
    port, device_port = free_port(), free_port()
    log_path = tmp / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*FLEETGUARD, "serve", "--data-dir", str(data_dir), "--port", str(port),
             "--device-port", str(device_port), "--log-format", "json"],
            env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_lower_open_files,
        )
    running = Server(data_dir, port, device_port, password, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"server exited:\n{running.log_text()}"
            try:
                httpx.get(f"https://127.0.0.1:{port}/healthz", verify=running.tls(), timeout=2)
                httpx.get(f"https://127.0.0.1:{device_port}/v1/ca.pem", verify=running.tls(),
                          timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, f"server did not start:\n{running.log_text()}"
                time.sleep(0.2)
        yield running
        assert process.poll() is None, f"the server died:\n{running.log_text()}"
        assert "Traceback" not in running.log_text(), running.log_text()
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def totp_secret(server: Server) -> str:
    """The admin's second factor, enrolled once: password -> challenge -> TOTP confirmed."""
    with httpx.Client(base_url=f"https://127.0.0.1:{server.port}", verify=server.tls()) as c:
        r = c.post("/api/v1/auth/login",
                   json={"username": "admin", "password": server.admin_password})
        challenge = r.json()["challenge"]
        uri = c.post("/api/v1/auth/mfa/enroll", json={"challenge": challenge}).json()
        secret = secret_from_uri(uri["otpauth_uri"])
        r = c.post("/api/v1/auth/mfa/enroll/confirm",
                   json={"challenge": challenge, "code": code_for(secret)})
        assert r.status_code == 200, r.text
    return secret


def _open_files_for_the_test(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"this test holds {needed} sockets; the open-file limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _tls_connect(server: Server, port: int, source: str = "127.0.0.1") -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return server.tls().wrap_socket(raw, server_hostname="127.0.0.1")


def _until_closed(sock: socket.socket, *, trickle: bytes | None, every_s: float = 1.0
                  ) -> tuple[float, bytes]:
    """Send ``trickle`` every ``every_s`` (or nothing) until the server closes the connection.

    Returns the seconds it took and what the server sent. Fails after DROPPED_WITHIN_S.
    """
    start = time.monotonic()
    received = b""
    sock.settimeout(every_s)
    while time.monotonic() - start < DROPPED_WITHIN_S:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if trickle:
                try:
                    sock.sendall(trickle)
                except OSError:
                    return time.monotonic() - start, received
            continue
        except (OSError, ssl.SSLError):
            return time.monotonic() - start, received
        if not chunk:
            return time.monotonic() - start, received
        received += chunk
    raise AssertionError(f"still open after {DROPPED_WITHIN_S:.0f} s; received {received!r}")


Attack = Callable[[int], tuple[float, bytes]]


def _on_both_listeners(server: Server, *attacks: Attack) -> dict[tuple[str, str], bytes]:
    """Run each attack against the operator API and the device endpoint, all at once.

    Returns what the server sent before it closed, by (attack, listener).
    """
    ports = {"operator API": server.port, "device endpoint": server.device_port}
    with ThreadPoolExecutor(len(ports) * len(attacks)) as pool:
        futures = {(attack.__name__, name): pool.submit(attack, port)
                   for attack in attacks for name, port in ports.items()}
        return {key: future.result()[1] for key, future in futures.items()}


def _error_code(response: bytes) -> tuple[int, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]["code"]


def test_slowloris_half_sent_headers_are_dropped(server: Server) -> None:
    def attack(port: int) -> tuple[float, bytes]:
        with _tls_connect(server, port) as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            return _until_closed(tls, trickle=b"a")  # one header byte a second, for ever

    for name, response in _on_both_listeners(server, attack).items():
        assert _error_code(response) == (408, "request_timeout"), (name, response)


def test_trickled_body_is_dropped(server: Server) -> None:
    paths = {server.port: b"/api/v1/auth/login", server.device_port: b"/v1/enroll"}

    def attack(port: int) -> tuple[float, bytes]:
        with _tls_connect(server, port) as tls:
            tls.sendall(b"POST " + paths[port] + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
            return _until_closed(tls, trickle=b" ")  # one body byte a second

    for name, response in _on_both_listeners(server, attack).items():
        assert _error_code(response) == (408, "request_timeout"), (name, response)


def test_idle_connections_are_dropped(server: Server) -> None:
    """Silent after TCP (no TLS handshake), silent after TLS, silent after one request."""

    def silent_tcp(port: int) -> tuple[float, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            return _until_closed(raw, trickle=None)

    def silent_tls(port: int) -> tuple[float, bytes]:
        with _tls_connect(server, port) as tls:
            return _until_closed(tls, trickle=None)

    def idle_keep_alive(port: int) -> tuple[float, bytes]:
        with _tls_connect(server, port) as tls:
            path = b"/healthz" if port == server.port else b"/v1/ca.pem"
            tls.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            return _until_closed(tls, trickle=None)

    results = _on_both_listeners(server, silent_tcp, silent_tls, idle_keep_alive)
    for (attack, listener), received in results.items():
        if attack == "idle_keep_alive":
            assert received.startswith(b"HTTP/1.1 200 "), (attack, listener, received)
        else:
            assert received == b"", (attack, listener, received)


def test_oversized_header_block_is_refused(server: Server) -> None:
    def attack(port: int) -> tuple[float, bytes]:
        with _tls_connect(server, port) as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            for _ in range(66):  # just over 64 KiB of headers, never ending the block
                tls.sendall(b"X-Pad: " + b"a" * 1024 + b"\r\n")
            return _until_closed(tls, trickle=None)

    for name, response in _on_both_listeners(server, attack).items():
        assert _error_code(response) == (431, "headers_too_large"), (name, response)


@pytest.mark.parametrize("listener", ["operator API", "device endpoint"])
def test_connections_beyond_the_per_address_limit_are_refused_while_others_are_served(
    server: Server, listener: str,
) -> None:
    port = server.port if listener == "operator API" else server.device_port
    limit = (OPERATOR_API if listener == "operator API" else DEVICE_ENDPOINT).max_per_address
    path = "/healthz" if listener == "operator API" else "/v1/ca.pem"
    _open_files_for_the_test(limit + 256)
    with contextlib.ExitStack() as held:
        for _ in range(limit):
            held.enter_context(socket.create_connection(
                ("127.0.0.1", port), timeout=10, source_address=("127.0.0.2", 0)))
        time.sleep(0.5)  # all accepted and counted
        # One more from the same address is closed before TLS; the held ones are counted.
        with pytest.raises((ssl.SSLError, OSError)):
            _tls_connect(server, port, source="127.0.0.2").close()
        # Another address is served as usual.
        transport = httpx.HTTPTransport(verify=server.tls(), local_address="127.0.0.3")
        with httpx.Client(transport=transport, timeout=20) as other:
            assert other.get(f"https://127.0.0.1:{port}{path}").status_code == 200


def test_flood_held_on_the_device_listener_does_not_stop_an_operator_login(
    server: Server, totp_secret: str,
) -> None:
    # More connections than the whole server process may open, from five addresses (each
    # within its per-address share): without per-listener caps they take every descriptor.
    flood = SERVER_FILES + 500
    _open_files_for_the_test(flood + 256)
    per_address = min(DEVICE_ENDPOINT.max_per_address, 500)
    with contextlib.ExitStack() as held:
        for i in range(flood):
            source = f"127.0.1.{i // per_address + 1}"
            with contextlib.suppress(OSError):  # refused ones may be reset at once
                held.enter_context(socket.create_connection(
                    ("127.0.0.1", server.device_port), timeout=10, source_address=(source, 0)))
        time.sleep(0.5)
        with httpx.Client(base_url=f"https://127.0.0.1:{server.port}", verify=server.tls(),
                          timeout=20) as operator:
            r = operator.post("/api/v1/auth/login",
                              json={"username": "admin", "password": server.admin_password})
            assert r.status_code == 200 and r.json()["step"] == "mfa_required", r.text
            r = operator.post("/api/v1/auth/mfa", json={
                "challenge": r.json()["challenge"], "code": code_for(totp_secret, 1)})
            assert r.status_code == 200 and r.json()["step"] == "done", r.text
            assert operator.get("/api/v1/me").status_code == 200
        # The device endpoint itself still serves: a real client makes room by closing the
        # connection that has waited longest on its client.
        r = httpx.get(f"https://127.0.0.1:{server.device_port}/v1/ca.pem", verify=server.tls(),
                      timeout=20)
        assert r.status_code == 200


def _tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of a socket (Linux TCP_INFO): 1 established, 7 closed."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="needs Linux TCP_INFO")
def test_slow_read_a_response_never_taken_is_cut(server: Server) -> None:
    """Pipelined requests whose answers are never read (no authentication needed)."""

    def attack(port: int) -> tuple[float, bytes]:
        path = b"/healthz" if port == server.port else b"/v1/ca.pem"
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
        raw.settimeout(10)
        raw.connect(("127.0.0.1", port))
        with server.tls().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.settimeout(2)
            # Answers well beyond what the kernel buffers on both sides (a few MB).
            with contextlib.suppress(OSError):  # the server stops reading us: enough
                for _ in range(2000):
                    tls.sendall((b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") * 10)
            # Never read; watch the connection's state in the kernel instead.
            start = time.monotonic()
            while _tcp_state(tls) == 1:
                assert time.monotonic() - start < OPERATOR_API.send_timeout_s + DROPPED_WITHIN_S, (
                    "the server still sends to a client that reads nothing")
                time.sleep(0.5)
            return time.monotonic() - start, b""

    _on_both_listeners(server, attack)
