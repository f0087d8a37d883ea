"""A two-host lab in network namespaces: a device running the real agent, and the outside.

The device is a network namespace (``eth0`` at 192.0.2.1/24) with its own PID and mount
namespaces: ``/proc`` shows only its processes, ``/tmp``, ``/var/log`` and ``/run`` are its
own (empty tmpfs), the test's directory is seen at ``/run/lab`` (:meth:`Lab.in_device`), and
Python at ``/opt/python``, as a device's firmware would ship it.
Its PID 1 is the agent (:mod:`tests.detect.realtools.device_agent`), which writes a
report every interval. The outside is another network namespace (``eth0`` at 192.0.2.2/24)
at the other end of a veth pair: the attacker, the C2 server, the drop site.

Tools run *on* the device (``Lab.on_device``) enter all three of its namespaces; tools
run *outside* (``Lab.outside``) enter the outside namespace. Every namespace is named
after this process's pid and a counter, so parallel test workers never meet, and is
removed on close, also after a failure; namespaces left by a killed run (their pid no
longer alive) are removed when the next lab starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import site
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import pytest

import fleetguard
from fleetguard.detect import (
    DeviceFeatureState,
    EvaluationContext,
    Family,
    RuleState,
    Verdict,
    default_ruleset,
    evaluate,
    extract_features,
)
from fleetguard.protocol import ContentType, MessageKind, TelemetryReport, decode_message

# Addresses from a documentation range (RFC 5737), outside every private network: to the
# device, the outside host is the internet, where a C2 server or a mining pool would be.
DEVICE = "192.0.2.1"
OUTSIDE = "192.0.2.2"
PREFIX = "fgrt"
DEVICE_LAB = Path("/run/lab")  # the test's directory, as the device sees it
REPO = Path(__file__).resolve().parents[3]
HOST_CPU_RULE = "miner.cpu-pinned"
_SEQUENCE = count()
_NAME = re.compile(rf"^{PREFIX}(\d+)x\d+[do]$")


def require(*tools: str) -> None:
    """Skip the test, naming what is missing, unless the lab can run and the tools exist."""
    if os.geteuid() != 0:
        pytest.skip("the namespace lab needs root (ip netns, unshare, nsenter)")
    missing = [t for t in ("ip", "ss", "unshare", "nsenter", *tools) if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (Debian packages; see "
                    "docs/detection-realtools.md)")


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_namespaces() -> None:
    """Remove lab namespaces whose creating process is gone (a run killed mid-test), and
    end what still runs in them (a device agent would go on writing reports)."""
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        match = _NAME.match(name)
        if match and not _alive(int(match[1])):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                                  text=True, timeout=10).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def sshd(files: Path, log: str = "/var/log/auth.log", *, seen_as: Path | None = None,
         ) -> list[str]:
    """A command for OpenSSH's sshd on port 22, logging to ``log``.

    Its files are made in ``files``, which the host that runs it sees at ``seen_as`` (the
    device: :data:`DEVICE_LAB`). Password logins allowed (the brute force needs something
    to guess at), no PAM (a device has no PAM stack); a host key made here, none of this
    machine's.
    """
    files.mkdir(exist_ok=True)
    seen = seen_as or files
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(files / "ssh_host_ed25519_key")],
                   check=True, capture_output=True, timeout=30)
    (files / "sshd_config").write_text("\n".join([
        f"HostKey {seen / 'ssh_host_ed25519_key'}", "ListenAddress 0.0.0.0:22",
        "PidFile /run/sshd.pid", "UsePAM no",
        "PasswordAuthentication yes", "KbdInteractiveAuthentication no",
        "PermitRootLogin yes", "MaxStartups 100:30:200", "LogLevel INFO", "StrictModes no",
        ""]))
    return [shutil.which("sshd") or "/usr/sbin/sshd", "-f", str(seen / "sshd_config"),
            "-E", log]


class Detection:
    """The detection core as the server runs it: features, then the default rules."""

    def __init__(self) -> None:
        self.ruleset = default_ruleset()
        self.feature_state: DeviceFeatureState | None = None
        self.rule_state: RuleState | None = None
        self.learning_until_ms: int | None = None

    def score(self, report: TelemetryReport) -> list[Verdict]:
        if self.learning_until_ms is None:  # what the device runs at its start is its normal
            self.learning_until_ms = report.collected_at_ms + 1
        features, self.feature_state = extract_features(self.feature_state, report)
        context = EvaluationContext(learning_until_ms=self.learning_until_ms)
        verdicts, self.rule_state = evaluate(self.ruleset, self.rule_state, features, context)
        return verdicts


@dataclass
class Scored:
    report: TelemetryReport
    verdicts: list[Verdict]

    @property
    def families(self) -> set[Family]:
        return {v.family for v in self.verdicts}


@dataclass
class Lab:
    tmp: Path
    interval_s: float = 1.0
    sample_interval_s: float | None = None  # None: the agent's default
    name: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}x{next(_SEQUENCE)}")
    detection: Detection = field(default_factory=Detection)
    scored: list[Scored] = field(default_factory=list)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _init: subprocess.Popen[bytes] | None = None
    _init_pid: int | None = None
    _pending: bytes = b""
    _read_at: int = 0

    @property
    def device_ns(self) -> str:
        return self.name + "d"

    @property
    def outside_ns(self) -> str:
        return self.name + "o"

    @property
    def reports_path(self) -> Path:
        return self.tmp / "reports.jsonl"

    @property
    def log_path(self) -> Path:
        return self.tmp / "device.log"

    # -- building and tearing down ------------------------------------------------------

    def start(self, boot: Sequence[Sequence[str]] = (), *, interval_s: float = 1.0) -> None:
        """Make both hosts, run ``boot`` commands on the device, then start its agent."""
        self.interval_s = interval_s
        remove_stale_namespaces()
        device, outside = self.device_ns, self.outside_ns
        _run("ip", "netns", "add", device)
        _run("ip", "netns", "add", outside)
        _run("ip", "-n", device, "link", "add", "eth0", "type", "veth",
             "peer", "name", "eth0", "netns", outside)
        for ns, address in ((device, DEVICE), (outside, OUTSIDE)):
            _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
        self._start_device(boot)

    def _start_device(self, boot: Sequence[Sequence[str]]) -> None:
        python = f"python{sys.version_info.major}.{sys.version_info.minor}"
        paths = [str(Path(fleetguard.__file__).resolve().parents[1]), str(REPO),
                 *site.getsitepackages()]
        # The device gets its own /tmp: code that lives under this machine's /tmp (a checkout
        # there, its virtual environment) is bound into /run first, where the device sees it.
        carried: list[str] = []
        for index, path in enumerate(paths):
            if Path(path).resolve().is_relative_to("/tmp"):
                carried += [f"mkdir -p /run/lab-code/{index}",
                            f"mount --bind {shlex.quote(path)} /run/lab-code/{index}"]
                paths[index] = f"/run/lab-code/{index}"
        script = "\n".join([
            "set -e",
            "mount -t tmpfs -o mode=0755 tmpfs /var/log",
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            f"mkdir -p /run/sshd {DEVICE_LAB}",
            f"mount --bind {shlex.quote(str(self.tmp))} {DEVICE_LAB}",
            *carried,
            "mount -t tmpfs -o mode=1777 tmpfs /tmp",
            "mount -t tmpfs -o mode=0755 tmpfs /opt",
            "mkdir /opt/python",
            f"mount --bind {shlex.quote(sys.base_prefix)} /opt/python",
            *(shlex.join(command) for command in boot),
            f"export PYTHONPATH={shlex.quote(':'.join(paths))}",
            f"exec /opt/python/bin/{python} -m tests.detect.realtools.device_agent "
            f"{self.in_device(self.tmp / 'agent')} {self.in_device(self.reports_path)} "
            f"{self.interval_s} {'' if self.sample_interval_s is None else self.sample_interval_s}",
        ])
        with open(self.log_path, "ab") as log:
            self._init = subprocess.Popen(
                ["ip", "netns", "exec", self.device_ns, "unshare", "--pid", "--fork",
                 "--mount-proc", "--kill-child", "sh", "-c", script],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=self.tmp)
        self._init_pid = self._child_of(self._init)

    def _child_of(self, process: subprocess.Popen[bytes]) -> int:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if pids := children.read_text().split():
                    return int(pids[0])
            if process.poll() is not None:
                break
            time.sleep(0.01)
        raise AssertionError(f"the device did not start:\n{self.device_log()}")

    def close(self) -> None:
        for process in [*self._processes, *([self._init] if self._init else [])]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        for ns in (self.device_ns, self.outside_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)

    def device_file(self, path: str) -> Path:
        """A file of the device (its own /tmp, /var/log, ...), as this machine reaches it."""
        return Path(f"/proc/{self._init_pid}/root") / path.lstrip("/")

    def in_device(self, path: Path) -> str:
        """Where the device sees ``path``, a file in the test's directory."""
        return str(DEVICE_LAB / path.relative_to(self.tmp))

    def device_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    # -- running tools ------------------------------------------------------------------

    def on_device(self, *argv: str, log: str | None = None) -> subprocess.Popen[bytes]:
        """Start a program inside the device (its network, PID and mount namespaces)."""
        assert self._init_pid is not None
        return self._spawn(["nsenter", "-t", str(self._init_pid), "-n", "-p", "-m", "--",
                            *argv], log)

    def outside(self, *argv: str, log: str | None = None) -> subprocess.Popen[bytes]:
        """Start a program on the outside host."""
        return self._spawn(["ip", "netns", "exec", self.outside_ns, *argv], log)

    def on_host(self, *argv: str, log: str | None = None) -> subprocess.Popen[bytes]:
        """Start a program on this machine, outside both hosts: a neighbour of the device."""
        return self._spawn(list(argv), log)

    def _spawn(self, argv: list[str], log: str | None) -> subprocess.Popen[bytes]:
        sink = open(self.tmp / (log or "tools.log"), "ab")  # noqa: SIM115 - the child keeps it
        with sink:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink,
                                       stderr=sink, start_new_session=True, cwd=self.tmp)
        self._processes.append(process)
        return process

    def wait_listening(self, ns: str, port: int, timeout: float = 10.0) -> None:
        """Return once something in ``ns`` listens on TCP ``port``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Htln", f"sport = :{port}"],
                                   capture_output=True, text=True, timeout=10).stdout
            if shown.strip():
                return
            time.sleep(0.05)
        raise AssertionError(f"nothing listened on {ns} port {port}")

    # -- reports ------------------------------------------------------------------------

    def next_report(self, timeout: float = 20.0) -> Scored:
        """The agent's next report, scored by the default rules."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"no report from the device agent:\n{self.device_log()}")
            if self._init is not None and self._init.poll() is not None:
                raise AssertionError(f"the device agent exited:\n{self.device_log()}")
            with contextlib.suppress(FileNotFoundError), open(self.reports_path, "rb") as f:
                f.seek(self._read_at)
                chunk = f.read()
                self._read_at += len(chunk)
                self._pending += chunk
            if b"\n" not in self._pending:
                time.sleep(0.02)
        line, self._pending = self._pending.split(b"\n", 1)
        report = decode_message(line, ContentType.JSON, expect=MessageKind.TELEMETRY)
        assert isinstance(report, TelemetryReport)
        scored = Scored(report, self.detection.score(report))
        self.scored.append(scored)
        return scored

    def benign(self, reports: int) -> list[Verdict]:
        """The verdicts of the device's next ``reports`` reports (its normal life).

        Leaves out ``miner.cpu-pinned``: the agent's ``cpu_percent`` is the host's (``/proc/
        stat`` is not namespaced), so the other test worker or a neighbour pins it; see
        ``test_a_neighbours_cpu_load_is_not_taken_for_a_miner_on_the_device``.
        """
        return [v for _ in range(reports) for v in self.next_report().verdicts
                if v.rule_id != HOST_CPU_RULE]

    def reports_to_detect(self, family: Family, limit: int = 2) -> int | None:
        """How many reports after now until one flags ``family`` (None: not within limit)."""
        for n in range(1, limit + 1):
            scored = self.next_report()
            if family in scored.families:
                why = "; ".join(v.summary for v in scored.verdicts if v.family is family)
                print(f"[realtools] {family.value} flagged in report {n}: {why}")
                return n
        print(f"[realtools] {family.value} not flagged within {limit} reports")
        return None

    def timeline(self) -> str:
        """Every report scored so far, one line each: what a failed assertion should show."""
        lines = []
        for s in self.scored:
            r = s.report
            lines.append(
                f"seq {r.seq}: cpu {r.cpu_percent:.0f}% procs {r.process_count} "
                f"listen {[x.port for x in r.listening]} "
                f"conns {[(c.remote_address, c.remote_port) for c in r.connections]} "
                f"auth {r.auth_failures} -> {[v.summary for v in s.verdicts]}")
        return "\n".join(lines)
