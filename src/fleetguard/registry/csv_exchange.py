"""Devices in and out as CSV: an export safe to open in a spreadsheet, an import that
registers every row or none."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from sqlalchemy.orm import Session

from fleetguard.core.errors import ValidationFailedError, excerpt
from fleetguard.core.spreadsheet import csv_cell
from fleetguard.registry.errors import DeviceExistsError
from fleetguard.registry.models import DeviceFilter, DevicePage, parse_labels
from fleetguard.registry.service import list_devices, register_device
from fleetguard.store.paging import MAX_PAGE

CSV_COLUMNS = [
    "id", "name", "serial", "hardware_model", "vendor", "firmware_version", "labels", "state",
]
MAX_CSV_ROWS = 100_000


def _labels_to_text(labels: dict[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(labels.items()))


def export_devices_csv(session: Session, flt: DeviceFilter | None = None) -> Iterator[str]:
    """CSV lines, page by page, every cell safe to open in a spreadsheet.

    The filter is checked and the first page read before this returns: a bad filter is an
    error for the caller, not a download cut off after its header line.
    """
    return _device_csv_pages(session, flt, list_devices(session, flt, limit=MAX_PAGE))


def _device_csv_pages(
    session: Session, flt: DeviceFilter | None, page: DevicePage
) -> Iterator[str]:
    buf = io.StringIO()
    csv.writer(buf).writerow(CSV_COLUMNS)
    yield buf.getvalue()
    while True:
        buf = io.StringIO()
        writer = csv.writer(buf)
        for d in page.devices:
            writer.writerow([csv_cell(v) for v in (
                d.id, d.name, d.serial, d.hardware_model, d.vendor, d.firmware_version,
                _labels_to_text(d.labels), d.state.value,
            )])
        yield buf.getvalue()
        if page.next_cursor is None:
            return
        page = list_devices(session, flt, cursor=page.next_cursor, limit=MAX_PAGE)


def import_devices_csv(session: Session, text: str, *, actor: str) -> int:
    """Register every row or none: the first bad row is named by its line number."""
    # newline="": the csv module reads line ends itself, so a quoted value may hold one.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return _import_rows(session, reader, actor)
    except csv.Error as exc:  # a stray quote or line end: bad input, not a server error
        raise ValidationFailedError(
            f"line {reader.line_num}: not valid CSV ({exc})", field="csv"
        ) from None


def _import_rows(session: Session, reader: csv.DictReader[str], actor: str) -> int:
    if reader.fieldnames is None or "name" not in reader.fieldnames:
        raise ValidationFailedError("CSV needs a header row with at least a 'name' column",
                                    field="csv")
    unknown = set(reader.fieldnames) - set(CSV_COLUMNS)
    if unknown:
        raise ValidationFailedError(
            f"unknown CSV columns: {excerpt(', '.join(sorted(unknown)))}", field="csv")
    count = 0
    for record in reader:
        line = reader.line_num  # the record's last line: a quoted value may span several
        if count >= MAX_CSV_ROWS:
            raise ValidationFailedError(f"at most {MAX_CSV_ROWS} rows per import", field="csv")
        if None in record:  # csv.DictReader files a row's extra fields under None
            raise ValidationFailedError(
                f"line {line}: more fields than the header's {len(reader.fieldnames)}"
                " (a value with a comma must be quoted)", field="csv")
        try:
            register_device(
                session, name=record.get("name") or "", actor=actor,
                serial=record.get("serial"), hardware_model=record.get("hardware_model"),
                vendor=record.get("vendor"), firmware_version=record.get("firmware_version"),
                labels=parse_labels((record.get("labels") or "").split(";")),
                device_id=record.get("id") or None,
            )
        except (ValidationFailedError, DeviceExistsError) as exc:
            exc.message = f"line {line}: {exc.message}"
            exc.args = (exc.message,)
            raise
        except ValueError as exc:
            raise ValidationFailedError(f"line {line}: {exc}", field="csv") from exc
        count += 1
    return count
