"""The device charts in Chromium at a phone's width (390 px) and a laptop's (1280 px): the
charts fit, their axis labels are of a readable size and inside the chart. Screenshots go to
test-artifacts/dashboard/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fleetguard.dashboard.charts import BandPoint, metric_chart
from fleetguard.dashboard.render import HERE, env
from fleetguard.telemetry import Metric, Sample

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

if sync_playwright is None:
    pytest.skip("the Python package 'playwright' is not installed", allow_module_level=True)
if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium is not installed at {CHROMIUM}", allow_module_level=True)

START = datetime(2026, 12, 1, tzinfo=UTC)
END = START + timedelta(hours=24)
STEP = timedelta(minutes=6)


def _page_html() -> str:
    steps = int((END - START) / STEP)
    traffic = [Sample(START + i * STEP, 40_000.0 + 9_000 * ((i * 7) % 11))
               for i in range(steps) if not 100 <= i < 112]  # an hour and more of silence
    band = [BandPoint(START + i * STEP, 35_000.0, 130_000.0) for i in range(0, steps, 5)]
    cpu = [Sample(START + i * STEP, 3.0 + (i % 17)) for i in range(steps)]
    charts = [c for c in (
        metric_chart(Metric.BYTES_OUT, traffic, start=START, end=END, step=STEP, band=band),
        metric_chart(Metric.CPU_PERCENT, cpu, start=START, end=END, step=STEP),
    ) if c is not None]
    section = env.get_template("_device_charts.html").render(device_charts=charts, charts=[],
                                                             snapshot=None)
    css = (HERE / "static" / "css" / "dashboard.css").read_text()
    return (f"<!doctype html><html><head><meta name='viewport' content='width=device-width'>"
            f"<style>{css}</style></head><body><main>{section}</main></body></html>")


@pytest.mark.parametrize("width", [390, 1280])
def test_charts_fit_and_their_labels_are_readable(width: int) -> None:
    assert sync_playwright is not None
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.set_content(_page_html())
            page.screenshot(path=str(ARTIFACTS / f"device-charts-{width}.png"), full_page=True)
            boxes = page.eval_on_selector_all(
                "div.metric-chart svg",
                "els => els.map(e => { const r = e.getBoundingClientRect();"
                " return [r.left, r.right, r.width, r.height]; })")
            labels = page.eval_on_selector_all(
                "div.metric-chart svg text",
                "els => els.map(e => { const r = e.getBoundingClientRect();"
                " const s = e.closest('svg').getBoundingClientRect();"
                " return [r.height, r.left >= s.left - 1 && r.right <= s.right + 1"
                " && r.top >= s.top - 1 && r.bottom <= s.bottom + 1, e.textContent]; })")
        finally:
            browser.close()
    assert len(boxes) == 2
    for left, right, box_width, height in boxes:
        assert left >= 0 and right <= width  # no sideways scrolling
        assert box_width >= 300 and height >= 120
    assert labels and all(inside for _, inside, _ in labels), labels
    assert min(h for h, _, _ in labels) >= 9, labels  # px: readable on a phone
