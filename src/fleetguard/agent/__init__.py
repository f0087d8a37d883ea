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

import typing as _typing

from fleetguard.core.lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
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
    from fleetguard.agent.config import (
        DEFAULT_INTERVAL_S,
        DEFAULT_SAMPLE_INTERVAL_S,
        MIN_INTERVAL_S,
        AgentConfig,
    )
    from fleetguard.agent.errors import OutboxError
    from fleetguard.agent.sampler import ActivitySampler, PeriodActivity

# Loaded on first use: `fleetguard --help` imports this package's cli and nothing heavy.
__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "Backoff": "fleetguard.agent.backoff",
        "BufferedReport": "fleetguard.agent.buffer",
        "ReportBuffer": "fleetguard.agent.buffer",
        "AuthFailureCounter": "fleetguard.agent.collectors",
        "SocketSnapshot": "fleetguard.agent.collectors",
        "TelemetryCollector": "fleetguard.agent.collectors",
        "boot_id": "fleetguard.agent.collectors",
        "collect_disks": "fleetguard.agent.collectors",
        "collect_interfaces": "fleetguard.agent.collectors",
        "collect_network_counters": "fleetguard.agent.collectors",
        "collect_sockets": "fleetguard.agent.collectors",
        "encode_within_limit": "fleetguard.agent.collectors",
        "uptime_seconds": "fleetguard.agent.collectors",
        "CommandDispatcher": "fleetguard.agent.commands",
        "CommandHandlers": "fleetguard.agent.commands",
        "DEFAULT_INTERVAL_S": "fleetguard.agent.config",
        "DEFAULT_SAMPLE_INTERVAL_S": "fleetguard.agent.config",
        "MIN_INTERVAL_S": "fleetguard.agent.config",
        "AgentConfig": "fleetguard.agent.config",
        "OutboxError": "fleetguard.agent.errors",
        "ActivitySampler": "fleetguard.agent.sampler",
        "PeriodActivity": "fleetguard.agent.sampler",
    },
)

__all__ = [
    "DEFAULT_INTERVAL_S",
    "DEFAULT_SAMPLE_INTERVAL_S",
    "MIN_INTERVAL_S",
    "ActivitySampler",
    "AgentConfig",
    "AuthFailureCounter",
    "Backoff",
    "BufferedReport",
    "CommandDispatcher",
    "CommandHandlers",
    "OutboxError",
    "PeriodActivity",
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
