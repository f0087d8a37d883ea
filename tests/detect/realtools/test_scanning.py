"""Port scans with nmap: from the device outward (a bot looking for victims), and at it."""

from __future__ import annotations

import pytest

from fleetguard.detect import Family

from .lab import OUTSIDE, Lab, require

pytestmark = pytest.mark.process

BENIGN_REPORTS = 3


def test_an_outbound_nmap_connect_scan_is_flagged_as_scanning(lab: Lab) -> None:
    require("nmap")
    lab.start()
    assert lab.benign(BENIGN_REPORTS) == [], lab.timeline()
    lab.on_device("nmap", "-sT", "-Pn", "-n", "-p", "1-1000", "--max-retries", "0", OUTSIDE)
    assert lab.reports_to_detect(Family.SCANNING) is not None, lab.timeline()
