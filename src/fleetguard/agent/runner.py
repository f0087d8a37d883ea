"""The agent's run loop: collect, buffer, deliver in order, heartbeat, renew, obey.

Five tasks share one asyncio loop:

- **sample**: every ``sample_interval_s`` (when the source samples, as
  :class:`TelemetryCollector` does), sockets and processes are sampled in a worker thread
  and accumulated into the next report, so that what lives between two reports is seen.
  A sample's CPU time is held to ``sample_cpu_budget`` of the time between samples (2%):
  when one costs more, the next waits longer.
- **collect**: every ``interval_s`` (and on ``report_now``) a report is collected (in a
  worker thread), encoded and pushed into the on-disk :class:`ReportBuffer`. Nothing
  else is needed for it to survive: from here on a crash or a dead network loses nothing.
- **send**: owns the connection. It (re)connects with a jittered :class:`Backoff`, then
  drains the buffer oldest first in windows, and acks a report only once the transport
  says ``DELIVERED`` (or ``REFUSED``: the platform will never take those bytes, so they
  are dropped and counted instead of blocking the queue). It also sends command results
  (kept in memory until delivered) and heartbeats (best effort: liveness, not history).
- **commands**: takes commands from the transport (MQTT push, or HTTPS polling) and runs
  them through :class:`CommandDispatcher`: only report_now, rotate_certificate and
  run_checks exist, anything else is refused before it runs.
- **renew**: when ``renew_fraction`` (2/3) of the certificate's validity has passed,
  renews it (new key, over mutual TLS with the current one) and reconnects with it.

``stop()`` (wired to SIGTERM and SIGINT by :func:`run_agent`) ends all five; what was
collected but not delivered stays in the buffer for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509

from fleetguard.agent.backoff import Backoff
from fleetguard.agent.buffer import ReportBuffer
from fleetguard.agent.checks import run_checks
from fleetguard.agent.collectors import TelemetryCollector, encode_within_limit
from fleetguard.agent.commands import CommandDispatcher, CommandHandlers
from fleetguard.agent.config import AgentConfig
from fleetguard.agent.enroll import DeviceIdentity, load_identity, renew_device_certificate
from fleetguard.agent.errors import OutboxError
from fleetguard.agent.sampler import cpu_seconds_of
from fleetguard.agent.transport import (
    InboundCommand,
    Outgoing,
    SendOutcome,
    Transport,
    TransportError,
)
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import FleetError
from fleetguard.protocol import (
    CheckOutcome,
    CommandResult,
    Heartbeat,
    TelemetryReport,
    TopicKind,
    encode_message,
)

logger = logging.getLogger(__name__)

TransportFactory = Callable[[DeviceIdentity], Transport]
Renew = Callable[[Path], DeviceIdentity]


class ReportSource(Protocol):
    """What the runner collects from: :class:`TelemetryCollector`, or a stand-in."""

    def collect(self, *, seq: int, reports_dropped: int = 0) -> TelemetryReport: ...

    def heartbeat(
        self, *, last_report_seq: int | None, buffered_reports: int, reports_dropped: int
    ) -> Heartbeat: ...


@runtime_checkable
class Sampling(Protocol):
    """A source that also samples between reports (:meth:`TelemetryCollector.sample`)."""

    def sample(self) -> None: ...


@dataclass
class RunnerStats:
    collected: int = 0
    samples: int = 0
    delivered: int = 0
    refused: int = 0
    heartbeats: int = 0
    connects: int = 0
    connect_failures: int = 0
    renewals: int = 0
    renewal_failures: int = 0
    commands: int = 0
    results_delivered: int = 0
    last_seq: int | None = None
    errors: list[str] = field(default_factory=list)


class AgentRunner:
    """Runs the agent until :meth:`stop`; one instance per process and state dir."""

    def __init__(
        self,
        config: AgentConfig,
        transport_factory: TransportFactory,
        *,
        identity: DeviceIdentity | None = None,
        source: ReportSource | None = None,
        heartbeat_interval_s: float | None = None,
        command_poll_s: float | None = None,
        renew_fraction: float = 2 / 3,
        renew_check_s: float = 60.0,
        renew: Renew = renew_device_certificate,
        checks: Callable[[Sequence[str] | None], list[CheckOutcome]] = run_checks,
        backoff: Backoff | None = None,
        window: int = 32,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._config = config
        self._factory = transport_factory
        self._identity = identity or load_identity(config.state_dir)
        self._source = source
        self._heartbeat_s = heartbeat_interval_s or min(config.interval_s, 60.0)
        self._poll_s = command_poll_s or min(config.interval_s, 30.0)
        if not 0 < renew_fraction < 1:
            raise ValueError("renew_fraction must be between 0 and 1")
        self._renew_fraction = renew_fraction
        self._renew_check_s = renew_check_s
        self._renew_fn = renew
        self._checks = checks
        self._backoff = backoff or Backoff(base_s=1.0, cap_s=120.0)
        self._window = max(window, 1)
        self._clock = clock
        self.stats = RunnerStats()
        self._buffer: ReportBuffer | None = None
        self._transport: Transport | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._collect_now = asyncio.Event()
        self._connected = asyncio.Event()
        self._reconnect = False
        self._renew_lock = asyncio.Lock()
        self._results: deque[CommandResult] = deque(maxlen=256)
        self._handled: OrderedDict[str, None] = OrderedDict()
        self._collected_seq: int | None = None
        self._collected = asyncio.Condition()
        self.dispatcher = CommandDispatcher(CommandHandlers(
            report_now=self._report_now,
            rotate_certificate=self._rotate_certificate,
            run_checks=self._run_checks,
        ))

    @property
    def identity(self) -> DeviceIdentity:
        return self._identity

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> RunnerStats:
        self._buffer = ReportBuffer(self._config.buffer_path,
                                    max_items=self._config.buffer_max_items,
                                    max_bytes=self._config.buffer_max_bytes)
        if self._source is None:
            self._source = await asyncio.to_thread(TelemetryCollector, self._config)
        tasks = [
            asyncio.create_task(self._guard(self._collect_loop), name="collect"),
            asyncio.create_task(self._guard(self._send_loop), name="send"),
            asyncio.create_task(self._guard(self._command_loop), name="commands"),
            asyncio.create_task(self._guard(self._renew_loop), name="renew"),
        ]
        if isinstance(self._source, Sampling) and self._config.sample_interval_s > 0:
            tasks.append(asyncio.create_task(self._guard(self._sample_loop), name="sample"))
        try:
            await self._stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._transport is not None:
                with contextlib.suppress(Exception):
                    await self._transport.close()
            self._buffer.close()
        return self.stats

    async def _guard(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one task's loop; an unexpected error is logged and the loop starts again."""
        while not self._stop.is_set():
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a long-running loop never dies of one bad turn
                logger.exception("agent task failed; restarting it")
                self.stats.errors.append(f"{type(exc).__name__}: {exc}")
                await self._sleep(1.0)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.0)):
                await self._stop.wait()

    # -- sample -------------------------------------------------------------------------

    async def _sample_loop(self) -> None:
        source = self._source
        assert isinstance(source, Sampling)
        loop = asyncio.get_running_loop()
        interval = self._config.sample_interval_s
        next_at = loop.time() + interval
        while not self._stop.is_set():
            await self._sleep(next_at - loop.time())
            if self._stop.is_set():
                return
            started = loop.time()
            spent = await asyncio.to_thread(cpu_seconds_of, source.sample)
            self.stats.samples += 1
            # Late: skip, never catch up. Within budget: a sample that used more CPU than the
            # budget's share of the interval (thousands of sockets) spaces out the next.
            next_at = max(next_at + interval, loop.time(),
                          started + spent / self._config.sample_cpu_budget)

    # -- collect ------------------------------------------------------------------------

    async def _collect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stop.is_set():
            wait = next_at - loop.time()
            if wait > 0 and not self._collect_now.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await _first(self._stop, self._collect_now)
            if self._stop.is_set():
                return
            self._collect_now.clear()
            await self._collect_one()
            next_at = max(next_at + self._config.interval_s, loop.time())

    async def _collect_one(self) -> int:
        buffer, source = self._buffer, self._source
        assert buffer is not None and source is not None
        seq = buffer.next_report_seq()
        report = await asyncio.to_thread(
            source.collect, seq=seq, reports_dropped=buffer.dropped_total
        )
        payload = encode_within_limit(report, self._config.content_type)
        try:
            buffer.push(payload, self._config.content_type)
        except OutboxError as exc:
            logger.error("cannot buffer report %d: %s", seq, exc)
            raise
        self.stats.collected += 1
        async with self._collected:
            self._collected_seq = seq
            self._collected.notify_all()
        self._wake.set()
        return seq

    # -- send ---------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_heartbeat = loop.time() + self._heartbeat_s
        while not self._stop.is_set():
            transport = await self._ensure_connected()
            if transport is None:
                continue
            ok = await self._drain(transport) and await self._send_results(transport)
            if ok and loop.time() >= next_heartbeat:
                ok = await self._send_heartbeat(transport)
                next_heartbeat = loop.time() + self._heartbeat_s
            if self._reconnect:
                await self._disconnect()
                continue
            if not ok or not transport.connected:
                await self._disconnect()
                await self._sleep(self._backoff.next_delay())
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(min(next_heartbeat - loop.time(), 1.0), 0.05)):
                    await self._wake.wait()

    async def _ensure_connected(self) -> Transport | None:
        if self._transport is not None and self._transport.connected and not self._reconnect:
            return self._transport
        await self._disconnect()
        self._reconnect = False
        transport = self._factory(self._identity)
        try:
            await transport.connect()
        except (TransportError, FleetError, OSError) as exc:
            self.stats.connect_failures += 1
            delay = self._backoff.next_delay()
            logger.info("%s connection failed (%s); retrying in %.1f s",
                        transport.name, exc, delay)
            with contextlib.suppress(Exception):
                await transport.close()
            await self._sleep(delay)
            return None
        self._backoff.reset()
        self.stats.connects += 1
        self._transport = transport
        self._connected.set()
        logger.info("connected over %s as device %s", transport.name,
                    self._identity.device_id)
        return transport

    async def _disconnect(self) -> None:
        self._connected.clear()
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                await transport.close()

    async def _drain(self, transport: Transport) -> bool:
        buffer = self._buffer
        assert buffer is not None
        while not self._stop.is_set() and not self._reconnect:
            batch = buffer.peek(self._window)
            if not batch:
                return True
            outcomes = await transport.send_batch(
                TopicKind.TELEMETRY, [Outgoing(b.payload, b.content_type) for b in batch]
            )
            done = 0
            for outcome in outcomes:
                if outcome is SendOutcome.FAILED:
                    break
                done += 1
                if outcome is SendOutcome.DELIVERED:
                    self.stats.delivered += 1
                else:
                    self.stats.refused += 1
            if done:
                buffer.ack(batch[done - 1].position)
            if done < len(batch):
                return False
        return True

    async def _send_results(self, transport: Transport) -> bool:
        while self._results:
            result = self._results[0]
            payload = encode_message(result, self._config.content_type)
            [outcome] = await transport.send_batch(
                TopicKind.COMMAND_RESULT, [Outgoing(payload, self._config.content_type)]
            )
            if outcome is SendOutcome.FAILED:
                return False
            self._results.popleft()
            self.stats.results_delivered += outcome is SendOutcome.DELIVERED
        return True

    async def _send_heartbeat(self, transport: Transport) -> bool:
        buffer, source = self._buffer, self._source
        assert buffer is not None and source is not None
        beat = source.heartbeat(last_report_seq=self._collected_seq,
                                buffered_reports=len(buffer),
                                reports_dropped=buffer.dropped_total)
        payload = encode_message(beat, self._config.content_type)
        [outcome] = await transport.send_batch(
            TopicKind.HEARTBEAT, [Outgoing(payload, self._config.content_type)]
        )
        if outcome is SendOutcome.DELIVERED:
            self.stats.heartbeats += 1
        return outcome is not SendOutcome.FAILED

    # -- commands -----------------------------------------------------------------------

    async def _command_loop(self) -> None:
        while not self._stop.is_set():
            await _first(self._stop, self._connected)
            transport = self._transport
            if self._stop.is_set() or transport is None:
                continue
            try:
                commands = await transport.receive_commands(self._poll_s)
            except TransportError as exc:
                logger.info("command poll failed: %s", exc)
                await self._sleep(self._poll_s)
                continue
            for command in commands:
                await self._handle(command)
            if transport.name == "https":  # polling: wait between polls
                await self._sleep(self._poll_s)

    async def _handle(self, command: InboundCommand) -> None:
        result = await self.dispatcher.handle_payload(command.payload, command.content_type)
        if result is None:
            return
        if result.id in self._handled and result.detail == "duplicate command id":
            return  # a re-polled command already answered: answering again would overwrite
        self._handled[result.id] = None
        while len(self._handled) > 1024:
            self._handled.popitem(last=False)
        self.stats.commands += 1
        logger.info("command %s (%s): %s", result.id, result.name.value, result.status.value)
        self._results.append(result)
        self._wake.set()

    async def _report_now(self) -> str | None:
        async with self._collected:
            before = self._collected_seq
            self._collect_now.set()
            await self._collected.wait_for(lambda: self._collected_seq != before)
            return f"report {self._collected_seq} queued"

    async def _rotate_certificate(self) -> str | None:
        identity = await self._renew_now()
        return f"new certificate valid until {identity.not_after.isoformat()}"

    async def _run_checks(self, check_ids: Sequence[str] | None) -> Sequence[CheckOutcome]:
        return await asyncio.to_thread(self._checks, check_ids)

    # -- renewal ------------------------------------------------------------------------

    def renewal_due_at(self) -> datetime:
        chain = x509.load_pem_x509_certificates(self._identity.cert_path.read_bytes())
        leaf = chain[0]
        start, end = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        return start + timedelta(seconds=(end - start).total_seconds() * self._renew_fraction)

    async def _renew_loop(self) -> None:
        retry = Backoff(base_s=30.0, cap_s=3600.0)
        while not self._stop.is_set():
            try:
                due = await asyncio.to_thread(self.renewal_due_at)
            except (OSError, ValueError) as exc:
                logger.error("cannot read the device certificate: %s", exc)
                await self._sleep(retry.next_delay())
                continue
            wait = (due - self._clock()).total_seconds()
            if wait > 0:
                # Look again regularly: a command may have renewed, or the clock jumped.
                await self._sleep(min(wait, self._renew_check_s))
                continue
            try:
                await self._renew_now()
                retry.reset()
            except FleetError as exc:
                delay = retry.next_delay()
                logger.warning("certificate renewal failed (%s); retrying in %.0f s",
                               exc.message, delay)
                await self._sleep(delay)

    async def _renew_now(self) -> DeviceIdentity:
        async with self._renew_lock:
            try:
                identity = await asyncio.to_thread(self._renew_fn, self._config.state_dir)
            except FleetError:
                self.stats.renewal_failures += 1
                raise
            self._identity = identity
            self.stats.renewals += 1
            self._reconnect = True  # the send loop reconnects with the new certificate
            self._wake.set()
            logger.info("certificate renewed; valid until %s", identity.not_after.isoformat())
            return identity


async def _first(*events: asyncio.Event) -> None:
    """Wait until any of the events is set."""
    if any(event.is_set() for event in events):
        return
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def run_agent(runner: AgentRunner) -> RunnerStats:
    """Run until SIGTERM or SIGINT, then stop cleanly (the buffer keeps what is unsent)."""

    async def main() -> RunnerStats:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, runner.stop)
        try:
            return await runner.run()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    return asyncio.run(main())
