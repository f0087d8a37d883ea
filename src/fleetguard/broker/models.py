"""Plain data of the broker package: how to run it, which files it uses, what a sync did."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 8883
DEFAULT_HOST = "127.0.0.1"
DEFAULT_SERVICE_NAME = "fleetguard-platform"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """What the operator chooses. ``host`` ``0.0.0.0`` or ``::`` listens on all addresses.

    ``mosquitto`` and ``dynsec_plugin`` default to the Debian/Ubuntu package's paths.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    service_name: str = DEFAULT_SERVICE_NAME
    persistence: bool = True
    mosquitto: Path | None = None
    dynsec_plugin: Path | None = None
    # The account mosquitto runs as. None: ``mosquitto`` when started by root and that
    # account can reach the broker's files (else root, with a warning), or the current one.
    run_as: str | None = None


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Everything ``prepare_broker`` wrote or points the broker at (all absolute paths).

    The ``service_*`` files are the platform's own MQTT identity (CN=``service_name``):
    the dynsec admin, allowed to read ``fg/d/+/#`` and to publish commands. Ingestion
    connects with the same files (and a client id of its own).
    """

    directory: Path
    config_file: Path
    state_dir: Path
    dynsec_file: Path
    log_file: Path
    ca_bundle: Path
    crl_file: Path
    server_cert: Path
    server_key: Path
    service_cert: Path
    service_key: Path
    service_name: str
    host: str
    port: int
    run_as: str = ""  # the account mosquitto runs as, once the files are written

    @property
    def connect_host(self) -> str:
        """Where a local client reaches the listener (loopback for a wildcard address)."""
        if self.host in ("", "0.0.0.0"):  # noqa: S104 - comparing, not binding
            return "127.0.0.1"
        if self.host == "::":
            return "::1"
        return self.host


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    """What one reconcile pass changed in the broker (device ids, sorted)."""

    entitled: int
    granted: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    repaired: tuple[str, ...] = ()
    kicked: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.granted or self.removed or self.repaired or self.kicked)
