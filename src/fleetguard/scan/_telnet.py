"""Telnet: option negotiation, login prompts, and logins confirmed by a command that computes.

Prompt characters prove nothing (a '#' in a banner, a honeypot that accepts anything): a
login or an open shell counts only when ``echo fg$((a+b))x`` comes back with the sum, which
the echoed input itself cannot contain.
"""

from __future__ import annotations

import asyncio
import re
import secrets

from fleetguard.scan._context import ProbeContext
from fleetguard.scan.checks import CheckId
from fleetguard.scan.credentials import Credential, for_service, random_credential
from fleetguard.scan.models import Service, ServiceInfo, Severity

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240

LOGIN_RE = re.compile(rb"(?i)(login|username|user name|user|login as)\s*:\s*$")
PASSWORD_RE = re.compile(rb"(?i)pass(word|code)?\s*:\s*$")
SHELL_RE = re.compile(rb"[#$>%]\s*$")
FAIL_RE = re.compile(rb"(?i)(incorrect|invalid|failed|denied|wrong|bad password)")


class TelnetSession:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.saw_iac = False
        self.text = bytearray()  # all application data received

    def _filter(self, data: bytes) -> bytes:
        out = bytearray()
        i = 0
        replies = bytearray()
        while i < len(data):
            b = data[i]
            if b != IAC:
                out.append(b)
                i += 1
                continue
            self.saw_iac = True
            if i + 1 >= len(data):
                break
            cmd = data[i + 1]
            if cmd in (DO, DONT, WILL, WONT) and i + 2 < len(data):
                opt = data[i + 2]
                if cmd == DO:
                    replies += bytes((IAC, WONT, opt))
                elif cmd == WILL:
                    # accept echo and suppress-go-ahead (plain line mode), refuse the rest
                    replies += bytes((IAC, DO if opt in (1, 3) else DONT, opt))
                i += 3
            elif cmd == SB:
                end = data.find(bytes((IAC, SE)), i)
                i = len(data) if end < 0 else end + 2
            elif cmd == IAC:
                out.append(IAC)
                i += 2
            else:
                i += 2
        if replies:
            self.writer.write(bytes(replies))
        return bytes(out)

    async def read_until(self, patterns: tuple[re.Pattern[bytes], ...], timeout: float) -> bytes:
        """Read until the tail of the new data matches one pattern, EOF or timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        got = bytearray()
        while True:
            tail = bytes(got[-200:]).rstrip(b"\x00")
            if any(p.search(tail) for p in patterns):
                return bytes(got)
            left = deadline - loop.time()
            if left <= 0:
                return bytes(got)
            try:
                chunk = await asyncio.wait_for(self.reader.read(4096), left)
            except (TimeoutError, ConnectionError, OSError):
                return bytes(got)
            if not chunk:
                return bytes(got)
            clean = self._filter(chunk)
            got += clean
            self.text += clean

    async def send(self, line: str) -> None:
        self.writer.write(line.encode("latin-1") + b"\r\n")
        await self.writer.drain()

    async def confirm_shell(self, timeout: float) -> str | None:
        """Run a command whose output cannot be an echo; return the proof string."""
        a, b = secrets.randbelow(9000) + 1000, secrets.randbelow(9000) + 1000
        token = f"fg{a + b}x".encode()
        await self.send(f"echo fg$(({a}+{b}))x")
        out = await self.read_until((re.compile(re.escape(token)),), timeout)
        return f"echo fg$(({a}+{b}))x printed {token.decode()}" if token in out else None


def looks_like_telnet(banner: bytes) -> bool:
    if banner[:1] == bytes((IAC,)):
        return True
    tail = banner.rstrip(b"\x00")[-200:]
    return bool(LOGIN_RE.search(tail) or PASSWORD_RE.search(tail) or SHELL_RE.search(tail))


async def check_telnet(ctx: ProbeContext, info: ServiceInfo) -> None:
    t = ctx.timeout
    try:
        async with ctx.net.tcp(info.port) as (reader, writer):
            s = TelnetSession(reader, writer)
            first = await s.read_until((LOGIN_RE, PASSWORD_RE, SHELL_RE), t * 2)
            banner = first.decode("latin-1", "replace")
            info.banner = " ".join(banner.split())[:200] or None
            tail = first.rstrip()[-200:]
            if LOGIN_RE.search(tail) or PASSWORD_RE.search(tail):
                kind = "user" if LOGIN_RE.search(tail) else "password"
            else:
                proof = await s.confirm_shell(t * 2)
                if proof:
                    ctx.finding(
                        info,
                        CheckId.NO_AUTHENTICATION,
                        f"a shell answered without any login: {proof}",
                        severity=Severity.CRITICAL,
                        title="Telnet shell without login",
                    )
                    _cleartext(ctx, info)
                    return
                kind = "unknown"
    except (OSError, TimeoutError):
        ctx.note(info.port, info.transport, CheckId.DEFAULT_CREDENTIALS, "telnet connection failed")
        return
    _cleartext(ctx, info)
    if kind == "unknown":
        ctx.note(
            info.port,
            info.transport,
            CheckId.DEFAULT_CREDENTIALS,
            "no login prompt and no working shell recognised: not checked",
        )
        return
    if not ctx.options.credentials:
        return
    budget = ctx.budget(info.service)
    async for cred in budget.attempts(for_service(ctx.credentials, Service.TELNET)):
        outcome, proof = await _try_login(ctx, info.port, cred, kind)
        if outcome == "unconfirmed":
            # It showed something prompt-like after the password but did not run our command:
            # a restricted CLI, a honeypot or a fake shell. Prompts are no proof; stop here.
            ctx.note(
                info.port,
                info.transport,
                CheckId.DEFAULT_CREDENTIALS,
                f"after {cred.username}:<password> the service showed a prompt but did not "
                "run a command; not reported (unconfirmed), further attempts skipped",
            )
            return
        if proof:
            _, rnd_proof = await _try_login(ctx, info.port, random_credential(), kind)
            if rnd_proof:
                ctx.finding(
                    info,
                    CheckId.NO_AUTHENTICATION,
                    f"telnet accepts any user name and password: {proof}",
                    severity=Severity.CRITICAL,
                    title="Telnet accepts any credential",
                )
                return
            ctx.finding(
                info,
                CheckId.DEFAULT_CREDENTIALS,
                f"telnet login with default credential {cred} confirmed: {proof}",
                severity=Severity.CRITICAL,
            )
            return


def _cleartext(ctx: ProbeContext, info: ServiceInfo) -> None:
    ctx.finding(
        info,
        CheckId.CLEARTEXT_PROTOCOL,
        "telnet: logins and sessions cross the network unencrypted",
        severity=Severity.HIGH,
        title="Telnet exposed",
    )


async def _try_login(
    ctx: ProbeContext, port: int, cred: Credential, kind: str
) -> tuple[str, str | None]:
    """("failed" | "unconfirmed" | "confirmed", proof)."""
    t = ctx.timeout
    try:
        async with ctx.net.tcp(port) as (reader, writer):
            s = TelnetSession(reader, writer)
            got = await s.read_until((LOGIN_RE, PASSWORD_RE), t * 2)
            if kind == "user":
                if not LOGIN_RE.search(got.rstrip()[-200:]):
                    return "failed", None
                await s.send(cred.username)
                got = await s.read_until((PASSWORD_RE, LOGIN_RE, SHELL_RE), t * 2)
                if PASSWORD_RE.search(got.rstrip()[-200:]):
                    await s.send(cred.password)
                elif LOGIN_RE.search(got.rstrip()[-200:]):
                    return "failed", None
                # else: no password asked; fall through to the proof
            else:
                await s.send(cred.password)
            after = await s.read_until((LOGIN_RE, PASSWORD_RE, SHELL_RE), t * 2)
            tail = after.rstrip()[-200:]
            if LOGIN_RE.search(tail) or PASSWORD_RE.search(tail):
                return "failed", None
            if FAIL_RE.search(after) and not SHELL_RE.search(tail):
                return "failed", None
            proof = await s.confirm_shell(t * 2)
            return ("confirmed", proof) if proof else ("unconfirmed", None)
    except (OSError, TimeoutError):
        return "failed", None
