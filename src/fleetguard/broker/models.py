"""Plain data of the broker package: how to run it, which files it uses, what a sync did."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetguard.protocol import MAX_MESSAGE_BYTES

DEFAULT_PORT = 8883
DEFAULT_HOST = "127.0.0.1"
# The platform's MQTT identities: their certificates' CNs, and so their client ids.
DEFAULT_SERVICE_NAME = "fleetguard-platform"
DEFAULT_ADMIN_NAME = "fleetguard-dynsec-admin"

# The broker's limits (``mosquitto.conf``; docs/decisions/0017-broker-limits.md).
#: MQTT headers beside the largest valid message: fixed header (5), topic (2 + at most
#: 128, the protocol's topic limit), packet id (2), MQTT 5 properties (content type,
#: expiry, correlation data, ...); 4 KiB is several times what any of our clients send.
PACKET_HEADROOM = 4096
#: A whole MQTT packet a client sends (any kind, any client, MQTT 3.1.1 or 5): one that
#: is bigger is refused from its fixed header, before the broker reads or allocates its
#: body, and the client is disconnected. MQTT 5 clients are told the limit in CONNACK.
MAX_PACKET_BYTES = MAX_MESSAGE_BYTES + PACKET_HEADROOM
#: QoS 1 messages a session holds beyond those in flight (Mosquitto's default is 1000).
#: Ingestion acknowledges only after its commit, so a busy or restarting platform relies
#: on this queue: about a minute at 5,000 reports/s.
MAX_QUEUED_MESSAGES = 300_000
#: The same queue in payload bytes, whichever limit comes first: 300,000 reports of the
#: simulator's mean 2.5 KB (JSON; CBOR is smaller) fit in 750 MB, so at 512 MiB a full
#: queue is some 200,000 reports, 40 s at 5,000/s and 3.5 min at 1,000/s; without it,
#: 300,000 messages of the largest size were 78 GB.
MAX_QUEUED_BYTES = 512 * 1024 * 1024
#: Payload bytes in flight to (or from) one client. The ingest session asks for 10,000
#: unacknowledged messages (MQTT 5 Receive Maximum): 25 MB at 2.5 KB, 2.6 GB at the
#: largest size. Bounded here, the count still decides for ordinary reports.
MAX_INFLIGHT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """What the operator chooses. ``host`` ``0.0.0.0`` or ``::`` listens on all addresses.

    ``mosquitto`` and ``dynsec_plugin`` default to the Debian/Ubuntu package's paths.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    service_name: str = DEFAULT_SERVICE_NAME
    admin_name: str = DEFAULT_ADMIN_NAME
    persistence: bool = True
    mosquitto: Path | None = None
    dynsec_plugin: Path | None = None
    # The account mosquitto runs as. None: ``mosquitto`` when started by root and that
    # account can reach the broker's files (else root, with a warning), or the current one.
    run_as: str | None = None
    max_packet_bytes: int = MAX_PACKET_BYTES
    max_queued_messages: int = MAX_QUEUED_MESSAGES
    max_queued_bytes: int = MAX_QUEUED_BYTES
    max_inflight_bytes: int = MAX_INFLIGHT_BYTES


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """Everything ``prepare_broker`` wrote or points the broker at (all absolute paths).

    The ``tls_*`` files are the broker's own TLS server identity (from the fleet CA, for
    ``tls_names``); the installation's ``tls/server.key`` is the platform's, and the
    broker's account never reads it. The platform has two MQTT identities of its own, and
    the broker names every client by its certificate's CN (``use_username_as_clientid``),
    so each holds one connection at a time (a second one with it takes the first one's
    place): ``service_*`` (CN=``service_name``) is ``fleetguard serve``'s, its ingest
    consumer's, and may read ``fg/d/+/#`` and publish commands; ``admin_*``
    (CN=``admin_name``) is the sync loop's in ``fleetguard broker``, the dynamic-security
    admin, and touches no device topic. Neither holds the other's role.
    """

    directory: Path
    config_file: Path
    state_dir: Path
    dynsec_file: Path
    log_file: Path
    ca_bundle: Path
    crl_file: Path
    tls_cert: Path
    tls_key: Path
    service_cert: Path
    service_key: Path
    service_name: str
    admin_cert: Path
    admin_key: Path
    admin_name: str
    host: str
    port: int
    run_as: str = ""  # the account mosquitto runs as, once the files are written
    tls_names: tuple[str, ...] = ()  # DNS names and IP addresses the broker's certificate names

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
