"""The `fleetguard` command."""

from __future__ import annotations

import os
from typing import Any

import typer
from typer.core import TyperGroup

from fleetguard import __version__
from fleetguard.agent.cli import agent_app
from fleetguard.cli.admin import operator_app, token_app
from fleetguard.cli.audit import audit_app
from fleetguard.cli.broker import broker_command
from fleetguard.cli.demo import demo_command
from fleetguard.cli.fleet import ca_app, cert_app, claim_app, device_app
from fleetguard.cli.installation import db_app, init_command, keys_app, serve_command
from fleetguard.cli.scan import scan_command
from fleetguard.cli.sim import sim_command


class QuickHelpGroup(TyperGroup):
    """A command group whose own ``--help``, when not given (``fleetguard device list
    --help`` passes through ``fleetguard`` and ``device``), is not run through typer's
    pydantic-based coercion: that alone would load pydantic and cost ~0.1 s per help.
    A given ``--help`` is a bool and typer skips coercing it anyway."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None and getattr(option, "_runtime_param", False) is None:
            try:
                from typer._coercion import PassThroughRuntimeParam

                option._runtime_param = PassThroughRuntimeParam(
                    parameter_info=option.type_descriptor.parameter_info, annotation=bool
                )
            except (ImportError, AttributeError, TypeError):  # another typer: its own way
                pass
        return option


app = typer.Typer(
    cls=QuickHelpGroup,
    name="fleetguard",
    help="Harden and watch a fleet of connected devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("init", help="Create data dir, database, master key, TLS identity and first admin.")(
    init_command
)
app.command("serve", help="Run the HTTPS operator API and the mutual-TLS device endpoint.")(
    serve_command
)
app.command("demo", help="The whole platform with a simulated, partly compromised fleet.")(
    demo_command
)
app.add_typer(db_app, name="db", help="Database schema migrations.")
app.add_typer(keys_app, name="keys", help="The master key that encrypts secrets at rest.")
app.add_typer(operator_app, name="operator", help="Operators: add, list, disable, reset MFA.")
app.add_typer(token_app, name="token", help="API tokens: create, list, revoke.")
app.add_typer(audit_app, name="audit-log",
              help="The keyed audit log: verify it; print, export and check its head.")
app.command("broker", help="Run Mosquitto with mutual TLS and per-device permissions.")(
    broker_command
)
app.command("scan", help="Audit a network for IoT weaknesses, with no agent and no server.")(
    scan_command
)
app.command("sim", help="Run a simulated fleet with real identities and injected attacks.")(
    sim_command
)
app.add_typer(device_app, name="device", help="Devices: add, list, show, set, token, decommission.")
app.add_typer(cert_app, name="cert", help="Device certificates: list, revoke.")
app.add_typer(ca_app, name="ca", help="The fleet CA: init, rotate, show.")
app.add_typer(claim_app, name="claim", help="Claim batches for fleet provisioning.")
app.add_typer(agent_app, name="agent", help="The device agent: enroll, renew.")
for _group in app.registered_groups:
    _group.cls = QuickHelpGroup


def _version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Harden and watch a fleet of connected devices."""
    # Everything fleetguard writes (database, keys, reports) is for its owner alone.
    os.umask(0o077)


def run() -> None:
    app()
