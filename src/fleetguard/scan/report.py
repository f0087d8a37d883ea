"""Render a ScanReport as JSON text or CSV (the table form lives in the CLI)."""

from __future__ import annotations

import csv
import io
import json

from fleetguard.core.spreadsheet import csv_cell
from fleetguard.scan.models import ScanReport
from fleetguard.scan.service import report_document

CSV_COLUMNS = (
    "host", "port", "protocol", "service", "check", "severity", "title", "evidence",
    "remediation", "references",
)  # fmt: skip


def to_json(report: ScanReport, *, indent: int | None = 2) -> str:
    return json.dumps(report_document(report), indent=indent, ensure_ascii=False)


def to_csv(report: ScanReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for f in report.findings:
        d = f.model_dump(mode="json")
        d["references"] = "; ".join(f.references)
        w.writerow([csv_cell(d[c]) for c in CSV_COLUMNS])
    return buf.getvalue()


__all__ = ["CSV_COLUMNS", "to_csv", "to_json"]
