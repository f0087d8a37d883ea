"""CSV cells that a spreadsheet opens as text, never as a formula.

Exports carry names, serials, labels and banners that devices or operators chose; a cell
such as ``=cmd|' /C calc'!A0`` runs when the file is opened in a spreadsheet. A cell that
starts with a formula character is prefixed with a quote, which spreadsheets show as text.
"""

from __future__ import annotations

# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """The value as a CSV cell a spreadsheet shows as text."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text
