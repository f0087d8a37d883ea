"""FTP: banner, anonymous login, default credentials (a login counts on 230 plus a working PWD)."""

from __future__ import annotations

import asyncio
import re

from fleetguard.scan._context import ProbeContext
from fleetguard.scan._net import read_until
from fleetguard.scan.checks import CheckId
from fleetguard.scan.credentials import Credential, for_service, random_credential
from fleetguard.scan.models import Service, ServiceInfo, Severity

_REPLY_END = re.compile(rb"(?m)^\d{3} [^\r\n]*\r?\n\Z")


def looks_like_ftp(banner: bytes) -> bool:
    return banner.startswith(b"220") and b"SMTP" not in banner.upper()


def parse_banner(info: ServiceInfo, banner: bytes) -> None:
    text = banner.decode("latin-1", "replace").strip()
    info.banner = " ".join(text.split())[:200]
    m = re.search(
        r"\(?(vsFTPd|ProFTPD|Pure-FTPd|FileZilla Server|BusyBox|GNU inetutils)[ /]?([\w.\-]*)",
        text,
        re.I,
    )
    if m:
        info.product = m.group(1)
        info.version = m.group(2) or None


async def _reply(reader: asyncio.StreamReader, timeout: float) -> tuple[int, str]:
    data = await read_until(reader, lambda b: bool(_REPLY_END.search(b)), timeout)
    lines = data.decode("latin-1", "replace").strip().splitlines()
    if not lines or not lines[-1][:3].isdigit():
        return 0, ""
    return int(lines[-1][:3]), lines[-1]


async def try_login(ctx: ProbeContext, port: int, user: str, password: str) -> str | None:
    """Proof string if USER/PASS gives 230 and PWD then answers 257."""
    t = ctx.timeout
    try:
        async with ctx.net.tcp(port) as (reader, writer):
            code, _ = await _reply(reader, t * 2)
            if code != 220:
                return None
            writer.write(f"USER {user}\r\n".encode("latin-1"))
            code, _ = await _reply(reader, t * 2)
            if code == 331:
                writer.write(f"PASS {password}\r\n".encode("latin-1"))
                code, _ = await _reply(reader, t * 2)
            if code != 230:
                return None
            writer.write(b"PWD\r\n")
            code, line = await _reply(reader, t * 2)
            if code != 257:
                return None
            writer.write(b"QUIT\r\n")
            return f"230 logged in, PWD answered {line[:80]!r}"
    except (OSError, TimeoutError):
        return None


async def check_ftp(ctx: ProbeContext, info: ServiceInfo) -> None:
    ctx.finding(
        info,
        CheckId.CLEARTEXT_PROTOCOL,
        "FTP: credentials and files cross the network unencrypted",
        title="FTP exposed",
    )
    proof = await try_login(ctx, info.port, "anonymous", "fleetguard-scan@example.invalid")
    if proof:
        ctx.finding(
            info,
            CheckId.NO_AUTHENTICATION,
            f"anonymous FTP login accepted: {proof}",
            severity=Severity.MEDIUM,
            title="Anonymous FTP allowed",
        )
        return
    if not ctx.options.credentials:
        return
    budget = ctx.budget(Service.FTP)
    cand: list[Credential] = for_service(ctx.credentials, Service.FTP)
    async for cred in budget.attempts(cand):
        proof = await try_login(ctx, info.port, cred.username, cred.password)
        if proof:
            rnd = random_credential()
            if await try_login(ctx, info.port, rnd.username, rnd.password):
                ctx.finding(
                    info,
                    CheckId.NO_AUTHENTICATION,
                    "FTP accepts any user name and password (a random one logged in)",
                    title="FTP accepts any credential",
                )
                return
            ctx.finding(
                info,
                CheckId.DEFAULT_CREDENTIALS,
                f"FTP login with default credential {cred}: {proof}",
                severity=Severity.CRITICAL,
            )
            return
