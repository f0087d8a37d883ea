"""The device agent: depends on fleetguard.core and fleetguard.protocol only.

It never imports server code, so it installs with ``pip install fleetguard[agent]``
(a test imports it in a fresh interpreter and checks that no server module came along).

>>> import tempfile
>>> from pathlib import Path
>>> from fleetguard.agent import AgentConfig, ReportBuffer
>>> config = AgentConfig(state_dir=Path(tempfile.mkdtemp()), interval_s=1)
>>> with ReportBuffer(config.buffer_path, max_items=2, max_bytes=config.buffer_max_bytes) as box:
...     for payload in (b"a", b"b", b"c"):
...         _ = box.push(payload, config.content_type)
...     [item.payload for item in box.peek(10)], box.dropped_total
([b'b', b'c'], 1)
"""

from fleetguard.agent.backoff import Backoff
from fleetguard.agent.buffer import BufferedReport, ReportBuffer
from fleetguard.agent.collectors import (
    AuthFailureCounter,
    SocketSnapshot,
    TelemetryCollector,
    boot_id,
    collect_disks,
    collect_interfaces,
    collect_network_counters,
    collect_sockets,
    encode_within_limit,
    uptime_seconds,
)
from fleetguard.agent.commands import CommandDispatcher, CommandHandlers
from fleetguard.agent.config import DEFAULT_INTERVAL_S, MIN_INTERVAL_S, AgentConfig
from fleetguard.agent.errors import OutboxError

__all__ = [
    "DEFAULT_INTERVAL_S",
    "MIN_INTERVAL_S",
    "AgentConfig",
    "AuthFailureCounter",
    "Backoff",
    "BufferedReport",
    "CommandDispatcher",
    "CommandHandlers",
    "OutboxError",
    "ReportBuffer",
    "SocketSnapshot",
    "TelemetryCollector",
    "boot_id",
    "collect_disks",
    "collect_interfaces",
    "collect_network_counters",
    "collect_sockets",
    "encode_within_limit",
    "uptime_seconds",
]
