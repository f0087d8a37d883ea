"""The `fleetguard` command."""

from __future__ import annotations

import os

import typer

from fleetguard import __version__
from fleetguard.agent.cli import agent_app
from fleetguard.cli.admin import operator_app, token_app
from fleetguard.cli.audit import audit_app
from fleetguard.cli.broker import broker_command
from fleetguard.cli.demo import demo_command
from fleetguard.cli.eval_detect import eval_app
from fleetguard.cli.fleet import ca_app, cert_app, claim_app, device_app
from fleetguard.cli.installation import db_app, init_command, keys_app, serve_command
from fleetguard.cli.notify import notify_app
from fleetguard.cli.plain_help import use_plain_help
from fleetguard.cli.scan import scan_command
from fleetguard.cli.sim import sim_command

app = typer.Typer(
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
# Each group's help is its own Typer's, said once there.
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(operator_app, name="operator")
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit-log")
app.command("broker", help="Run Mosquitto with mutual TLS and per-device permissions.")(
    broker_command
)
app.command("scan", help="Audit a network for IoT weaknesses, with no agent and no server.")(
    scan_command
)
app.command("sim", help="Run a simulated fleet with real identities and injected attacks.")(
    sim_command
)
app.add_typer(device_app, name="device")
app.add_typer(cert_app, name="cert")
app.add_typer(ca_app, name="ca")
app.add_typer(claim_app, name="claim")
app.add_typer(agent_app, name="agent")
app.add_typer(notify_app, name="notify")
app.add_typer(eval_app, name="eval")
use_plain_help(app)


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


def command_paths() -> list[list[str]]:
    """Every command's arguments: the top level, each group and each command, in order."""
    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        paths.append(path)
        commands = getattr(command, "commands", None) or {}  # a group's (typer vendors click)
        for name in sorted(commands):
            walk(commands[name], [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def run() -> None:
    app()
