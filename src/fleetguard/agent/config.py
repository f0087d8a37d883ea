"""The agent's settings: built once in the entry point and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetguard.core.errors import ConfigurationError
from fleetguard.protocol import MAX_MESSAGE_BYTES, MAX_NEW_EXECUTABLES, ContentType

DEFAULT_INTERVAL_S = 300.0
MIN_INTERVAL_S = 1.0
DEFAULT_SAMPLE_INTERVAL_S = 1.0
DEFAULT_SAMPLE_CPU_BUDGET = 0.02  # of one core (benchmarks/bench_agent_sampling.py)
MIN_SAMPLE_INTERVAL_S = 0.1
# BusyBox syslogd, the usual logger on IoT firmware, writes every facility to
# /var/log/messages: the last resort, where neither auth log exists.
DEFAULT_AUTH_LOGS = (Path("/var/log/auth.log"), Path("/var/log/secure"), Path("/var/log/messages"))


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Where the agent keeps its state, how often it reports, and its bounds.

    Args:
        state_dir: holds the report buffer and what the agent has already seen.
        interval_s: seconds between telemetry reports (at least 1; 300 by default).
        sample_interval_s: seconds between samples of sockets and processes within a
            report period (1 by default; 0: only at each report). Measured at 1 s: 0.8% of
            a core with 147 processes and 102 sockets, 1.2% with 244 and 602
            (benchmarks/bench_agent_sampling.py).
        sample_cpu_budget: the share of the time between samples that sampling may take;
            a slower sample (thousands of sockets) spaces out the next one.
        content_type: how reports are encoded on the wire.
        buffer_max_items / buffer_max_bytes: the offline buffer's bounds; past either,
            the oldest reports are dropped and counted.
        hash_max_files: new executables hashed per report; the rest wait for the next one.
        hash_max_file_bytes: larger executables are reported without a hash.
        auth_logs: files counted for authentication failures, the first readable one wins.
    """

    state_dir: Path
    interval_s: float = DEFAULT_INTERVAL_S
    sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S
    sample_cpu_budget: float = DEFAULT_SAMPLE_CPU_BUDGET
    # JSON by default: about 20% larger than CBOR, but the server validates it straight
    # from the bytes, twice as fast (benchmarks/bench_protocol.py).
    content_type: ContentType = ContentType.JSON
    buffer_max_items: int = 10_000
    buffer_max_bytes: int = 64 * 1024 * 1024
    hash_max_files: int = 16
    hash_max_file_bytes: int = 64 * 1024 * 1024
    auth_logs: tuple[Path, ...] = DEFAULT_AUTH_LOGS

    def __post_init__(self) -> None:
        if not self.interval_s >= MIN_INTERVAL_S:
            raise ConfigurationError(f"interval_s must be at least {MIN_INTERVAL_S:g} s")
        if self.sample_interval_s != 0 and not (
                MIN_SAMPLE_INTERVAL_S <= self.sample_interval_s <= self.interval_s):
            raise ConfigurationError(
                f"sample_interval_s must be 0 (off) or {MIN_SAMPLE_INTERVAL_S:g} s up to "
                "interval_s")
        if not 0 < self.sample_cpu_budget <= 1:
            raise ConfigurationError("sample_cpu_budget must be above 0 and at most 1")
        if self.buffer_max_items < 1:
            raise ConfigurationError("buffer_max_items must be at least 1")
        if self.buffer_max_bytes < MAX_MESSAGE_BYTES:
            raise ConfigurationError(
                f"buffer_max_bytes must hold at least one message ({MAX_MESSAGE_BYTES} bytes)"
            )
        if not 1 <= self.hash_max_files <= MAX_NEW_EXECUTABLES:
            raise ConfigurationError(f"hash_max_files must be 1..{MAX_NEW_EXECUTABLES}")
        if self.hash_max_file_bytes < 0:
            raise ConfigurationError("hash_max_file_bytes must not be negative")

    @property
    def buffer_path(self) -> Path:
        return self.state_dir / "outbox.sqlite3"

    @property
    def known_executables_path(self) -> Path:
        return self.state_dir / "known_executables.json"
