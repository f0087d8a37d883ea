"""Runs the commands the server may send, and nothing else.

The allowed set is closed: ``report_now``, ``rotate_certificate``, ``run_checks``
(``fleetguard.protocol.CommandName``). A payload naming anything else is refused by the
decoder before it reaches a handler. Beyond that, a command is refused (status
``rejected``, never run) when it has expired or when its id was already seen (a replay).
A handler that raises or times out gives status ``failed``; the dispatcher itself never
raises for anything the server sends.

The work itself is injected: the transport, the certificate renewal and the posture
checks are wired in by the agent's composition root.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from fleetguard.core.clock import utcnow
from fleetguard.protocol import (
    MAX_DETAIL_CHARS,
    CheckOutcome,
    Command,
    CommandName,
    CommandResult,
    CommandStatus,
    ContentType,
    MessageKind,
    MessageRejectedError,
    RejectionCounter,
    decode_message,
    to_millis,
)

logger = logging.getLogger(__name__)

ReportNow = Callable[[], Awaitable[str | None]]
RotateCertificate = Callable[[], Awaitable[str | None]]
RunChecks = Callable[[Sequence[str] | None], Awaitable[Sequence[CheckOutcome]]]


@dataclass(frozen=True, slots=True)
class CommandHandlers:
    """What each allowed command does. Each returns an optional human detail."""

    report_now: ReportNow
    rotate_certificate: RotateCertificate
    run_checks: RunChecks


class CommandDispatcher:
    """Turns a command into a result: refuse, run with a time limit, or report the failure."""

    def __init__(
        self,
        handlers: CommandHandlers,
        *,
        timeout_s: float = 120.0,
        clock: Callable[[], datetime] = utcnow,
        remember: int = 256,
    ) -> None:
        self._handlers = handlers
        self._timeout = timeout_s
        self._clock = clock
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self.rejections = RejectionCounter()

    async def handle_payload(
        self, data: bytes, content_type: ContentType | str
    ) -> CommandResult | None:
        """Decode a payload from the command topic and run it.

        Returns None (and counts the reason) when the payload is not an acceptable
        command at all: there is then no trustworthy command id to answer to.
        """
        try:
            message = decode_message(data, content_type, expect=MessageKind.COMMAND)
        except MessageRejectedError as exc:
            self.rejections.record(exc)
            logger.warning("refused a command payload: %s", exc.reason.value)
            return None
        if not isinstance(message, Command):  # pragma: no cover - expect= guarantees it
            return None
        return await self.dispatch(message)

    async def dispatch(self, command: Command) -> CommandResult:
        started = self._clock()
        now_ms = to_millis(started)
        if command.expires_at_ms is not None and now_ms > command.expires_at_ms:
            return self._result(command, CommandStatus.REJECTED, "expired", started)
        if command.id in self._seen:
            return self._result(command, CommandStatus.REJECTED, "duplicate command id", started)
        self._seen[command.id] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        try:
            async with asyncio.timeout(self._timeout):
                return await self._run(command, started)
        except TimeoutError:
            return self._result(command, CommandStatus.FAILED, "timed out", started)
        except Exception as exc:  # a handler's failure is the server's to see, not ours
            logger.exception("command %s (%s) failed", command.id, command.name.value)
            return self._result(command, CommandStatus.FAILED, _describe(exc), started)

    async def _run(self, command: Command, started: datetime) -> CommandResult:
        if command.name is CommandName.REPORT_NOW:
            detail = await self._handlers.report_now()
            return self._result(command, CommandStatus.OK, detail, started)
        if command.name is CommandName.ROTATE_CERTIFICATE:
            detail = await self._handlers.rotate_certificate()
            return self._result(command, CommandStatus.OK, detail, started)
        if command.name is CommandName.RUN_CHECKS:
            outcomes = list(await self._handlers.run_checks(command.checks))
            detail = f"{len(outcomes)} check(s) run"
            return self._result(command, CommandStatus.OK, detail, started, outcomes)
        # Unreachable while CommandName has three members; refuse rather than guess.
        return self._result(command, CommandStatus.REJECTED, "not allowed", started)

    def _result(
        self,
        command: Command,
        status: CommandStatus,
        detail: str | None,
        started: datetime,
        checks: list[CheckOutcome] | None = None,
    ) -> CommandResult:
        return CommandResult(
            id=command.id,
            name=command.name,
            status=status,
            detail=None if detail is None else detail[:MAX_DETAIL_CHARS],
            started_at_ms=to_millis(started),
            finished_at_ms=max(to_millis(self._clock()), to_millis(started)),
            checks=checks,
        )


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
