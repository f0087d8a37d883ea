"""The device's agent in the lab: the real collector, reporting every interval to a file.

Runs as PID 1 of the device's PID namespace (so ``/proc`` shows only the device's
processes, as on a containerised device), inside its network namespace. Each report is
built by :class:`fleetguard.agent.collectors.TelemetryCollector`, encoded as the agent
sends it (``encode_within_limit``, JSON) and appended to the output file, one message a
line; the test decodes and scores them. Nothing but the transport differs from the agent.

Reports and samples follow the agent runner's schedules (``AgentRunner._collect_loop`` and
``_sample_loop``): a report at start and every ``interval_s``; a sample every
``sample_interval_s`` (the agent's default unless given) from one interval after start, a
late one skipped, never caught up, and one that used more CPU than ``sample_cpu_budget`` of
the interval spacing out the next.

Usage: python -m tests.detect.realtools.device_agent STATE_DIR OUT_FILE INTERVAL_S
[SAMPLE_INTERVAL_S]
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType

from fleetguard.agent.collectors import TelemetryCollector, encode_within_limit
from fleetguard.agent.config import AgentConfig
from fleetguard.agent.sampler import cpu_seconds_of
from fleetguard.protocol import ContentType


def _reap_orphans(_signum: int, _frame: FrameType | None) -> None:
    # PID 1 inherits every orphan of the namespace; a real init reaps them, so does this.
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def run(state_dir: Path, out: Path, interval_s: float, sample_interval_s: float | None) -> None:
    signal.signal(signal.SIGCHLD, _reap_orphans)
    signal.signal(signal.SIGTERM, _stop)
    config = AgentConfig(state_dir=state_dir, interval_s=interval_s)
    if sample_interval_s is not None:
        config = replace(config, sample_interval_s=sample_interval_s)
    collector = TelemetryCollector(config)
    sampling = config.sample_interval_s > 0
    seq = 0
    start = time.monotonic()
    next_report = start
    next_sample = start + config.sample_interval_s if sampling else float("inf")
    with open(out, "ab", buffering=0) as sink:
        while True:
            time.sleep(max(min(next_report, next_sample) - time.monotonic(), 0.0))
            if time.monotonic() >= next_sample:
                started = time.monotonic()
                spent = cpu_seconds_of(collector.sample)  # CPU, not wall, as the runner
                next_sample = max(next_sample + config.sample_interval_s, time.monotonic(),
                                  started + spent / config.sample_cpu_budget)
            if time.monotonic() >= next_report:
                report = collector.collect(seq=seq)
                sink.write(encode_within_limit(report, ContentType.JSON) + b"\n")
                seq += 1
                next_report = max(next_report + interval_s, time.monotonic())


if __name__ == "__main__":
    run(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]),
        float(sys.argv[4]) if len(sys.argv) > 4 else None)
