"""Small line charts of stored telemetry series, drawn server-side as SVG (no script)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fleetguard.telemetry import Sample

WIDTH, HEIGHT, PAD = 560, 120, 4
MAX_POINTS = 240


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    unit: str
    points: str  # SVG polyline points
    samples: int
    minimum: float
    maximum: float
    latest: float
    first_at: datetime
    last_at: datetime
    width: int = WIDTH
    height: int = HEIGHT


def _bucket(samples: list[Sample]) -> list[Sample]:
    """At most MAX_POINTS points: the maximum of each bucket, so spikes stay visible."""
    if len(samples) <= MAX_POINTS:
        return samples
    size = -(-len(samples) // MAX_POINTS)
    out = []
    for i in range(0, len(samples), size):
        chunk = samples[i:i + size]
        top = max(chunk, key=lambda s: s.value)
        out.append(Sample(at=chunk[-1].at, value=top.value))
    return out


def line_chart(
    title: str, unit: str, samples: list[Sample], *, ceiling: float | None = None
) -> Chart | None:
    """The series as an SVG polyline, scaled from 0 (or below) to its maximum, or to
    ``ceiling`` for a bounded figure (a 0-100 score)."""
    if not samples:
        return None
    shown = _bucket(samples)
    t0 = shown[0].at.timestamp()
    span = max(shown[-1].at.timestamp() - t0, 1.0)
    lo = min(0.0, min(s.value for s in shown))
    hi = max(s.value for s in shown) if ceiling is None else ceiling
    rng = (hi - lo) or 1.0
    pts = []
    for s in shown:
        x = PAD + (s.at.timestamp() - t0) / span * (WIDTH - 2 * PAD)
        y = HEIGHT - PAD - (s.value - lo) / rng * (HEIGHT - 2 * PAD)
        pts.append(f"{x:.1f},{y:.1f}")
    if len(pts) == 1:
        pts.append(f"{WIDTH - PAD:.1f},{pts[0].split(',')[1]}")
    return Chart(
        title=title, unit=unit, points=" ".join(pts), samples=len(samples),
        minimum=min(s.value for s in samples), maximum=max(s.value for s in samples),
        latest=samples[-1].value, first_at=samples[0].at, last_at=samples[-1].at,
    )
