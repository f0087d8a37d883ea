"""`fleetguard agent ...`: the device side's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleetguard.core.errors import FleetError

agent_app = typer.Typer(help="The device agent: enroll, renew, run.", no_args_is_help=True)

StateDir = Annotated[Path, typer.Option("--state-dir", help="Where the device keeps its identity.")]


def _fail(exc: FleetError) -> typer.Exit:
    typer.echo(f"error ({exc.code}): {exc.message}", err=True)
    return typer.Exit(1)


@agent_app.command("enroll")
def enroll_command(
    server: Annotated[str, typer.Option(help="Device endpoint, e.g. https://fleet.example:8444")],
    state_dir: StateDir,
    token: Annotated[str | None, typer.Option(help="One-time enrollment token.")] = None,
    ca_file: Annotated[Path | None, typer.Option(help="The fleet root certificate (PEM).")] = None,
    claim_cert: Annotated[Path | None, typer.Option(help="Batch claim certificate.")] = None,
    claim_key: Annotated[Path | None, typer.Option(help="Batch claim key.")] = None,
    serial: Annotated[str | None, typer.Option(help="This device's serial (claim).")] = None,
) -> None:
    """Make a key pair here and get a certificate for it."""
    from fleetguard.agent.enroll import enroll_device

    try:
        identity = enroll_device(server, state_dir, token=token, ca_file=ca_file,
                                 claim_cert=claim_cert, claim_key=claim_key, serial=serial)
    except FleetError as exc:
        raise _fail(exc) from exc
    typer.echo(f"enrolled as device {identity.device_id}; certificate valid until "
               f"{identity.not_after.isoformat()}")


@agent_app.command("renew")
def renew_command(state_dir: StateDir) -> None:
    """Rotate to a new key and certificate before the current one expires."""
    from fleetguard.agent.enroll import renew_device_certificate

    try:
        identity = renew_device_certificate(state_dir)
    except FleetError as exc:
        raise _fail(exc) from exc
    typer.echo(f"renewed; certificate valid until {identity.not_after.isoformat()}")


@agent_app.command("run")
def run_command(
    state_dir: StateDir,
    transport: Annotated[
        str, typer.Option(help="https (the device endpoint) or mqtt (the broker).")
    ] = "https",
    broker: Annotated[
        str | None, typer.Option(help="The broker for --transport mqtt, e.g. mqtts://host:8883")
    ] = None,
    interval: Annotated[
        float, typer.Option(help="Seconds between telemetry reports (at least 1).")
    ] = 300.0,
    sample_interval: Annotated[
        float, typer.Option(help="Seconds between samples of sockets and processes within a "
                                 "report period (0: only at each report).")
    ] = 1.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Report telemetry, obey the allowed commands and renew the certificate until stopped."""
    import logging

    from fleetguard.agent.config import AgentConfig
    from fleetguard.agent.enroll import DeviceIdentity, load_identity
    from fleetguard.agent.runner import AgentRunner, run_agent
    from fleetguard.agent.transport import (
        BrokerAddress,
        HttpsTransport,
        MqttTransport,
        Transport,
    )

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = AgentConfig(state_dir=state_dir, interval_s=interval,
                             sample_interval_s=sample_interval)
        identity = load_identity(state_dir)
        if transport == "https":
            def factory(ident: DeviceIdentity) -> Transport:
                return HttpsTransport(ident)
        elif transport == "mqtt":
            if not broker:
                raise typer.BadParameter("--transport mqtt needs --broker mqtts://host:port")
            address = BrokerAddress.parse(broker)

            def factory(ident: DeviceIdentity) -> Transport:
                return MqttTransport(ident, address)
        else:
            raise typer.BadParameter("--transport is https or mqtt")
        runner = AgentRunner(config, factory, identity=identity)
    except FleetError as exc:
        raise _fail(exc) from exc
    typer.echo(f"device {identity.device_id}: reporting every {interval:g} s over {transport}",
               err=True)
    stats = run_agent(runner)
    typer.echo(f"stopped: {stats.collected} collected, {stats.delivered} delivered, "
               f"{stats.refused} refused", err=True)
