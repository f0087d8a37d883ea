"""Port scans with nmap: from the device outward (a bot looking for victims), and at it."""

from __future__ import annotations

import pytest

from fleetguard.detect import Family

from .lab import DEVICE, DEVICE_LAB, OUTSIDE, Lab, require, sshd

pytestmark = pytest.mark.process

BENIGN_REPORTS = 3
# A connect scan of the first 1,000 ports, one try each: nmap's default ports are 1,000 too.
CONNECT_SCAN = ("nmap", "-sT", "-Pn", "-n", "-p", "1-1000", "--max-retries", "0")


def test_an_outbound_nmap_connect_scan_is_flagged_as_scanning(lab: Lab) -> None:
    require("nmap")
    lab.start()
    assert lab.benign(BENIGN_REPORTS) == [], lab.timeline()
    lab.on_device(*CONNECT_SCAN, OUTSIDE)
    assert lab.reports_to_detect(Family.SCANNING) is not None, lab.timeline()
    flagged = {v.rule_id for s in lab.scored for v in s.verdicts if v.family is Family.SCANNING}
    assert "scan.refused-connections" in flagged


def test_an_inbound_nmap_connect_scan_of_the_device_is_flagged_as_scanning(lab: Lab) -> None:
    require("nmap", "sshd", "ssh-keygen")
    lab.start(boot=[sshd(lab.tmp / "sshd", seen_as=DEVICE_LAB / "sshd")])
    assert lab.benign(BENIGN_REPORTS) == [], lab.timeline()
    before = lab.scored[-1].report.net
    lab.outside(*CONNECT_SCAN, DEVICE)
    detected = lab.reports_to_detect(Family.SCANNING)
    after = lab.scored[-1].report.net
    if before is None or after is None or after.tcp_out_resets - before.tcp_out_resets < 900:
        pytest.fail(f"the agent did not see the scan's resets: {before} -> {after}")
    assert detected is not None, lab.timeline()
