"""MQTT 3.1.1: CONNECT/CONNACK for identification, anonymous access and default credentials."""

from __future__ import annotations

import asyncio
import secrets
import ssl
import struct

from fleetguard.scan._context import ProbeContext
from fleetguard.scan._net import insecure_tls_context, read_until
from fleetguard.scan.checks import CheckId
from fleetguard.scan.credentials import for_service, random_credential
from fleetguard.scan.models import Service, ServiceInfo, Severity

CONNACK_CODES = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("!H", len(b)) + b


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(username: str | None = None, password: str | None = None) -> bytes:
    flags = 0x02
    payload = _str("fg-scan-" + secrets.token_hex(4))
    if username is not None:
        flags |= 0x80
        payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    var = _str("MQTT") + bytes((4, flags)) + struct.pack("!H", 30)
    body = var + payload
    return b"\x10" + _remaining_length(len(body)) + body


def parse_connack(data: bytes) -> int | None:
    if len(data) >= 4 and data[0] == 0x20 and data[1] == 0x02:
        return data[3]
    return None


async def connect(
    ctx: ProbeContext,
    port: int,
    tls: bool,
    username: str | None = None,
    password: str | None = None,
    *,
    version_topic: bool = False,
) -> tuple[int | None, str | None]:
    """CONNACK return code (None: not MQTT / no answer), and the broker version if asked."""
    tls_ctx: ssl.SSLContext | None = insecure_tls_context() if tls else None
    try:
        async with ctx.net.tcp(port, tls=tls_ctx) as (reader, writer):
            writer.write(connect_packet(username, password))
            await writer.drain()
            data = await read_until(reader, lambda b: len(b) >= 4, ctx.timeout)
            rc = parse_connack(data)
            version = None
            if rc == 0 and version_topic:
                topic = _str("$SYS/broker/version")
                body = struct.pack("!H", 1) + topic + b"\x00"
                writer.write(b"\x82" + _remaining_length(len(body)) + body)
                await writer.drain()
                got = await read_until(
                    reader,
                    lambda b: (
                        b"$SYS/broker/version" in b and not b.endswith(b"$SYS/broker/version")
                    ),
                    min(ctx.timeout, 1.0),
                )
                idx = got.find(b"$SYS/broker/version")
                if idx >= 0:
                    version = got[idx + len(b"$SYS/broker/version") :][:80].decode(
                        "utf-8", "replace"
                    )
                    version = version.strip() or None
                writer.write(b"\xe0\x00")  # DISCONNECT
            return rc, version
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ssl.SSLError):
        return None, None


async def check_mqtt(ctx: ProbeContext, info: ServiceInfo, anonymous_rc: int | None) -> None:
    rc = anonymous_rc
    if rc is None:
        rc, _ = await connect(ctx, info.port, info.tls)
    if rc is None:
        ctx.note(
            info.port, info.transport, CheckId.NO_AUTHENTICATION, "MQTT broker stopped answering"
        )
        return
    info.extra["anonymous_connack"] = CONNACK_CODES.get(rc, str(rc))
    if not info.tls:
        ctx.finding(
            info,
            CheckId.CLEARTEXT_PROTOCOL,
            "MQTT without TLS: credentials and messages cross the network unencrypted",
            title="MQTT without TLS",
        )
    if rc == 0:
        _, version = await connect(ctx, info.port, info.tls, version_topic=True)
        if version:
            info.banner = version[:120]
            name, _, ver = version.partition(" version ")
            info.product = name.strip() or None
            info.version = ver.strip() or None
        ctx.finding(
            info,
            CheckId.NO_AUTHENTICATION,
            "CONNECT without user name or password was accepted (CONNACK 0)",
            severity=Severity.HIGH,
            title="MQTT broker accepts anonymous clients",
        )
        return
    if rc not in (4, 5) or not ctx.options.credentials:
        return
    budget = ctx.budget(Service.MQTT)
    async for cred in budget.attempts(for_service(ctx.credentials, Service.MQTT)):
        got, _ = await connect(ctx, info.port, info.tls, cred.username, cred.password)
        if got == 0:
            rnd = random_credential()
            if (await connect(ctx, info.port, info.tls, rnd.username, rnd.password))[0] == 0:
                ctx.finding(
                    info,
                    CheckId.NO_AUTHENTICATION,
                    "any user name and password is accepted (a random one got CONNACK 0)",
                    title="MQTT broker accepts any credential",
                )
                return
            ctx.finding(
                info,
                CheckId.DEFAULT_CREDENTIALS,
                f"CONNECT with default credential {cred} accepted (CONNACK 0); "
                f"anonymous gets {CONNACK_CODES.get(rc, rc)}",
                severity=Severity.CRITICAL,
            )
            return
