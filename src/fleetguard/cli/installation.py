"""`fleetguard init`, `serve`, `db upgrade` and `keys rotate-master`."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleetguard.cli.common import (
    DataDirOption,
    console,
    err_console,
    handles_errors,
    settings_from,
)
from fleetguard.core.errors import ValidationFailedError
from fleetguard.core.pki_enums import KeyAlgorithm

if TYPE_CHECKING:
    from fleetguard.identity.ca import Pkcs11Options

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)
keys_app = typer.Typer(help="The master key that encrypts secrets at rest.", no_args_is_help=True)


# The CA's HSM, for `init` and `ca init` alike.
Pkcs11ModuleOption = Annotated[
    Path | None, typer.Option(help="PKCS#11 module: keep the CA keys in this HSM.")
]
Pkcs11TokenLabelOption = Annotated[str | None, typer.Option(help="PKCS#11 token label.")]
Pkcs11PinFileOption = Annotated[
    Path | None, typer.Option(help="File holding the token PIN (else FLEETGUARD_PKCS11_PIN).")
]


def _read_secret_file(path: Path) -> str:
    text = path.read_text().strip()
    if not text:
        raise ValidationFailedError(f"{path} is empty", field="admin-password-file")
    return text


def pkcs11_options(
    module: Path | None, token_label: str | None, pin_file: Path | None
) -> Pkcs11Options | None:
    if module is None:
        return None
    from fleetguard.identity.ca import PKCS11_PIN_ENV, Pkcs11Options

    if not token_label:
        raise ValidationFailedError("--pkcs11-token-label is required with --pkcs11-module",
                                    field="pkcs11-token-label")
    return Pkcs11Options(module, token_label, pin_file=pin_file,
                         pin_env=None if pin_file else PKCS11_PIN_ENV)


@handles_errors
def init_command(
    data_dir: DataDirOption = None,
    admin_username: Annotated[str, typer.Option(help="Name of the first admin.")] = "admin",
    admin_password_file: Annotated[
        Path | None,
        typer.Option(help="Read the first admin's password from this file (default: generate)."),
    ] = None,
    hostname: Annotated[
        list[str] | None, typer.Option(help="DNS name for the server certificate (repeatable).")
    ] = None,
    address: Annotated[
        list[str] | None, typer.Option(help="IP address for the server certificate (repeatable).")
    ] = None,
    ca_key_type: Annotated[
        KeyAlgorithm, typer.Option(help="Key type of the fleet CA.")
    ] = KeyAlgorithm.EC_P256,
    pkcs11_module: Pkcs11ModuleOption = None,
    pkcs11_token_label: Pkcs11TokenLabelOption = None,
    pkcs11_pin_file: Pkcs11PinFileOption = None,
) -> None:
    """Create the data dir, database, master key, fleet CA, server TLS identity, first admin."""
    from fleetguard.install import init_installation

    settings = settings_from(data_dir)
    password = _read_secret_file(admin_password_file) if admin_password_file else None
    result = init_installation(
        settings, admin_username=admin_username, admin_password=password,
        hostnames=hostname, addresses=address, ca_algorithm=ca_key_type,
        pkcs11=pkcs11_options(pkcs11_module, pkcs11_token_label, pkcs11_pin_file),
    )
    console.print(f"initialized {result.data_dir}")
    console.print(f"master key: {result.master_key_source}")
    console.print(f"server certificate: {result.server_certificate}")
    console.print(f"fleet root fingerprint (SHA-256): {result.root_fingerprint}", highlight=False)
    console.print(f"admin username: {result.admin_username}")
    if result.admin_password is not None:
        # Printed exactly once; it is stored only as an argon2id hash.
        print(f"admin password: {result.admin_password}", flush=True)
    console.print("The admin must enroll a TOTP authenticator at first login.")


@handles_errors
def serve_command(
    data_dir: DataDirOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port of the operator API.")] = 8443,
    device_port: Annotated[
        int, typer.Option(help="TCP port of the mutual-TLS device endpoint (0: off).")
    ] = 8444,
    insecure_http: Annotated[
        bool, typer.Option("--insecure-http", help="Plain HTTP API, only behind a TLS proxy.")
    ] = False,
    device_workers: Annotated[
        int, typer.Option(min=1, max=64, help="Processes serving the device endpoint.")
    ] = 1,
    device_max_connections: Annotated[int, typer.Option(
        min=1, help="Connections each device-endpoint process keeps open at most.",
    )] = 8192,
    device_max_per_address: Annotated[int, typer.Option(
        min=1, help="Of those, from one client address (a NAT may hide many devices).",
    )] = 512,
    mqtt_broker: Annotated[
        str | None,
        typer.Option(help="Ingest telemetry from `fleetguard broker` at HOST:PORT."),
    ] = None,
    log_format: Annotated[str, typer.Option(help="text or json")] = "text",
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the HTTPS operator API and the device endpoint (applies migrations first)."""
    from dataclasses import replace

    from fleetguard.core.logging import configure_logging
    from fleetguard.core.runtime import tune_gc_for_service
    from fleetguard.keys import load_master_key
    from fleetguard.server.connections.limits import DEVICE_ENDPOINT
    from fleetguard.server.serve import run_servers

    if log_format not in ("text", "json"):
        raise ValidationFailedError("--log-format must be text or json", field="log-format")
    if device_max_per_address > device_max_connections:
        raise ValidationFailedError(
            "--device-max-per-address must not exceed --device-max-connections",
            field="device-max-per-address",
        )
    device_limits = replace(DEVICE_ENDPOINT, max_connections=device_max_connections,
                            max_per_address=device_max_per_address)
    settings = settings_from(data_dir)
    # First the installation: before `init` the one line says what to run, and nothing
    # (logging included) is set up.
    master = load_master_key(settings)
    configure_logging(log_format, log_level)
    tune_gc_for_service()
    if os.geteuid() == 0:
        _warn_running_as_root(settings.data_dir)
    run_servers(
        settings, host=host, port=port, device_port=device_port,
        insecure_http=insecure_http, device_workers=device_workers, log_format=log_format,
        log_level=log_level, mqtt_broker=mqtt_broker, device_limits=device_limits,
        master_key=master,
    )


def _warn_running_as_root(data_dir: Path) -> None:
    # A warning, not a refusal: containers and the demo run everything as root.
    err_console.print(
        "warning: fleetguard serve is running as root. It needs no privilege (its ports are "
        "above 1024), and as root a flaw in its TLS, HTTP or scan code would give away the "
        "whole machine. Run it as its own account instead:\n"
        "  - as a service: packaging/fleetguard.service (User=fleetguard, data dir "
        "/var/lib/fleetguard, sandboxed; its header says how to install it);\n"
        f"  - by hand: chown -R fleetguard:fleetguard {data_dir} && "
        f"runuser -u fleetguard -- fleetguard serve --data-dir {data_dir}",
        highlight=False,
    )


@db_app.command("upgrade")
@handles_errors
def db_upgrade(data_dir: DataDirOption = None) -> None:
    """Apply every pending migration."""
    from fleetguard.install import open_installation_database
    from fleetguard.store import current_revision

    settings = settings_from(data_dir)
    db = open_installation_database(settings)
    console.print(f"database at revision {current_revision(db)}")
    db.dispose()


@keys_app.command("rotate-master")
@handles_errors
def rotate_master(data_dir: DataDirOption = None) -> None:
    """Re-encrypt every secret at rest under a new master key."""
    from fleetguard.install import open_installation_database, rotate_master_key

    settings = settings_from(data_dir)
    db = open_installation_database(settings)
    new, count = rotate_master_key(settings, db)
    db.dispose()
    console.print(f"re-encrypted {count} secrets under master key {new.key_id.hex()}")
    if settings.master_key_b64:
        console.print("FLEETGUARD_MASTER_KEY is set: store this new value in its place:")
        print(base64.b64encode(new.material).decode(), flush=True)
