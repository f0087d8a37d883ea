"""How many connections each listener keeps and how long a client may take; what fits in
the process's open files."""

from __future__ import annotations

import logging
import resource
from collections.abc import Sequence
from dataclasses import dataclass, replace

from fleetguard.core.errors import ValidationFailedError

log = logging.getLogger("fleetguard.server")

#: Open files the process keeps for itself beside the listeners' connections: the database
#: pool, logs, the CA, and scans run by the server (256 sockets at their default concurrency).
RESERVED_FILES = 512
@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """How many connections one listener keeps, and how long a client may take."""

    max_connections: int
    max_per_address: int
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    body_min_rate: int = 500
    max_header_bytes: int = 64 * 1024
    #: A client that stops reading its response: no progress in this long and it is cut.
    send_timeout_s: float = 30.0
    #: A closed TLS connection waits this long for the client's close_notify (asyncio: 30 s).
    tls_shutdown_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_per_address", "body_min_rate", "max_header_bytes"):
            if getattr(self, name) < 1:
                raise ValidationFailedError(f"{name} must be at least 1", field=name)
        for name in ("handshake_timeout_s", "idle_timeout_s", "header_timeout_s",
                     "body_timeout_s", "send_timeout_s", "tls_shutdown_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValidationFailedError(f"{name} must be above 0", field=name)
        if self.max_per_address > self.max_connections:
            raise ValidationFailedError(
                f"{self.max_per_address} connections per address is more than the "
                f"{self.max_connections} the listener keeps in all", field="max_per_address",
            )


#: Operators are few: a browser opens about six connections, so 64 per address is ten
#: people behind one NAT; 1,024 in all costs at most ~32 MB of idle TLS connections.
OPERATOR_API = ListenerLimits(max_connections=1024, max_per_address=64)
#: A site or a carrier NAT may put thousands of devices behind one address. 10,000 devices
#: reporting every 300 s, each connection up to ~10 s open, is ~330 at once: 512 per address
#: leaves room for a reconnect burst. 8,192 in all (~250 MB of idle TLS connections at
#: worst) is 25 times what 100,000 such devices keep open.
DEVICE_ENDPOINT = ListenerLimits(max_connections=8192, max_per_address=512)


def fit_to_open_files(
    limits: Sequence[ListenerLimits], reserved: int = RESERVED_FILES,
) -> list[ListenerLimits]:
    """Raise this process's open-file limit to what the listeners need, or scale them to it.

    Without this a flood on one listener could use up the process's descriptors and keep
    the other from accepting at all: the per-listener caps only hold if they fit together.
    """
    wanted = sum(limit.max_connections for limit in limits) + reserved
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= wanted:
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return list(limits)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    budget = max(hard - reserved, hard // 2)
    total = sum(limit.max_connections for limit in limits)
    fitted = []
    for limit in limits:
        share = max(1, limit.max_connections * budget // total)
        fitted.append(replace(limit, max_connections=share,
                              max_per_address=min(limit.max_per_address, share)))
    log.warning(
        "the open-file limit (%d) is below the %d the listeners need: they keep at most %s "
        "connections; raise it (ulimit -n, LimitNOFILE=) to keep more", hard, wanted,
        " and ".join(str(f.max_connections) for f in fitted),
    )
    return fitted
