"""Benchmark: how fast `fleetguard ... --help` answers, against `python -c pass`.

    python benchmarks/bench_cli.py               # every command, 5 runs each
    python benchmarks/bench_cli.py --repeat 9    # more runs per command

Each help, the top level, every command group and every leaf command (enumerated from
the typer app), runs in a fresh interpreter several times; the script prints the median
wall time of each, its ratio to `python -c pass` (the interpreter's own start-up), and
the 0.3 s limit, and exits 1 when any median is over the limit. A command's help must
not load what the command needs to run (the database, the crypto, the HTTP stack):
tests/install/test_cli_imports.py checks that structurally; this script measures it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

LIMIT_S = 0.3


def fleetguard_argv() -> list[str]:
    """The installed console script when there is one (what people run), else -m."""
    script = Path(sys.executable).parent / "fleetguard"
    if script.exists():
        return [str(script)]
    found = shutil.which("fleetguard")
    return [found] if found else [sys.executable, "-m", "fleetguard.cli"]


def median_wall(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (median)")
    args = parser.parse_args()

    base = median_wall([sys.executable, "-c", "pass"], args.repeat)
    fleetguard = fleetguard_argv()
    print(f"python -c pass: {base:.3f} s (median of {args.repeat}); limit {LIMIT_S:.2f} s")
    print(f"{'command':<44} {'median s':>9} {'x pass':>7} {'limit s':>8}")
    over = []
    worst = 0.0
    from fleetguard.cli.main import command_paths

    for path in command_paths():
        wall = median_wall([*fleetguard, *path, "--help"], args.repeat)
        worst = max(worst, wall)
        label = " ".join(["fleetguard", *path, "--help"])
        flag = "" if wall < LIMIT_S else "  OVER"
        print(f"{label:<44} {wall:>9.3f} {wall / base:>7.1f} {LIMIT_S:>8.2f}{flag}")
        if wall >= LIMIT_S:
            over.append(label)
    print(f"slowest: {worst:.3f} s ({worst / base:.1f}x python -c pass), limit {LIMIT_S:.2f} s")
    if over:
        print(f"{len(over)} over the limit: {', '.join(over)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
