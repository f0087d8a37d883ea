"""Every module of the package is short enough for a newcomer to read in one sitting."""

from __future__ import annotations

from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "fleetguard"
MAX_LINES = 500


def test_no_module_is_longer_than_500_lines() -> None:
    too_long = {
        str(path.relative_to(SRC)): n
        for path in SRC.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert too_long == {}, f"split these along their seams: {too_long}"
