"""A backdoor listener (ncat -l) on the device, and a beacon to a C2 server outside.

A brief listener and a beacon's connection are made to fall *between* two reports: the
agent reports every 2 s here and samples every second (its default) in between; each
starts 300 ms after a report and is gone before the next one: a listener open for 1.5 s,
and a beacon that connects for 200 ms every 5 s.
"""

from __future__ import annotations

import pytest

from fleetguard.detect import Family

from .lab import OUTSIDE, Lab, require

pytestmark = pytest.mark.process

BENIGN_REPORTS = 3
BETWEEN_INTERVAL_S = 2.0
BETWEEN_BENIGN_REPORTS = 2
C2_PORT = 8443
BACKDOOR_PORT = 4444


def test_an_ncat_backdoor_listener_is_flagged_with_its_port(lab: Lab) -> None:
    require("ncat")
    lab.start()
    assert lab.benign(BENIGN_REPORTS) == [], lab.timeline()
    lab.on_device("ncat", "-l", "-k", str(BACKDOOR_PORT))
    assert lab.reports_to_detect(Family.BACKDOOR_LISTENER) is not None, lab.timeline()
    (verdict,) = [v for s in lab.scored for v in s.verdicts
                  if v.family is Family.BACKDOOR_LISTENER]
    assert {x.port for x in verdict.listeners} == {BACKDOOR_PORT}


def test_a_listener_open_only_between_two_reports_is_flagged_with_its_port(lab: Lab) -> None:
    require("ncat")
    lab.start(interval_s=BETWEEN_INTERVAL_S)
    assert lab.benign(BETWEEN_BENIGN_REPORTS) == [], lab.timeline()
    lab.on_device("sh", "-c", f"sleep 0.3; exec timeout 1.5 ncat -l {BACKDOOR_PORT}")
    assert lab.reports_to_detect(Family.BACKDOOR_LISTENER) is not None, lab.timeline()
    (verdict,) = [v for s in lab.scored for v in s.verdicts
                  if v.family is Family.BACKDOOR_LISTENER]
    assert {x.port for x in verdict.listeners} == {BACKDOOR_PORT}
    assert lab.scored[-1].report.listening == []  # gone by the report: seen by sampling


def test_a_beacon_connecting_for_200_ms_every_5_s_is_flagged_with_its_c2(lab: Lab) -> None:
    require("ncat")
    lab.start(interval_s=BETWEEN_INTERVAL_S)
    lab.outside("ncat", "-l", "-k", "--no-shutdown", str(C2_PORT), log="c2.log")
    lab.wait_listening(lab.outside_ns, C2_PORT)
    assert lab.benign(BETWEEN_BENIGN_REPORTS) == [], lab.timeline()
    lab.on_device("sh", "-c", "while :; do sleep 0.3; "
                  f"(echo checkin; sleep 0.2) | ncat {OUTSIDE} {C2_PORT}; sleep 4.5; done")
    assert lab.reports_to_detect(Family.BEACON) is not None, lab.timeline()
    (verdict,) = [v for s in lab.scored for v in s.verdicts if v.family is Family.BEACON]
    assert [(d.address, d.port) for d in verdict.destinations] == [(OUTSIDE, C2_PORT)]
    assert all(c.remote_port != C2_PORT for s in lab.scored for c in s.report.connections)


def test_a_beacon_whose_server_hangs_up_after_200_ms_is_flagged_with_its_c2(lab: Lab) -> None:
    require("ncat", "socat")
    lab.start(interval_s=BETWEEN_INTERVAL_S)
    lab.outside("socat", f"TCP-LISTEN:{C2_PORT},fork,reuseaddr", "SYSTEM:head -n 1 >&2; sleep 0.2",
                log="c2.log")
    lab.wait_listening(lab.outside_ns, C2_PORT)
    assert lab.benign(BETWEEN_BENIGN_REPORTS) == [], lab.timeline()
    # The device keeps its side open; the server hangs up, and only then does the device.
    lab.on_device("sh", "-c", "while :; do sleep 0.3; "
                  f"(echo checkin; sleep 3) | socat -t 0 - TCP:{OUTSIDE}:{C2_PORT}; "
                  "sleep 4.5; done")
    detected = lab.reports_to_detect(Family.BEACON)
    if "checkin" not in (lab.tmp / "c2.log").read_text():
        pytest.fail("the beacon never reached its C2 server")
    assert detected is not None, lab.timeline()
