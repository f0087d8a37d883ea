"""Identify the protocol on an open TCP port by what it answers, not by its number.

The port number only orders the probes (a web port is asked HTTP first, an unknown port is
first left to speak), the protocol is always confirmed by a valid answer.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from fleetguard.protocol.models import TransportProto
from fleetguard.scan import _ftp, _http, _mqtt, _rtsp, _ssh, _telnet, _tls
from fleetguard.scan._context import ProbeContext
from fleetguard.scan._net import insecure_tls_context, printable, read_some
from fleetguard.scan.models import Service, ServiceInfo

HTTP_FIRST = frozenset({80, 81, 88, 5000, 7547, 8000, 8008, 8080, 8081, 8088, 8888, 9000, 49152})
TLS_FIRST = frozenset({443, 4443, 8443, 8883, 322, 5443, 7443, 9443})
RTSP_FIRST = frozenset({554, 8554, 322, 10554})
MQTT_FIRST = frozenset({1883, 8883})


@dataclass(slots=True)
class Identified:
    info: ServiceInfo
    http: _http.Response | None = None
    rtsp: _http.Response | None = None
    mqtt_rc: int | None = None


def _order(port: int) -> list[str]:
    if port in TLS_FIRST:
        return ["tls", "http", "mqtt", "rtsp", "banner"]
    if port in RTSP_FIRST:
        return ["rtsp", "banner", "http", "tls", "mqtt"]
    if port in MQTT_FIRST:
        return ["mqtt", "banner", "http", "tls", "rtsp"]
    if port in HTTP_FIRST:
        return ["http", "banner", "tls", "rtsp", "mqtt"]
    return ["banner", "http", "tls", "rtsp", "mqtt"]


async def _banner(ctx: ProbeContext, port: int) -> bytes:
    try:
        async with ctx.net.tcp(port) as (reader, _writer):
            return await read_some(reader, min(1.0, ctx.timeout), 4096)
    except (OSError, TimeoutError):
        return b""


async def _tls_ok(ctx: ProbeContext, port: int) -> bool:
    try:
        async with ctx.net.tcp(port, tls=insecure_tls_context()):
            return True
    except (OSError, TimeoutError, ssl.SSLError):
        return False


async def _inner(ctx: ProbeContext, port: int) -> Identified:
    order = (
        ["mqtt", "http", "rtsp"]
        if port in MQTT_FIRST
        else (["rtsp", "http", "mqtt"] if port in RTSP_FIRST else ["http", "mqtt", "rtsp"])
    )
    for step in order:
        if step == "http" and (r := await _http.probe(ctx, port, True)) is not None:
            info = ServiceInfo(port, TransportProto.TCP, Service.HTTPS, tls=True)
            return Identified(info, http=r)
        if step == "mqtt":
            rc, _ = await _mqtt.connect(ctx, port, True)
            if rc is not None:
                return Identified(
                    ServiceInfo(port, TransportProto.TCP, Service.MQTT, tls=True), mqtt_rc=rc
                )
        if step == "rtsp" and (r := await _rtsp.probe(ctx, port, True)) is not None:
            return Identified(ServiceInfo(port, TransportProto.TCP, Service.RTSP, tls=True), rtsp=r)
    return Identified(ServiceInfo(port, TransportProto.TCP, Service.TLS, tls=True))


def _by_banner(port: int, data: bytes) -> Identified | None:
    if _ssh.looks_like_ssh(data):
        info = ServiceInfo(port, TransportProto.TCP, Service.SSH)
        _ssh.parse_banner(info, data)
        return Identified(info)
    if _ftp.looks_like_ftp(data):
        info = ServiceInfo(port, TransportProto.TCP, Service.FTP)
        _ftp.parse_banner(info, data)
        return Identified(info)
    if _telnet.looks_like_telnet(data):
        return Identified(ServiceInfo(port, TransportProto.TCP, Service.TELNET))
    return None


async def _try_tls(ctx: ProbeContext, port: int) -> Identified | None:
    if await _tls_ok(ctx, port):
        return await _inner(ctx, port)
    # A stack the local OpenSSL cannot talk to (SSLv3 only, RC4 only, broken) still
    # answers our own ClientHello with a ServerHello: it is TLS all the same.
    hello = await _tls.send_hello(ctx, port, _tls.TLS12, _tls.BROAD_SUITES)
    if hello.version is None:
        return None
    info = ServiceInfo(port, TransportProto.TCP, Service.TLS, tls=True)
    info.extra["tls_note"] = "handshake impossible with the local TLS library"
    return Identified(info)


async def _try_cleartext(ctx: ProbeContext, port: int, step: str) -> Identified | None:
    if step == "http" and (r := await _http.probe(ctx, port, False)) is not None:
        return Identified(ServiceInfo(port, TransportProto.TCP, Service.HTTP), http=r)
    if step == "rtsp" and (r := await _rtsp.probe(ctx, port, False)) is not None:
        return Identified(ServiceInfo(port, TransportProto.TCP, Service.RTSP), rtsp=r)
    if step == "mqtt":
        rc, _ = await _mqtt.connect(ctx, port, False)
        if rc is not None:
            return Identified(ServiceInfo(port, TransportProto.TCP, Service.MQTT), mqtt_rc=rc)
    return None


async def identify(ctx: ProbeContext, port: int) -> Identified:
    seen_banner = b""
    for step in _order(port):
        found: Identified | None
        if step == "banner":
            data = await _banner(ctx, port)
            seen_banner = data or seen_banner
            found = _by_banner(port, data) if data else None
        elif step == "tls":
            found = await _try_tls(ctx, port)
        else:
            found = await _try_cleartext(ctx, port, step)
        if found is not None:
            return found
    info = ServiceInfo(port, TransportProto.TCP, Service.UNKNOWN)
    if seen_banner:
        info.banner = printable(seen_banner) or None
    return Identified(info)
