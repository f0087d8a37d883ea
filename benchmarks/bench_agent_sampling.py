"""The agent's sampler: CPU seconds per wall second, as a fraction of one core, against its budget.

Between two reports the agent samples sockets and processes every ``sample_interval_s``
(1 s by default; ``fleetguard.agent.sampler``). Its budget is **2% of one core at a 1 s
interval**: an agent is a guest on a device that has work of its own, and a small
single-core device (a camera's or a gateway's Cortex-A7) must not notice it; 2% is the
order of what a device-side monitor is expected to cost idle (one sample is a few
milliseconds of /proc and netlink reads). The figure printed is the measured CPU time
(user + system, of the sampling thread) per sample, divided by the interval. The cost grows
with the sockets and processes there are; past the budget (thousands of sockets, a device
under a scan) the agent's runner spaces its samples out to stay within it
(``AgentConfig.sample_cpu_budget``).

The peer, in the same run on the same machine: sampling the same things the way the
report-time collector does, through psutil (``net_connections``, which walks every
process's file descriptors to find socket owners, and per-process ``cpu_times``), and the
sampler reading TCP from ``/proc/net/tcp{,6}`` instead of netlink.

    PYTHONPATH=src python benchmarks/bench_agent_sampling.py [--samples 40] [--interval 1]
        [--sockets 0] [--processes 0]

``--sockets N`` opens N extra loopback connections (2N sockets) and ``--processes N``
starts N sleeping processes for the run, to see how the cost grows with the machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack

import psutil

from fleetguard.agent import _proctables
from fleetguard.agent.config import DEFAULT_SAMPLE_CPU_BUDGET as BUDGET
from fleetguard.agent.sampler import ActivitySampler


def _cost_per_sample(sample: Callable[[], object], samples: int) -> tuple[float, float]:
    """(mean, p95) CPU seconds of one call, measured on this thread (user + system)."""
    sample()  # warm: the first sample reads every process's executable link
    costs = []
    for _ in range(samples):
        start = time.thread_time()
        sample()
        costs.append(time.thread_time() - start)
        time.sleep(0.01)  # let the machine move on between samples
    costs.sort()
    return statistics.fmean(costs), costs[int(len(costs) * 0.95) - 1]


def _psutil_sample() -> None:
    psutil.net_connections(kind="inet")
    for process in psutil.process_iter(["name", "exe", "cpu_times"]):
        _ = process.info


class _ProcTcpSampler(ActivitySampler):
    def sample(self) -> None:  # as ActivitySampler.sample, TCP read from /proc/net
        now_ms = self._clock_ms()
        self._sample_sockets(_proctables.read_sockets(self._proc, netlink=False), [], now_ms)
        uptime = _proctables.uptime_ticks(self._proc)
        self._sample_processes(_proctables.read_processes(self._proc), uptime, now_ms)
        self._period.samples += 1


def _load(stack: ExitStack, sockets: int, processes: int) -> None:
    if sockets:
        server = stack.enter_context(socket.create_server(("127.0.0.1", 0), backlog=sockets))
        for _ in range(sockets):
            stack.enter_context(socket.create_connection(server.getsockname()))
            stack.enter_context(server.accept()[0])
    for _ in range(processes):
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE)
        stack.callback(child.communicate, b"")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--interval", type=float, default=1.0, help="sample interval, s")
    parser.add_argument("--sockets", type=int, default=0, help="extra loopback connections")
    parser.add_argument("--processes", type=int, default=0, help="extra sleeping processes")
    args = parser.parse_args()

    with ExitStack() as stack:
        _load(stack, args.sockets, args.processes)
        time.sleep(0.5)
        n_processes = len(_proctables.read_processes())
        n_sockets = len(_proctables.read_sockets())
        clock = lambda: int(time.time() * 1000)  # noqa: E731
        ours = _cost_per_sample(ActivitySampler(clock).sample, args.samples)
        proc_tcp = _cost_per_sample(_ProcTcpSampler(clock, watch_closed=False).sample,
                                    args.samples)
        peer = _cost_per_sample(_psutil_sample, args.samples)

    print(f"machine: {os.cpu_count()} cores, {n_processes} processes, {n_sockets} sockets; "
          f"sample interval {args.interval:g} s, {args.samples} samples each")
    for name, (mean, p95) in (("sampler (TCP over netlink)", ours),
                              ("sampler, TCP from /proc/net", proc_tcp),
                              ("psutil (connections + processes)", peer)):
        print(f"  {name:34s} {mean * 1000:6.2f} ms CPU/sample (p95 {p95 * 1000:6.2f} ms) = "
              f"{mean / args.interval:6.2%} of a core")
    fraction = ours[0] / args.interval
    print(f"ratio sampler / budget ({BUDGET:.0%} of a core): {fraction / BUDGET:.2f} "
          f"({'within' if fraction <= BUDGET else 'OVER'} budget)")
    print(f"ratio psutil / sampler: {peer[0] / ours[0]:.1f}x; "
          f"/proc/net / netlink: {proc_tcp[0] / ours[0]:.2f}x")


if __name__ == "__main__":
    main()
