"""`fleetguard agent ...`: the device side's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleetguard.core.errors import FleetError

agent_app = typer.Typer(help="The device agent: enroll, renew.", no_args_is_help=True)

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
