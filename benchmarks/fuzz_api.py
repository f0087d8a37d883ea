"""Schemathesis against the operator API: at least 10,000 requests, failures per category.

The limit is zero: every category must stay at 0 (server errors, response-schema
violations, undocumented status codes, valid requests refused, invalid requests accepted,
wrong ``Allow`` headers, content types and headers, use after free and resource
availability, ignored authentication, cut-off responses, engine errors, and attempts to
reach anything but loopback). The same harness, shorter, is the test
``tests/security/test_api_fuzz.py``; see ``tests/security/fuzz_support.py`` for what is
run and how.

    python benchmarks/fuzz_api.py                       # >= 10,000 requests, seed 12
    python benchmarks/fuzz_api.py --seed 7 --details    # every failure, one line each
    python benchmarks/fuzz_api.py --real-scans          # real scanner (127.0.0.1 only)

Exit status 1 when a category is above its limit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]

from tests.security.fuzz_support import (  # noqa: E402
    CATEGORIES,
    REPORTED,
    FuzzServer,
    run_fuzz,
)

MIN_REQUESTS = 10_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--min-requests", type=int, default=MIN_REQUESTS)
    parser.add_argument("--max-examples", type=int, default=150,
                        help="examples per operation in the fuzzing phase")
    parser.add_argument("--stateful-examples", type=int, default=100,
                        help="scenarios of the stateful phase")
    parser.add_argument("--max-steps", type=int, default=10, help="calls per stateful scenario")
    parser.add_argument("--real-scans", action="store_true",
                        help="run the real scanner for server-run scans (127.0.0.1 only)")
    parser.add_argument("--details", action="store_true", help="print every failure")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    reports = []
    with FuzzServer(real_scans=args.real_scans) as server:
        # Rounds with successive seeds until the server has answered enough requests.
        seed = args.seed
        while sum(r.requests for r in reports) < args.min_requests:
            report = run_fuzz(
                server, seed=seed, max_examples=args.max_examples,
                stateful_examples=args.stateful_examples, max_steps=args.max_steps,
                progress=(lambda m: print("  ", m, file=sys.stderr)) if args.progress else None,
            )
            reports.append(report)
            print(f"round seed={seed}: {report.requests:,} requests in {report.seconds:.0f} s ("
                  + ", ".join(f"{p} {n:,}" for p, n in report.cases_by_phase.items()) + ")",
                  file=sys.stderr)
            seed += 1

    # Failures once each across rounds (per operation and kind, as schemathesis counts them
    # within one); the harness's own counts (requests, 5xx, cut off, ...) add up.
    unique = {f.key: f for r in reports for f in r.found}
    total = {name: sum(r.count(name) for r in reports) for name in REPORTED}
    for name in (*CATEGORIES, "other"):
        total[name] = sum(1 for key in unique if key[0] == name)
    cases = sum(r.cases for r in reports)
    seconds = sum(r.seconds for r in reports)
    print(f"schemathesis against the operator API: {len(reports)} round(s) from seed {args.seed}, "
          f"{reports[0].operations} operations, {cases:,} test cases, {seconds:.0f} s")
    print(f"{'category':>22}  {'found':>7}  limit")
    for name in REPORTED:
        limit = "-" if name == "requests" else "0"
        print(f"{name:>22}  {total[name]:>7,}  {limit}")
    waived = sorted({w for r in reports for w in r.waived})
    print(f"waived refusals (no schema can state them): {sum(len(r.waived) for r in reports)}"
          + (f" ({', '.join(waived)})" if waived else ""))
    print(f"credential repairs (the fuzzer revoked its token or disabled its operator): "
          f"{sum(len(r.repairs) for r in reports)}")
    failed = sum(v for k, v in total.items() if k != "requests")
    print(f"failures / limit: {failed} / 0"
          f"  ({total['requests']:,} requests, at least {args.min_requests:,} asked)")
    if args.details:
        for f in unique.values():
            print(f"[{f.category}] {f.detail}")
        for i, r in enumerate(reports):
            rest = [f"[cut_off] {c}" for c in r.cut_off] + [f"[errors] {e}" for e in r.errors]
            rest += [f"[off_machine] {o}" for o in r.off_machine]
            if rest:
                print(f"--- round {i + 1}")
                print("\n".join(rest))
    return 0 if failed == 0 and total["requests"] >= args.min_requests else 1


if __name__ == "__main__":
    raise SystemExit(main())
