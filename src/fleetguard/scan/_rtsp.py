"""RTSP: OPTIONS for identification, DESCRIBE on common stream paths, Basic/Digest defaults."""

from __future__ import annotations

import re
import ssl

from fleetguard.scan._context import ProbeContext
from fleetguard.scan._http import (
    Response,
    basic_header,
    digest_header,
    parse_response,
    product_from_server,
)
from fleetguard.scan._net import insecure_tls_context, read_until
from fleetguard.scan.checks import CheckId
from fleetguard.scan.credentials import Credential, for_service, random_credential
from fleetguard.scan.models import Service, ServiceInfo, Severity

#: Stream paths of common cameras/DVRs (public facts, e.g. vendor manuals); "/" first.
ROUTES = (
    "/",
    "/live",
    "/live.sdp",
    "/stream1",
    "/h264",
    "/Streaming/Channels/101",
    "/cam/realmonitor?channel=1&subtype=0",
    "/11",
    "/ch0_0.h264",
    "/videoMain",
    "/media/video1",
    "/axis-media/media.amp",
)


def _complete(raw: bytes) -> bool:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            try:
                return len(body) >= int(line.split(b":", 1)[1])
            except ValueError:
                return True
    return True


class RtspClient:
    def __init__(self, ctx: ProbeContext, port: int, tls: bool) -> None:
        self.ctx, self.port, self.tls = ctx, port, tls
        host = ctx.net.name or ctx.net.address
        self.base = f"rtsp://{'[' + host + ']' if ':' in host else host}:{port}"
        self.cseq = 0

    async def request(self, method: str, path: str, auth: str | None = None) -> Response | None:
        self.cseq += 1
        url = self.base + ("" if path == "/" else path)
        if path == "/":
            url += "/"
        lines = [
            f"{method} {url} RTSP/1.0",
            f"CSeq: {self.cseq}",
            "User-Agent: fleetguard-scan/0.1",
        ]
        if method == "DESCRIBE":
            lines.append("Accept: application/sdp")
        if auth:
            lines.append(f"Authorization: {auth}")
        tls_ctx: ssl.SSLContext | None = insecure_tls_context() if self.tls else None
        try:
            async with self.ctx.net.tcp(self.port, tls=tls_ctx) as (reader, writer):
                writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
                await writer.drain()
                raw = await read_until(reader, _complete, self.ctx.timeout * 2)
        except (OSError, TimeoutError, ssl.SSLError):
            return None
        resp = parse_response(raw)
        return resp if resp is not None and resp.proto == "RTSP" else None

    def url(self, path: str) -> str:
        return self.base + ("/" if path == "/" else path)


async def probe(ctx: ProbeContext, port: int, tls: bool) -> Response | None:
    return await RtspClient(ctx, port, tls).request("OPTIONS", "/")


async def _describe(client: RtspClient, path: str, cred: Credential | None) -> int | None:
    if cred is None:
        r = await client.request("DESCRIBE", path)
        return r.status if r else None
    first = await client.request("DESCRIBE", path)
    if first is None:
        return None
    if first.status != 401:
        return first.status
    for h in first.all("www-authenticate"):
        scheme, _, rest = h.partition(" ")
        if scheme.lower() == "digest":
            params = {
                k.lower(): v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', rest)
            }
            auth = digest_header(params, cred.username, cred.password, "DESCRIBE", client.url(path))
            break
    else:
        auth = basic_header(cred.username, cred.password)
    r = await client.request("DESCRIBE", path, auth)
    return r.status if r else None


async def check_rtsp(ctx: ProbeContext, info: ServiceInfo, options: Response | None) -> None:
    client = RtspClient(ctx, info.port, info.tls)
    server = options.header("server") if options is not None else None
    if server:
        info.banner = server[:200]
        info.product, info.version = product_from_server(server)
    protected = await _find_protected_stream(ctx, info, client)
    if protected is not None and ctx.options.credentials:
        await _try_default_credentials(ctx, info, client, protected)


async def _find_protected_stream(
    ctx: ProbeContext, info: ServiceInfo, client: RtspClient
) -> str | None:
    """The first common stream path that asks for credentials; an open stream is a finding."""
    for path in ROUTES:
        status = await _describe(client, path, None)
        if status == 200:
            ctx.finding(
                info,
                CheckId.NO_AUTHENTICATION,
                f"DESCRIBE {client.url(path)} returned 200 with a stream description "
                "and no authentication",
                severity=Severity.HIGH,
                title="RTSP stream without authentication",
            )
            return None
        if status == 401:
            return path
    ctx.note(
        info.port,
        info.transport,
        CheckId.NO_AUTHENTICATION,
        f"no stream found on {len(ROUTES)} common paths",
    )
    return None


async def _try_default_credentials(
    ctx: ProbeContext, info: ServiceInfo, client: RtspClient, protected: str
) -> None:
    budget = ctx.budget(Service.RTSP)
    async for cred in budget.attempts(for_service(ctx.credentials, Service.RTSP)):
        if await _describe(client, protected, cred) != 200:
            continue
        if await _describe(client, protected, random_credential()) == 200:
            ctx.finding(
                info,
                CheckId.NO_AUTHENTICATION,
                f"{client.url(protected)} accepts any credential",
                title="RTSP accepts any credential",
            )
            return
        ctx.finding(
            info,
            CheckId.DEFAULT_CREDENTIALS,
            f"DESCRIBE {client.url(protected)} with default credential {cred} "
            "returned 200; a random credential gets 401",
            severity=Severity.CRITICAL,
        )
        return
