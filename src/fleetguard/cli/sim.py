"""``fleetguard sim``: a simulated fleet with real identities (command layer only).

Register in the main CLI with ``app.command("sim")(sim_command)``.
"""

from __future__ import annotations

import resource
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console

from fleetguard.cli.common import handles_errors
from fleetguard.core.errors import ValidationFailedError
from fleetguard.sim.transports import SimTransport

if TYPE_CHECKING:
    from fleetguard.sim import SimSettings, SimStats

err = Console(stderr=True)


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url if "://" in url else f"x://{url}")
    if not parts.hostname:
        raise ValidationFailedError(f"no host in {url!r}", field="url")
    return parts.hostname, parts.port or default_port


def _raise_fd_limit(devices: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, devices + 256))
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < devices + 64:
        err.print(f"[yellow]open-file limit {wanted} is below {devices} connections; "
                  "raise it (ulimit -n)[/]")


@handles_errors
def sim_command(
    devices: Annotated[int, typer.Option("--devices", min=1, max=100_000,
                                         help="Number of virtual devices.")] = 10,
    server: Annotated[str, typer.Option(help="Operator API, e.g. https://127.0.0.1:8443")] = (
        "https://127.0.0.1:8443"),
    device_endpoint: Annotated[str, typer.Option(
        help="Device endpoint (enrollment, and telemetry with --transport https).")] = (
        "https://127.0.0.1:8444"),
    api_token: Annotated[str, typer.Option(
        envvar="FLEETGUARD_API_TOKEN", help="Operator API token (devices:write).")] = "",
    transport: Annotated[SimTransport, typer.Option(help="How devices report.")] = (
        SimTransport.HTTPS),
    broker: Annotated[str, typer.Option(help="Broker for --transport mqtt.")] = (
        "mqtts://127.0.0.1:8883"),
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between reports.")] = 60.0,
    duration: Annotated[float, typer.Option(min=1, help="Seconds to run.")] = 300.0,
    compromise: Annotated[int, typer.Option(min=0, help="Devices to compromise.")] = 0,
    ground_truth: Annotated[Path | None, typer.Option(
        help="Where to write the injected scenarios (JSON).")] = None,
    ca_file: Annotated[Path | None, typer.Option(
        help="The fleet root (PEM) that the server and broker certificates chain to.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (repeatable runs).")] = None,
) -> None:
    """Run N virtual devices: real keys, real enrollment, their own mutual-TLS connections."""
    import asyncio

    from fleetguard.sim import SimSettings

    if not api_token:
        raise ValidationFailedError("--api-token (or FLEETGUARD_API_TOKEN) is required",
                                    field="api_token")
    if ca_file is None:
        raise ValidationFailedError("--ca-file with the fleet root is required", field="ca_file")
    ca_pem = ca_file.read_bytes()
    if transport is SimTransport.MQTT:
        host, port = _host_port(broker, 8883)
    else:
        host, port = _host_port(device_endpoint, 443)
    settings = SimSettings(transport=transport, host=host, port=port, interval_s=interval,
                           duration_s=duration, compromise=compromise, seed=seed)
    _raise_fd_limit(devices)
    stats = asyncio.run(_run(settings, devices, server, device_endpoint, api_token, ca_pem,
                             ground_truth))
    err.print(f"{stats.connected}/{stats.devices} devices connected, "
              f"{stats.reports_sent} reports delivered, {stats.reports_failed} failed, "
              f"{stats.reports_refused} refused")
    if ground_truth is not None:
        err.print(f"ground truth: {ground_truth}")
    if stats.connected == 0:
        raise typer.Exit(1)


async def _run(settings: SimSettings, count: int, server: str, device_endpoint: str,
               token: str, ca_pem: bytes, ground_truth: Path | None) -> SimStats:
    import asyncio
    import random

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fleetguard.sim import ContextFactory, FleetSimulator, pick_profile, provision_fleet

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    names = [f"sim-{settings.transport.value}-{i:05d}" for i in range(count)]
    # Each device registers with its profile as its hardware model: detection's peers are the
    # devices of the same model, and a camera among gateways would be odd by design.
    rng = random.Random(settings.seed)  # noqa: S311 - simulation, not secrets
    profiles = [pick_profile(i, rng) for i in range(count)]
    contexts = ContextFactory(ca_pem)
    try:
        with Progress(*columns, console=err, transient=True) as progress:
            enroll = progress.add_task("enrolling", total=count)
            identities = await provision_fleet(
                server=server, device_endpoint=device_endpoint, api_token=token, ca_pem=ca_pem,
                names=names, progress=lambda n: progress.update(enroll, completed=n),
                hardware_models=lambda i: f"sim-{profiles[i].value}",
            )
            sim = FleetSimulator(identities, settings, contexts, profiles=profiles,
                                 ground_truth=ground_truth)
            connect = progress.add_task("connecting", total=count)
            await sim.connect_all(lambda n: progress.update(connect, completed=n))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, sim.stop)
        sim.plan_compromise()
        err.print(f"{sim.stats.connected} devices connected over {settings.transport.value}; "
                  f"reporting every {settings.interval_s:g} s for {settings.duration_s:g} s"
                  f" ({len(sim.truth)} compromised)")
        try:
            return await sim.run()
        finally:
            await sim.close_all()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
    finally:
        contexts.close()
