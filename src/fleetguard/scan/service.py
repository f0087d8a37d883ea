"""Run an agentless audit: ports, protocol identification, checks; returns a ScanReport.

Only the listed targets are ever contacted (UPnP descriptions are fetched only from the
same host; HTTP redirects are followed only on the same host and port). Every probe goes
through a global and a per-host concurrency limit and a per-host rate limit; login
attempts are capped per host and service and spaced out.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from fleetguard.protocol.models import TransportProto
from fleetguard.protocol.scan_report import PortState, ReportFinding, ReportNote
from fleetguard.scan import _ftp, _http_checks, _mqtt, _rtsp, _snmp, _ssh, _telnet, _tls, _udp
from fleetguard.scan._context import ProbeContext
from fleetguard.scan._identify import Identified, identify
from fleetguard.scan._net import Gate, HostNet, TokenBucket
from fleetguard.scan.checks import CheckId
from fleetguard.scan.credentials import Credential, load_credentials
from fleetguard.scan.models import (
    HostResult,
    PortResult,
    PortSpec,
    ScanReport,
    Service,
    ServiceInfo,
    Severity,
)
from fleetguard.scan.options import ScanOptions
from fleetguard.scan.targets import DEFAULT_MAX_ADDRESSES, parse_ports, parse_targets

log = logging.getLogger(__name__)


class ProgressSink(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...


def build_options(
    targets: Sequence[str],
    *,
    ports: str = "default",
    max_addresses: int = DEFAULT_MAX_ADDRESSES,
    **kwargs: Any,
) -> ScanOptions:
    """Parse target and port expressions into validated ScanOptions (raises on bad input)."""
    parsed = parse_targets(targets, max_addresses=max_addresses)
    specs = parse_ports(ports)
    return ScanOptions(
        targets=tuple(parsed),
        ports=tuple(specs),
        target_expressions=tuple(targets),
        **kwargs,
    )


def _raise_fd_limit(want: int) -> int:
    """Raise the soft open-files limit towards ``want``; return how many sockets we may use."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX
        return want
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want + 128
    if soft != resource.RLIM_INFINITY and soft < target:
        new = target if hard == resource.RLIM_INFINITY else min(target, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return want
    return max(1, min(want, int(soft) - 128))


async def _checks(ctx: ProbeContext, ident: Identified) -> None:
    info = ident.info
    s = info.service
    if s in (Service.HTTP, Service.HTTPS):
        await _http_checks.check_http(ctx, info, ident.http)
    elif s is Service.MQTT:
        await _mqtt.check_mqtt(ctx, info, ident.mqtt_rc)
    elif s is Service.RTSP:
        await _rtsp.check_rtsp(ctx, info, ident.rtsp)
    elif s is Service.TELNET:
        await _telnet.check_telnet(ctx, info)
    elif s is Service.FTP:
        await _ftp.check_ftp(ctx, info)
    elif s is Service.SSH:
        await _ssh.check_ssh(ctx, info)
    if info.tls:
        await _tls.check_tls(ctx, info)


def _exposed(ctx: ProbeContext, info: ServiceInfo) -> None:
    what = " ".join(x for x in (info.vendor, info.product, info.version) if x)
    label = info.service.value if info.service is not Service.UNKNOWN else "unrecognised service"
    ctx.finding(
        info,
        CheckId.SERVICE_EXPOSED,
        f"{label} on {info.transport.value}/{info.port}"
        + (f": {what}" if what else "")
        + (" (TLS)" if info.tls else ""),
        severity=Severity.INFO,
        title=f"{label.capitalize()} exposed",
    )


async def _tcp_port(ctx: ProbeContext, host: HostResult, spec: PortSpec) -> None:
    state, reason = await ctx.net.tcp_state(spec.port)
    host.ports.append(PortResult(spec.port, TransportProto.TCP, state, reason))
    if state is not PortState.OPEN:
        return
    ident = await identify(ctx, spec.port)
    host.services.append(ident.info)
    try:
        await _checks(ctx, ident)
    finally:
        _exposed(ctx, ident.info)


async def _udp_port(ctx: ProbeContext, host: HostResult, spec: PortSpec) -> None:
    results = await asyncio.gather(
        _snmp.probe_snmp(ctx, spec.port),
        _udp.probe_ssdp(ctx, spec.port),
        _udp.probe_coap(ctx, spec.port),
        _udp.probe_mdns(ctx, spec.port),
    )
    states = {st for st, _ in results}
    infos = [i for _, i in results if i is not None]
    if infos or PortState.OPEN in states:
        state = PortState.OPEN
    elif PortState.CLOSED in states:
        state = PortState.CLOSED
    else:
        state = PortState.OPEN_FILTERED
    reason = "" if state is not PortState.OPEN_FILTERED else "no answer to SNMP, SSDP, CoAP or mDNS"
    host.ports.append(PortResult(spec.port, TransportProto.UDP, state, reason))
    for info in infos:
        host.services.append(info)
        _exposed(ctx, info)


async def _scan_host(
    target_index: int,
    opts: ScanOptions,
    creds: tuple[Credential, ...],
    global_slots: asyncio.Semaphore,
    progress: ProgressSink | None,
) -> tuple[HostResult, list[ReportFinding], list[ReportNote]]:
    target = opts.targets[target_index]
    gate = Gate(global_slots, asyncio.Semaphore(opts.host_concurrency), TokenBucket(opts.rate))
    net = HostNet(target.address, target.name, opts.timeout, gate)
    ctx = ProbeContext(net, opts, creds)
    host = HostResult(target)

    async def one(spec: PortSpec) -> None:
        try:
            if spec.transport is TransportProto.TCP:
                await _tcp_port(ctx, host, spec)
            else:
                await _udp_port(ctx, host, spec)
        except Exception as exc:  # a misbehaving device never stops the scan
            log.debug(
                "probe error on %s %s/%s", target.address, spec.transport, spec.port, exc_info=True
            )
            ctx.note(
                spec.port,
                spec.transport,
                "scan",
                f"internal error while probing: {type(exc).__name__}: {exc}",
            )
        finally:
            if progress is not None:
                progress.advance(1)

    await asyncio.gather(*(one(spec) for spec in opts.ports))
    return host, ctx.findings, ctx.notes


def _finding_key(f: ReportFinding) -> tuple[int, str, int, str]:
    return (-f.severity.rank, f.host, f.port, f.check)


async def scan(options: ScanOptions, progress: ProgressSink | None = None) -> ScanReport:
    """Scan every target on every port; never raises for device behaviour."""
    creds = load_credentials(options.credentials_file) if options.credentials else ()
    started = dt.datetime.now(dt.UTC)
    slots = _raise_fd_limit(options.concurrency)
    global_slots = asyncio.Semaphore(slots)
    if progress is not None:
        progress.start(len(options.targets) * len(options.ports))
    results = await asyncio.gather(
        *(
            _scan_host(i, options, creds, global_slots, progress)
            for i in range(len(options.targets))
        )
    )
    hosts = [h for h, _, _ in results]
    findings = sorted((f for _, fs, _ in results for f in fs), key=_finding_key)
    notes = [n for _, _, ns in results for n in ns]
    return ScanReport(
        targets=list(options.target_expressions) or [t.address for t in options.targets],
        started=started,
        finished=dt.datetime.now(dt.UTC),
        hosts=hosts,
        findings=findings,
        notes=notes,
        options=options.summary(),
    )


def run_scan(options: ScanOptions, progress: ProgressSink | None = None) -> ScanReport:
    """Synchronous entry point (the CLI's)."""
    return asyncio.run(scan(options, progress))


def report_document(report: ScanReport) -> dict[str, Any]:
    """The stable JSON document of a report: what ``--json`` writes and what a server ingests."""
    return report.to_wire().to_json_dict()


__all__ = ["ProgressSink", "build_options", "report_document", "run_scan", "scan"]
