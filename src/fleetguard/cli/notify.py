"""`fleetguard notify`: notification destinations (signed webhooks, syslog) from the data dir.

Like the other local commands these act on the database with the master key; each change
is audited as ``cli:<user>``. A CA given with ``--ca-file`` is read here and stored as its
PEM content: the server never opens a path it was given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleetguard.cli.admin import cli_actor
from fleetguard.cli.common import DataDirOption, console, handles_errors, settings_from
from fleetguard.cli.output import Column, JsonOption, print_json, print_records, table_time
from fleetguard.core.errors import ValidationFailedError
from fleetguard.core.severity import Severity

if TYPE_CHECKING:
    from fleetguard.keys import MasterKey
    from fleetguard.notify import DeliveryCounts, Destination
    from fleetguard.store import Database

notify_app = typer.Typer(
    help="Notification destinations: list, add-webhook, add-syslog, remove, test.",
    no_args_is_help=True,
)

MinSeverityOption = Annotated[
    Severity, typer.Option("--min-severity", help="Send events of this severity and worse.")
]
NameArgument = Annotated[str, typer.Argument(help="A name for the destination.")]
CaFileOption = Annotated[
    Path | None,
    typer.Option("--ca-file", help="Trust this CA (PEM file, read now) instead of the "
                                   "system's.", metavar="PEM"),
]


@contextmanager
def _installation(data_dir: Path | None) -> Iterator[tuple[Database, MasterKey]]:
    from fleetguard.install import open_installation_database
    from fleetguard.keys import load_master_key

    settings = settings_from(data_dir)
    master = load_master_key(settings)
    db = open_installation_database(settings, master_key=master)
    try:
        yield db, master
    finally:
        db.dispose()


def _ca_pem(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailedError(f"cannot read {path}: {exc}", field="ca-file") from None


def _where(destination: Destination) -> str:
    from fleetguard.notify.webhook import shown_url

    if destination.webhook is not None:
        return shown_url(destination.webhook.url)
    assert destination.syslog is not None
    s = destination.syslog
    return f"{s.transport.value}://{s.host}:{s.port} ({s.facility})"


def _counts(counts: DeliveryCounts | None) -> tuple[int, int, int]:
    if counts is None:
        return 0, 0, 0
    return counts.delivered, counts.failed, counts.pending


@notify_app.command("list")
@handles_errors
def notify_list(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """List destinations with their deliveries so far (a secret is never shown)."""
    from fleetguard import notify

    with _installation(data_dir) as (db, _), db.read_session() as session:
        destinations = notify.list_destinations(session)
        counts = notify.delivery_counts(session)
    if as_json:
        from fleetguard.api.schemas_notify import DestinationOut

        print_json([DestinationOut.of(d, counts.get(d.id)).model_dump(mode="json")
                    for d in destinations])
        return
    print_records(
        destinations,
        [Column("id"), Column("kind"), Column("on"), Column("min"), Column("sent"),
         Column("failed"), Column("pending"), Column("name", free=True),
         Column("where", free=True)],
        lambda d: [d.id, d.kind.value, "yes" if d.enabled else "no", d.min_severity.value,
                   *(str(n) for n in _counts(counts.get(d.id))), d.name, _where(d)],
        as_json=False,
    )


@notify_app.command("add-webhook")
@handles_errors
def notify_add_webhook(
    name: NameArgument,
    url: Annotated[str, typer.Argument(help="The https:// URL to POST events to.")],
    min_severity: MinSeverityOption = Severity.LOW,
    allow_http: Annotated[
        bool, typer.Option("--allow-http", help="Allow a plain http:// URL.")] = False,
    allow_private_network: Annotated[
        bool, typer.Option("--allow-private-network",
                           help="Allow private and loopback addresses (never metadata ones).")
    ] = False,
    ca_file: CaFileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Add a signed webhook; prints its HMAC secret, which is shown this once."""
    from fleetguard import notify

    settings = notify.WebhookSettings(url=url, allow_http=allow_http,
                                      allow_private_network=allow_private_network,
                                      ca_pem=_ca_pem(ca_file))
    with _installation(data_dir) as (db, master), db.session() as session:
        created = notify.create_destination(session, master, actor=cli_actor(), name=name,
                                            min_severity=min_severity, webhook=settings)
    console.print(f"webhook {created.destination.id} added", highlight=False)
    console.print("its secret (shown once; receivers verify X-Fleetguard-Signature with it):",
                  highlight=False)
    print(created.secret)


@notify_app.command("add-syslog")
@handles_errors
def notify_add_syslog(
    name: NameArgument,
    host: Annotated[str, typer.Argument(help="The collector's host name or address.")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="The collector's port.")] = 514,
    transport: Annotated[
        str, typer.Option(help="udp, tcp (octet counting) or tls.", metavar="TRANSPORT")
    ] = "tcp",
    facility: Annotated[str, typer.Option(help="Syslog facility, e.g. local0.")] = "local0",
    app_name: Annotated[str, typer.Option(help="APP-NAME of each message.")] = "fleetguard",
    min_severity: MinSeverityOption = Severity.LOW,
    ca_file: CaFileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Add a syslog collector (RFC 5424 messages with a CEF payload)."""
    from fleetguard import notify

    try:
        chosen = notify.SyslogTransport(transport.lower())
    except ValueError:
        raise ValidationFailedError("transport must be udp, tcp or tls",
                                    field="transport") from None
    settings = notify.SyslogSettings(host=host, port=port, transport=chosen,
                                     facility=facility, app_name=app_name,
                                     ca_pem=_ca_pem(ca_file))
    with _installation(data_dir) as (db, master), db.session() as session:
        created = notify.create_destination(session, master, actor=cli_actor(), name=name,
                                            min_severity=min_severity, syslog=settings)
    print(created.destination.id)


@notify_app.command("remove")
@handles_errors
def notify_remove(
    destination_id: Annotated[str, typer.Argument(help="The destination's id.")],
    data_dir: DataDirOption = None,
) -> None:
    """Remove a destination; its pending deliveries are not sent."""
    from fleetguard import notify

    with _installation(data_dir) as (db, _), db.session() as session:
        notify.delete_destination(session, destination_id, actor=cli_actor())


@notify_app.command("test")
@handles_errors
def notify_test(
    destination_id: Annotated[str, typer.Argument(help="The destination's id.")],
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Send a test event now and say how it went (exit 1 if it was not delivered)."""
    from fleetguard import notify

    with _installation(data_dir) as (db, master):
        delivery = notify.send_test_event(db, master, destination_id, actor=cli_actor())
    if as_json:
        print_json(delivery)
    elif delivery.state is notify.DeliveryState.DELIVERED:
        status = f" ({delivery.last_status})" if delivery.last_status else ""
        console.print(f"delivered{status} at {table_time(delivery.finished_at)}",
                      highlight=False)
    else:
        console.print(f"[red]not delivered[/red]: {delivery.last_error}", highlight=False)
    if delivery.state is not notify.DeliveryState.DELIVERED:
        raise typer.Exit(1)
