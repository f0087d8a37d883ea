"""The device's agent in the lab: the real collector, reporting every interval to a file.

Runs as PID 1 of the device's PID namespace (so ``/proc`` shows only the device's
processes, as on a containerised device), inside its network namespace. Each report is
built by :class:`fleetguard.agent.collectors.TelemetryCollector`, encoded as the agent
sends it (``encode_within_limit``, JSON) and appended to the output file, one message a
line; the test decodes and scores them. Nothing but the transport differs from the agent.

Usage: python -m tests.detect.realtools.device_agent STATE_DIR OUT_FILE INTERVAL_S
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from fleetguard.agent.collectors import TelemetryCollector, encode_within_limit
from fleetguard.agent.config import AgentConfig
from fleetguard.protocol import ContentType


def _reap_orphans(_signum: int, _frame: FrameType | None) -> None:
    # PID 1 inherits every orphan of the namespace; a real init reaps them, so does this.
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def run(state_dir: Path, out: Path, interval_s: float) -> None:
    signal.signal(signal.SIGCHLD, _reap_orphans)
    signal.signal(signal.SIGTERM, _stop)
    collector = TelemetryCollector(AgentConfig(state_dir=state_dir, interval_s=interval_s))
    sample = getattr(collector, "sample", None)  # between-report sampling, where the agent has it
    seq = 0
    next_report = time.monotonic() + interval_s
    with open(out, "ab", buffering=0) as sink:
        while True:
            while (wait := next_report - time.monotonic()) > 0:
                time.sleep(min(wait, 0.05))
                if callable(sample):
                    sample()
            report = collector.collect(seq=seq)
            sink.write(encode_within_limit(report, ContentType.JSON) + b"\n")
            seq += 1
            next_report += interval_s


if __name__ == "__main__":
    run(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]))
