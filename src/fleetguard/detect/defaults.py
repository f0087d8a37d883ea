"""The shipped default rule set: the common attack families on IoT devices, from day one.

Data, validated by the same model as an operator's rule set (:func:`default_ruleset`).
Thresholds sit far above what a camera, sensor or gateway does normally (a camera streams
about 250 KB/s; devices open a few outbound connections a minute) and far below what the
attack does (Mirai-style scanning at ~160 SYN/s, mostly refused; a telnet brute force at a
few attempts a second; floods at thousands of datagrams a second), so that normal
variation, reboots and diurnal load stay quiet. Rules that fire on one report catch an
attack within two reports even when it starts just before a report; the CPU rule waits
for two, because a busy minute is normal and a pinned CPU for two is not. The machine's
CPU is shared with whatever else runs on the host (containers, namespaced devices), so a
miner held to one core of several is caught by its own process's CPU, which a sampling
agent reports (``top_process_cpu_percent``, in percent of one core).

First-seen rules need what the device normally shows: they are quiet during the learning
window after its first report (``EvaluationContext.learning_until_ms``).
"""

from __future__ import annotations

from typing import Any

from fleetguard.detect.models import parse_ruleset
from fleetguard.detect.rules import RuleSet

DEFAULT_RULESET_VERSION = 1

# Where a firmware's own programs live; a binary run from anywhere else (/tmp, /dev/shm,
# /var/run, a home directory) is what droppers and miners do.
SYSTEM_PATHS = ["/bin/*", "/sbin/*", "/usr/*", "/lib/*", "/lib64/*", "/opt/*"]

DEFAULT_RULESET_DOCUMENT: dict[str, Any] = {
    "version": DEFAULT_RULESET_VERSION,
    "name": "fleetguard defaults",
    "rules": [
        {"kind": "threshold", "id": "scan.refused-connections", "family": "scanning",
         "severity": "high", "feature": "tcp_failures_per_s", "comparison": ">",
         "value": 2, "for_reports": 1,
         "description": "outbound connection attempts refused: probing ports of other hosts"},
        {"kind": "threshold", "id": "scan.many-new-hosts", "family": "scanning",
         "severity": "medium", "feature": "new_remote_addresses", "comparison": ">=",
         "value": 16, "for_reports": 1,
         "description": "connected to many hosts it never talked to, at once"},
        {"kind": "threshold", "id": "scan.probed", "family": "scanning",
         "severity": "low", "feature": "tcp_resets_per_s", "comparison": ">",
         "value": 2, "for_reports": 1,
         "description": ("answered many connection attempts on closed ports with resets: "
                         "something on its network is scanning it")},
        {"kind": "threshold", "id": "bruteforce.connection-attempts", "family": "brute_force",
         "severity": "high", "feature": "tcp_attempts_per_s", "comparison": ">",
         "value": 0.5, "for_reports": 1,
         "description": "outbound connections opened several times a second: password "
                        "guessing against other hosts, or a worm spreading"},
        {"kind": "threshold", "id": "bruteforce.auth-failures", "family": "brute_force",
         "severity": "high", "feature": "auth_failures", "comparison": ">=",
         "value": 20, "for_reports": 1,
         "description": "failed logins to this device within one report"},
        {"kind": "first_seen", "id": "backdoor.new-listener", "family": "backdoor_listener",
         "severity": "high", "subject": "listener",
         "description": "listening on a port it never listened on"},
        {"kind": "threshold", "id": "miner.cpu-pinned", "family": "miner",
         "severity": "medium", "feature": "cpu_percent", "comparison": ">=",
         "value": 90, "for_reports": 2,
         "description": "CPU pinned for two reports in a row"},
        {"kind": "threshold", "id": "miner.process-cpu-pinned", "family": "miner",
         "severity": "medium", "feature": "top_process_cpu_percent", "comparison": ">=",
         "value": 90, "for_reports": 2,
         "description": "one process kept a CPU core busy for two reports in a row"},
        {"kind": "first_seen", "id": "beacon.new-destination", "family": "beacon",
         "severity": "medium", "subject": "destination", "scope": "external",
         "description": "connected to an address outside its own networks it never talked "
                        "to: command and control, a mining pool or a drop site"},
        {"kind": "threshold", "id": "exfiltration.bytes-out", "family": "exfiltration",
         "severity": "high", "feature": "bytes_out_per_s", "comparison": ">",
         "value": 1_000_000, "for_reports": 1,
         "description": "sending over 1 MB/s (8 Mbit/s), beyond what devices stream"},
        {"kind": "threshold", "id": "flood.udp-out", "family": "flooding",
         "severity": "high", "feature": "udp_out_per_s", "comparison": ">",
         "value": 2_000, "for_reports": 1,
         "description": "sending thousands of UDP datagrams a second"},
        {"kind": "threshold", "id": "flood.packets-out", "family": "flooding",
         "severity": "high", "feature": "packets_out_per_s", "comparison": ">",
         "value": 10_000, "for_reports": 1,
         "description": "sending over 10,000 packets a second"},
        {"kind": "allow_list", "id": "exec.outside-system-paths",
         "family": "unexpected_executable", "severity": "high", "subject": "executable",
         "paths": SYSTEM_PATHS,
         "description": "a program run from outside the firmware's directories"},
        {"kind": "first_seen", "id": "exec.first-run", "family": "unexpected_executable",
         "severity": "medium", "subject": "executable",
         "description": "a binary this device never ran before"},
    ],
}


def default_ruleset() -> RuleSet:
    """The shipped rules, validated as any rule set is before activation."""
    return parse_ruleset(DEFAULT_RULESET_DOCUMENT)


__all__ = ["DEFAULT_RULESET_DOCUMENT", "DEFAULT_RULESET_VERSION", "SYSTEM_PATHS",
           "default_ruleset"]
