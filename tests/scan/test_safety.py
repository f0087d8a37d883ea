"""Safety: attempt caps, --no-credentials, scope, and honest port states (loopback only)."""

from __future__ import annotations

import asyncio
import itertools
import socket

from fleetguard.protocol.scan_report import PortState
from fleetguard.scan import Service, build_options, report_document, run_scan

from . import lab as L


def test_login_attempts_are_capped_and_spaced() -> None:
    lb = L.Lab()
    seen: list[float] = []
    inner = L.telnet_login(L.random_cred())

    async def counting(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen.append(asyncio.get_running_loop().time())
        await inner(r, w)

    try:
        port = lb.tcp("127.0.0.71", counting)
        report = run_scan(
            build_options(
                ["127.0.0.71"], ports=str(port), timeout=1.0, max_logins=3, login_delay=0.2
            )
        )
    finally:
        lb.close()
    # connect scan + banner + check connection + exactly 3 login attempts
    assert len(seen) == 6, len(seen)
    logins = seen[-3:]
    assert all(b - a >= 0.18 for a, b in itertools.pairwise(logins))
    assert not [f for f in report.findings if f.check == "default-credentials"]


def test_no_credentials_never_logs_in() -> None:
    lb = L.Lab()
    users: list[str] = []

    def app(req: L.Request) -> bytes:
        if "authorization" in req.headers:
            users.append(req.headers["authorization"])
        return L.basic_auth_app(L.default_cred(Service.HTTP, 0))(req)

    try:
        port = lb.tcp("127.0.0.72", L.http_server(app))
        snmp = lb.udp("127.0.0.72", L.snmp_agent("public", "x"))
        report = run_scan(
            build_options(["127.0.0.72"], ports=f"{port},U:{snmp}", timeout=0.5, credentials=False)
        )
    finally:
        lb.close()
    assert users == []
    checks = {f.check for f in report.findings}
    assert "default-credentials" not in checks and "snmp-default-community" not in checks
    assert "cleartext-protocol" in checks  # still reported: no login needed to see it
    assert any("--no-credentials" in n.reason for n in report.notes)


def test_port_states_are_reported_not_dropped() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.73", 0))  # open UDP port that never answers
    closed = socket.socket()
    closed.bind(("127.0.0.73", 0))  # bound, not listening: RST
    try:
        report = run_scan(
            build_options(
                ["127.0.0.73"],
                ports=f"T:{closed.getsockname()[1]},U:{silent.getsockname()[1]}",
                timeout=0.3,
            )
        )
    finally:
        silent.close()
        closed.close()
    host = report.hosts[0]
    states = {(p.transport.value, p.state) for p in host.ports}
    assert ("udp", PortState.OPEN_FILTERED) in states
    assert ("tcp", PortState.CLOSED) in states
    doc = report_document(report)["hosts"][0]
    assert doc["counts"]["closed"] == 1 and doc["counts"]["open|filtered"] == 1
    assert doc["ports"][0]["state"] == "open|filtered" and doc["ports"][0]["reason"]


def test_upnp_description_on_another_host_is_not_fetched() -> None:
    lb = L.Lab()
    hits: list[str] = []

    def app(req: L.Request) -> bytes:
        hits.append(req.path)
        return L.http_response(200, L.DEVICE_XML.format(serial="1", uuid="2"))

    try:
        other = lb.tcp("127.0.0.75", L.http_server(app))
        udp = lb.udp("127.0.0.74", L.ssdp_responder(f"http://127.0.0.75:{other}/d.xml"))
        report = run_scan(build_options(["127.0.0.74"], ports=f"U:{udp}", timeout=0.5))
    finally:
        lb.close()
    assert hits == []
    assert any(f.check == "upnp-exposed" for f in report.findings)
    assert any("out of scope" in n.reason for n in report.notes)


def test_ipv6_loopback() -> None:
    lb = L.Lab()
    try:
        port = lb.tcp("::1", L.telnet_login(L.default_cred(Service.TELNET, 0)))
        report = run_scan(build_options(["::1"], ports=str(port), timeout=1.0, login_delay=0))
    finally:
        lb.close()
    assert {f.check for f in report.findings} >= {"default-credentials", "cleartext-protocol"}
    assert report.findings[0].host == "::1"
