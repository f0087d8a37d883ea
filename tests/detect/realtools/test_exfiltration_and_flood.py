"""Bulk upload to a drop site (iperf3 at 5 MB/s), and floods: hping3's SYN flood and a UDP
flood with socat, from the device at a host outside."""

from __future__ import annotations

import pytest

from fleetguard.detect import Family

from .lab import OUTSIDE, Lab, require

pytestmark = pytest.mark.process

BENIGN_REPORTS = 3
DROP_PORT = 5201


def test_an_iperf3_upload_at_5_mb_per_s_is_flagged_as_exfiltration(lab: Lab) -> None:
    require("iperf3")
    lab.start()
    lab.outside("iperf3", "-s", "-p", str(DROP_PORT), log="iperf3-server.log")
    lab.wait_listening(lab.outside_ns, DROP_PORT)
    assert lab.benign(BENIGN_REPORTS) == [], lab.timeline()
    lab.on_device("iperf3", "-c", OUTSIDE, "-p", str(DROP_PORT), "-b", "40M", "-t", "5",
                  log="iperf3-client.log")
    assert lab.reports_to_detect(Family.EXFILTRATION) is not None, lab.timeline()


def test_an_hping3_syn_flood_is_flagged_as_flooding(lab: Lab) -> None:
    require("hping3")
    lab.start()
    assert lab.benign(BENIGN_REPORTS) == [], lab.timeline()
    lab.on_device("timeout", "4", "hping3", "--flood", "-S", "-p", "80", OUTSIDE)
    assert lab.reports_to_detect(Family.FLOODING) is not None, lab.timeline()


def test_a_socat_udp_flood_is_flagged_as_flooding(lab: Lab) -> None:
    require("socat")
    lab.start()
    assert lab.benign(BENIGN_REPORTS) == [], lab.timeline()
    # sendto on an unconnected socket: the port-unreachable replies do not stop it.
    lab.on_device("timeout", "4", "socat", "-u", "-b", "512", "OPEN:/dev/zero",
                  f"UDP-SENDTO:{OUTSIDE}:9")
    assert lab.reports_to_detect(Family.FLOODING) is not None, lab.timeline()
