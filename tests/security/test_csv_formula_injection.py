"""Attack: a device named ``=cmd|' /C calc'!A0`` runs a formula in the operator's spreadsheet.

Every CSV export (devices, a stored scan's findings, the CLI's scan report) writes a cell
that starts with a formula character with a leading quote, which spreadsheets show as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime

from fleetguard.core.severity import Severity
from fleetguard.operators import Role
from fleetguard.protocol.scan_report import ReportFinding
from fleetguard.scan import ScanReport, to_csv
from tests.support import LoggedIn

PAYLOADS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"]


def test_device_export_quotes_formula_cells(login_as: Callable[[Role], LoggedIn]) -> None:
    op = login_as(Role.OPERATOR)
    for i, payload in enumerate(PAYLOADS):
        r = op.client.post("/api/v1/devices", json={"name": f"dev-{i}", "vendor": payload},
                           headers=op.headers())
        assert r.status_code == 201, r.text
    r = op.client.post("/api/v1/devices", json={"name": PAYLOADS[0]}, headers=op.headers())
    assert r.status_code == 201, r.text
    r = op.client.get("/api/v1/devices/export.csv")
    assert r.status_code == 200
    rows = list(csv.DictReader(io.StringIO(r.text)))
    vendors = [row["vendor"] for row in rows if row["vendor"]]
    assert len(vendors) == len(PAYLOADS)
    assert all(v.startswith("'") for v in vendors), vendors
    assert "'=cmd|' /C calc'!A0" in vendors
    assert "'" + PAYLOADS[0] in {row["name"] for row in rows}
    assert all(not row[c].startswith(("=", "+", "-", "@", "\t", "\r"))
               for row in rows for c in row)


def test_scan_report_csv_quotes_banner_evidence() -> None:
    now = datetime.now(UTC)
    finding = ReportFinding(host="127.0.0.1", port=23, protocol="tcp", service="telnet",
                            check="telnet-open", severity=Severity.HIGH, title="Telnet",
                            evidence="=HYPERLINK(\"http://attacker\")", remediation="close it",
                            references=())
    report = ScanReport(targets=["127.0.0.1"], started=now, finished=now, hosts=[],
                        findings=[finding], notes=[])
    (row,) = csv.DictReader(io.StringIO(to_csv(report)))
    assert row["evidence"] == "'=HYPERLINK(\"http://attacker\")"
