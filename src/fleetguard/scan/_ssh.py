"""SSH: version banner, and default-credential logins confirmed by running a command.

Logins need an SSH client; we use ``asyncssh`` when it is installed (optional dependency).
Without it the credential check is reported as not run, never silently skipped.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

from fleetguard.scan._context import ProbeContext
from fleetguard.scan.checks import CheckId
from fleetguard.scan.credentials import Credential, for_service, random_credential
from fleetguard.scan.models import Service, ServiceInfo, Severity

try:  # pragma: no cover - depends on the environment
    import asyncssh

    HAVE_ASYNCSSH = True
except ImportError:  # pragma: no cover
    HAVE_ASYNCSSH = False


def looks_like_ssh(banner: bytes) -> bool:
    return banner.startswith(b"SSH-")


def parse_banner(info: ServiceInfo, banner: bytes) -> None:
    line = banner.split(b"\n", 1)[0].decode("latin-1", "replace").strip()
    info.banner = line[:200]
    m = re.match(r"SSH-[\d.]+-([^\s_-]+)[_-]?([\w.]+)?", line)
    if m:
        info.product = m.group(1)
        info.version = m.group(2)


async def _try(ctx: ProbeContext, port: int, cred: Credential) -> str | None:
    a, b = secrets.randbelow(9000) + 1000, secrets.randbelow(9000) + 1000
    token = f"fg{a + b}x"
    opts: dict[str, Any] = {
        "username": cred.username,
        "password": cred.password,
        "known_hosts": None,
        "client_keys": None,
        "agent_path": None,
        "preferred_auth": "password,keyboard-interactive",
        "connect_timeout": ctx.timeout * 2,
        "login_timeout": ctx.timeout * 3,
    }
    try:
        async with ctx.net.gate.slot():
            ctx.net.probes_sent[0] += 1
            conn = await asyncio.wait_for(
                asyncssh.connect(ctx.net.address, port, **opts), ctx.timeout * 4
            )
            async with conn:
                result = await asyncio.wait_for(
                    conn.run(f"echo fg$(({a}+{b}))x", check=False), ctx.timeout * 3
                )
                out = str(result.stdout or "")
    except (OSError, TimeoutError, asyncssh.Error):
        return None
    return f"command echo fg$(({a}+{b}))x printed {token}" if token in out else None


async def check_ssh(ctx: ProbeContext, info: ServiceInfo) -> None:
    if not ctx.options.credentials:
        return
    if not HAVE_ASYNCSSH:
        ctx.note(
            info.port,
            info.transport,
            CheckId.DEFAULT_CREDENTIALS,
            "SSH logins not checked: install the optional 'asyncssh' package",
        )
        return
    budget = ctx.budget(Service.SSH)
    async for cred in budget.attempts(for_service(ctx.credentials, Service.SSH)):
        proof = await _try(ctx, info.port, cred)
        if proof:
            if await _try(ctx, info.port, random_credential()):
                ctx.finding(
                    info,
                    CheckId.NO_AUTHENTICATION,
                    f"SSH accepts any user name and password: {proof}",
                    severity=Severity.CRITICAL,
                    title="SSH accepts any credential",
                )
                return
            ctx.finding(
                info,
                CheckId.DEFAULT_CREDENTIALS,
                f"SSH login with default credential {cred} confirmed: {proof}",
                severity=Severity.CRITICAL,
            )
            return
