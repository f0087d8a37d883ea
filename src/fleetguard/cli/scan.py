"""``fleetguard scan``: the agentless IoT network audit (command layer only).

Register in the main CLI with ``app.command("scan")(scan_command)``.
Exit codes: 0 no finding at or above --fail-on, 1 otherwise, 2 bad input, 3 the report
could not be stored on the server given with --server.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleetguard.cli._scan_upload import TOKEN_ENV
from fleetguard.core.errors import FleetError
from fleetguard.core.severity import Severity

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from fleetguard.scan import ScanReport

_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


class _RichProgress:
    def __init__(self, progress: Progress) -> None:
        self._p = progress
        self._task = progress.add_task("scanning", total=None)

    def start(self, total: int) -> None:
        self._p.update(self._task, total=total)

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._task, n)


def _print_table(console: Console, report: ScanReport, min_severity: Severity) -> None:
    from rich.text import Text

    from fleetguard.cli.output import Column, print_table

    hosts_up = sum(1 for h in report.hosts if h.status.value == "up")
    services = sum(len(h.services) for h in report.hosts)
    shown = [f for f in report.findings if f.severity.rank >= min_severity.rank]
    if shown:
        print_table(
            [Column("severity"), Column("host"), Column("port"), Column("service"),
             Column("check", free=True), Column("evidence", free=True)],
            [[Text(f.severity.value, style=_STYLE[f.severity]), f.host,
              f"{f.port}/{f.protocol.value}", f.service, f.check, f.evidence]
             for f in shown],
            title="Findings",
        )
    counts: dict[Severity, int] = {}
    for f in report.findings:
        counts[f.severity] = counts.get(f.severity, 0) + 1
    summary = ", ".join(f"[{_STYLE[s]}]{counts[s]} {s.value}[/]" for s in Severity if counts.get(s))
    elapsed = (report.finished - report.started).total_seconds()
    console.print(
        f"{len(report.hosts)} addresses, {hosts_up} up, {services} services, "
        f"findings: {summary or 'none'} ({elapsed:.1f}s)"
    )
    if report.notes:
        console.print(
            f"[dim]{len(report.notes)} checks could not be run or decide "
            "(see the JSON report's notes)[/]"
        )


def scan_command(
    targets: Annotated[
        list[str],
        typer.Argument(help="Addresses, CIDRs, ranges (a.b.c.1-20), host names or @file."),
    ],
    ports: Annotated[
        str, typer.Option("--ports", "-p", help="e.g. default, 23,80-90, T:23,U:161")
    ] = "default",
    concurrency: Annotated[int, typer.Option(help="Simultaneous probes in total.")] = 1024,
    host_concurrency: Annotated[int, typer.Option(help="Simultaneous probes per host.")] = 32,
    rate: Annotated[
        float, typer.Option(help="New probes per second per host (0: no limit).")
    ] = 200.0,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for a connect or an answer.")
    ] = 1.5,
    no_credentials: Annotated[
        bool, typer.Option("--no-credentials", help="Never attempt a login.")
    ] = False,
    max_logins: Annotated[int, typer.Option(help="Login attempts per host and service.")] = 10,
    login_delay: Annotated[float, typer.Option(help="Seconds between login attempts.")] = 0.25,
    credentials_file: Annotated[
        Path | None, typer.Option("--credentials", help="Own list: JSON or user:password lines.")
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the JSON report to this file.")
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="Output on stdout.")
    ] = OutputFormat.TABLE,
    fail_on: Annotated[
        Severity | None,
        typer.Option(metavar="SEVERITY",
                     help="Exit 1 when a finding is at or above this severity (else 0, "
                          "as nmap does: CI jobs opt in)."),
    ] = None,
    max_addresses: Annotated[
        int, typer.Option(help="Refuse targets that expand to more addresses.")
    ] = 65536,
    server: Annotated[
        str | None,
        typer.Option(help="Store the report on this fleetguard server (https://host:port)."),
    ] = None,
    api_token: Annotated[
        str | None, typer.Option(envvar=TOKEN_ENV, help="API token for --server.")
    ] = None,
    ca_file: Annotated[
        Path | None, typer.Option(help="Trust this CA (the fleet root) for --server.")
    ] = None,
) -> None:
    """Audit IoT devices on the network, agentless: default credentials, missing
    authentication, cleartext protocols, weak TLS, exposed IoT protocols."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from fleetguard.cli._scan_upload import check_server, upload_report
    from fleetguard.scan import (
        build_options,
        expand_target_files,
        run_scan,
        to_csv,
        to_json,
    )

    err = Console(stderr=True)
    try:
        base_url = check_server(server, api_token) if server else None
        options = build_options(
            expand_target_files(targets),
            ports=ports,
            max_addresses=max_addresses,
            timeout=timeout,
            concurrency=concurrency,
            host_concurrency=host_concurrency,
            rate=rate,
            credentials=not no_credentials,
            max_logins=max_logins,
            login_delay=login_delay,
            credentials_file=str(credentials_file) if credentials_file else None,
        )
        if err.is_terminal:
            with Progress(
                TextColumn("[bold]scan[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            ) as progress:
                report = run_scan(options, _RichProgress(progress))
        else:
            report = run_scan(options)
    except FleetError as exc:
        err.print(f"[bold red]error:[/] {exc.message} [dim]({exc.code})[/]")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err.print("[bold red]interrupted[/]")
        raise typer.Exit(130) from None
    if json_file is not None:
        try:
            json_file.write_text(to_json(report) + "\n", encoding="utf-8")
        except OSError as exc:
            err.print(f"[bold red]error:[/] cannot write {json_file}: {exc}")
            raise typer.Exit(2) from None
    if output_format is OutputFormat.JSON:
        sys.stdout.write(to_json(report) + "\n")
    elif output_format is OutputFormat.CSV:
        sys.stdout.write(to_csv(report))
    else:
        _print_table(
            Console(), report, Severity.INFO if len(report.findings) < 60 else Severity.LOW
        )
    if base_url is not None:
        try:
            stored = upload_report(
                base_url, api_token or "", report.to_wire(), ports=ports, ca_file=ca_file
            )
        except FleetError as exc:
            err.print(f"[bold red]error:[/] {exc.message} [dim]({exc.code})[/]")
            raise typer.Exit(3) from None
        o = stored.outcome
        err.print(
            f"stored on {base_url} as scan {stored.scan_id}: findings opened {o.get('opened', 0)}, "
            f"resolved {o.get('resolved', 0)}, reopened {o.get('reopened', 0)}, "
            f"seen again {o.get('updated', 0)}",
            soft_wrap=True,
        )
    failed = fail_on is not None and bool(report.findings_at_or_above(fail_on))
    raise typer.Exit(1 if failed else 0)


app = typer.Typer(help="Agentless IoT network audit.")
app.command("scan")(scan_command)

__all__ = ["OutputFormat", "app", "scan_command"]
