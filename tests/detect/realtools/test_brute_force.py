"""Password guessing with hydra: from the outside against OpenSSH's sshd on the device, and
from the device against an sshd outside (an infected device spreading, as Mirai does).

The agent counts failed logins in the first readable of ``/var/log/auth.log`` and
``/var/log/secure`` (``AgentConfig.auth_logs``). The device's ``/var/log`` is its own
(empty at boot); sshd writes its log there with ``-E``, as a syslog daemon would.
"""

from __future__ import annotations

import secrets
import shlex
from pathlib import Path

import pytest

from fleetguard.detect import Family

from .lab import DEVICE, DEVICE_LAB, OUTSIDE, Lab, require, sshd

pytestmark = pytest.mark.process

BENIGN_REPORTS = 3


def _hydra_argv(guesses: str, target: str) -> list[str]:
    # 8 connections of 6 guesses each (sshd's MaxAuthTries) a round; after sshd hangs up
    # on a connection hydra waits out its response timeout (-w) before the next round.
    return ["hydra", "-l", "root", "-P", guesses, "-t", "8", "-w", "2", "-I",
            f"ssh://{target}"]


def _guesses(lab: Lab) -> Path:
    guesses = lab.tmp / "guesses.txt"  # made here: none of them is any account's password
    guesses.write_text("".join(f"{secrets.token_urlsafe(9)}\n" for _ in range(400)))
    return guesses


def _hydra(lab: Lab) -> None:
    lab.outside(*_hydra_argv(str(_guesses(lab)), DEVICE), log="hydra.log")


def test_a_hydra_ssh_brute_force_on_the_device_is_flagged_as_brute_force(lab: Lab) -> None:
    require("hydra", "sshd", "ssh-keygen")
    lab.start(boot=[sshd(lab.tmp / "sshd", seen_as=DEVICE_LAB / "sshd")])
    assert lab.benign(BENIGN_REPORTS) == [], lab.timeline()
    _hydra(lab)
    assert lab.reports_to_detect(Family.BRUTE_FORCE) is not None, lab.timeline()
    flagged = [v for s in lab.scored for v in s.verdicts if v.family is Family.BRUTE_FORCE]
    assert flagged[0].rule_id == "bruteforce.auth-failures"
    assert lab.scored[-1].report.auth_source == "/var/log/auth.log"


def test_a_brute_force_is_flagged_on_a_device_that_logs_to_var_log_messages(lab: Lab) -> None:
    require("hydra", "sshd", "ssh-keygen")
    lab.start(boot=[sshd(lab.tmp / "sshd", "/var/log/messages", seen_as=DEVICE_LAB / "sshd")])
    assert lab.benign(BENIGN_REPORTS) == [], lab.timeline()
    _hydra(lab)
    detected = lab.reports_to_detect(Family.BRUTE_FORCE)
    logged = lab.device_file("/var/log/messages").read_text().count("Failed password")
    if logged < 20:  # not an AssertionError: the xfail is only for the miss itself
        pytest.fail(f"the brute force did not happen: {logged} failures logged")
    assert detected is not None, lab.timeline()


def test_a_hydra_ssh_brute_force_from_the_device_is_flagged_as_brute_force(lab: Lab) -> None:
    require("hydra", "sshd", "ssh-keygen")
    lab.start()
    # The victim's sshd, with a /run of its own (its privilege separation directory).
    victim = shlex.join([*sshd(lab.tmp / "victim", str(lab.tmp / "victim-auth.log")), "-D"])
    lab.outside("unshare", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /run && "
                f"mkdir /run/sshd && exec {victim}", log="victim.log")
    lab.wait_listening(lab.outside_ns, 22)
    assert lab.benign(BENIGN_REPORTS) == [], lab.timeline()
    lab.on_device(*_hydra_argv(lab.in_device(_guesses(lab)), OUTSIDE), log="hydra.log")
    assert lab.reports_to_detect(Family.BRUTE_FORCE) is not None, lab.timeline()
    flagged = [v for s in lab.scored for v in s.verdicts if v.family is Family.BRUTE_FORCE]
    assert flagged[0].rule_id == "bruteforce.connection-attempts"
