"""Devices, certificates, the fleet CA and claim batches, from the command line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleetguard.cli.admin import cli_actor, db_session
from fleetguard.cli.common import DataDirOption, console, handles_errors, settings_from
from fleetguard.cli.installation import (
    Pkcs11ModuleOption,
    Pkcs11PinFileOption,
    Pkcs11TokenLabelOption,
    pkcs11_options,
)
from fleetguard.cli.output import Column, JsonOption, print_json, print_records, table_time
from fleetguard.core.errors import ValidationFailedError
from fleetguard.core.files import write_atomic
from fleetguard.core.pki_enums import KeyAlgorithm, RevocationReason
from fleetguard.registry import DeviceChanges, DeviceFilter, DeviceState
from fleetguard.registry.models import parse_labels

if TYPE_CHECKING:
    from fleetguard.pki import FleetCA

device_app = typer.Typer(help="Devices: add, list, show, set, token, decommission.",
                         no_args_is_help=True)
cert_app = typer.Typer(help="Device certificates: list, revoke.", no_args_is_help=True)
ca_app = typer.Typer(help="The fleet CA: init, rotate, show.", no_args_is_help=True)
claim_app = typer.Typer(help="Claim batches for fleet provisioning.", no_args_is_help=True)


@contextmanager
def fleet_ca(data_dir: Path | None) -> Iterator[FleetCA]:
    from fleetguard.identity.ca import open_installation_ca
    from fleetguard.keys import load_master_key

    settings = settings_from(data_dir)
    with open_installation_ca(settings, load_master_key(settings)) as ca:
        yield ca


@device_app.command("add")
@handles_errors
def device_add(
    name: str,
    serial: Annotated[str | None, typer.Option(help="The maker's serial number.")] = None,
    vendor: Annotated[str | None, typer.Option(help="Who made it.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Hardware model.")] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value (repeatable)")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Register a device (state: registered)."""
    from fleetguard.registry import service as registry

    with db_session(data_dir) as session:
        device = registry.register_device(
            session, name=name, serial=serial, vendor=vendor, hardware_model=model,
            labels=parse_labels(label or []), actor=cli_actor(),
        )
    print(device.id)


@device_app.command("list")
@handles_errors
def device_list(
    state: Annotated[DeviceState | None, typer.Option(help="Only devices in this state.")] = None,
    labels: Annotated[str | None, typer.Option(help="k=v,k2!=v2,k3")] = None,
    search: Annotated[
        str | None, typer.Option("--search", "-q", help="Text in the name or serial, or the id.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 100,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """List devices, oldest first (--json: every field, as `device show` prints it)."""
    from fleetguard.registry import service as registry

    with db_session(data_dir) as session:
        page = registry.list_devices(
            session, DeviceFilter(state=state, label_query=labels, search=search), limit=limit
        )
    print_records(
        page.devices,
        [Column("id"), Column("state"), Column("last seen"), Column("name", free=True)],
        lambda d: [d.id, d.state.value, table_time(d.last_seen_at), d.name],
        as_json=as_json,
    )


@device_app.command("show")
@handles_errors
def device_show(device_id: str, data_dir: DataDirOption = None) -> None:
    """Show one device."""
    from fleetguard.registry import service as registry

    with db_session(data_dir) as session:
        print_json(registry.get_device(session, device_id))


@device_app.command("set")
@handles_errors
def device_set(
    device_id: str,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    vendor: Annotated[str | None, typer.Option(help="New vendor.")] = None,
    firmware: Annotated[
        str | None, typer.Option("--firmware", help="Firmware version it runs.")
    ] = None,
    label: Annotated[list[str] | None, typer.Option(help="key=value; replaces all labels")] = None,
    state: Annotated[
        DeviceState | None, typer.Option(help="New state (decommission has its own command).")
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Change a device's fields or state."""
    from fleetguard.registry import service as registry

    with db_session(data_dir) as session:
        registry.update_device(
            session, device_id,
            DeviceChanges(name=name, vendor=vendor, firmware_version=firmware,
                          labels=None if label is None else parse_labels(label)),
            actor=cli_actor(),
        )
        if state is not None:
            if state is DeviceState.DECOMMISSIONED:
                raise ValidationFailedError("use `fleetguard device decommission`", field="state")
            registry.set_device_state(session, device_id, state, actor=cli_actor())
        print_json(registry.get_device(session, device_id))


@device_app.command("token")
@handles_errors
def device_token(
    device_id: str,
    hours: Annotated[int, typer.Option(min=1, max=2160, help="Valid for this long.")] = 168,
    data_dir: DataDirOption = None,
) -> None:
    """A one-time enrollment token (it carries the fleet root's fingerprint)."""
    from fleetguard.identity import service as identity

    with fleet_ca(data_dir) as ca, db_session(data_dir) as session:
        token, _ = identity.create_enrollment_token(
            session, ca, device_id=device_id, actor=cli_actor(), issuer=None,
            ttl=timedelta(hours=hours),
        )
    print(token)


@device_app.command("decommission")
@handles_errors
def device_decommission(
    device_id: str,
    reason: Annotated[str, typer.Option(help="Why, for the audit log.")] = "",
    data_dir: DataDirOption = None,
) -> None:
    """Retire a device for good: its certificates are revoked at once."""
    from fleetguard.server.decommission import decommission_device

    with fleet_ca(data_dir) as ca, db_session(data_dir) as session:
        decommission_device(session, ca, device_id=device_id, actor=cli_actor(), reason=reason)
    console.print(f"decommissioned {device_id}")


@cert_app.command("list")
@handles_errors
def cert_list(
    device: Annotated[str | None, typer.Option("--device", help="Only this device's.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Issued device certificates, newest first (--json: every field)."""
    from fleetguard.identity import service as identity

    with db_session(data_dir) as session:
        certs = identity.list_certificates(session, device_id=device)
    # A serial is 40 hex digits: beside it, 80 columns hold the device or, when the list
    # is one device's, the address its certificate was last used from.
    last = Column("last seen from", free=True) if device else Column("device", free=True)
    print_records(
        certs,
        [Column("serial"), Column("state"), Column("not after"), last],
        lambda c: [c.serial_hex, "revoked" if c.revoked_at else "valid",
                   f"{c.not_after:%Y-%m-%d}", (c.last_seen_from or "") if device else c.device_id],
        as_json=as_json,
    )


@cert_app.command("revoke")
@handles_errors
def cert_revoke(
    serial: str,
    reason: Annotated[
        RevocationReason, typer.Option(help="Why (RFC 5280 reason code).")
    ] = RevocationReason.UNSPECIFIED,
    data_dir: DataDirOption = None,
) -> None:
    """Revoke a certificate: the CRL is republished and the device is cut off at once."""
    from fleetguard.identity import service as identity

    with fleet_ca(data_dir) as ca, db_session(data_dir) as session:
        identity.revoke_certificate(session, ca, serial_hex=serial, actor=cli_actor(),
                                    reason=reason)
    console.print(f"revoked {serial}")


@ca_app.command("init")
@handles_errors
def ca_init(
    key_type: Annotated[
        KeyAlgorithm, typer.Option(help="Key type of the fleet CA.")
    ] = KeyAlgorithm.EC_P256,
    pkcs11_module: Pkcs11ModuleOption = None,
    pkcs11_token_label: Pkcs11TokenLabelOption = None,
    pkcs11_pin_file: Pkcs11PinFileOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create the fleet root and issuing CA (`fleetguard init` already does this)."""
    from fleetguard.identity.ca import init_installation_ca
    from fleetguard.keys import load_master_key

    settings = settings_from(data_dir)
    options = pkcs11_options(pkcs11_module, pkcs11_token_label, pkcs11_pin_file)
    with init_installation_ca(settings, load_master_key(settings), algorithm=key_type,
                              pkcs11=options) as ca:
        console.print(f"fleet root fingerprint (SHA-256): {ca.root_fingerprint}",
                      highlight=False)


@ca_app.command("rotate")
@handles_errors
def ca_rotate(
    key_type: Annotated[
        KeyAlgorithm | None,
        typer.Option(help="Key type of the new CA (default: the current one's)."),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """New issuing CA; certificates of the old one stay valid until they expire."""
    from fleetguard.identity import service as identity

    with fleet_ca(data_dir) as ca, db_session(data_dir) as session:
        new = identity.rotate_issuing_ca(session, ca, actor=cli_actor(), key_algorithm=key_type)
    console.print(f"new issuing CA {new}")


@ca_app.command("show")
@handles_errors
def ca_show(data_dir: DataDirOption = None) -> None:
    """Root fingerprint and issuing CAs."""
    with fleet_ca(data_dir) as ca:
        console.print(f"root fingerprint (SHA-256): {ca.root_fingerprint}", highlight=False)
        for issuing in ca.issuing_cas:
            status = issuing.status.value if issuing.status else ""
            console.print(f"issuing CA {issuing.ca_id}: {status}, expires "
                          f"{issuing.certificate.not_valid_after_utc:%Y-%m-%d}")


@claim_app.command("create")
@handles_errors
def claim_create(
    name: str,
    serials_file: Annotated[Path, typer.Option(help="One serial per line.")],
    out_dir: Annotated[Path, typer.Option(help="Where to write claim.key, claim.crt, ca.pem.")],
    days: Annotated[int, typer.Option(min=1, max=398, help="Claim certificate lifetime.")] = 365,
    data_dir: DataDirOption = None,
) -> None:
    """A claim certificate for a production batch and its serial allow-list."""
    from fleetguard.identity import service as identity

    serials = serials_file.read_text().splitlines()
    with fleet_ca(data_dir) as ca, db_session(data_dir) as session:
        issued = identity.create_claim_batch(session, ca, name=name, serials=serials,
                                             actor=cli_actor(), issuer=None,
                                             validity=timedelta(days=days))
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(out_dir / "claim.key", issued.key_pem.encode(), mode=0o600)
    (out_dir / "claim.crt").write_text(issued.certificate_pem)
    (out_dir / "ca.pem").write_text(issued.ca_bundle_pem)
    console.print(f"batch {issued.batch.batch_id}: {issued.batch.serials} serials; "
                  f"claim credentials in {out_dir}")


@claim_app.command("reopen")
@handles_errors
def claim_reopen(serial: str, data_dir: DataDirOption = None) -> None:
    """Let a serial enroll once more."""
    from fleetguard.identity import service as identity

    with db_session(data_dir) as session:
        identity.reopen_claim_serial(session, serial=serial, actor=cli_actor())
    console.print(f"reopened {serial}")
