"""Attack: whatever a fuzzer sends the operator API, over a real socket.

A short schemathesis run (fixed seed, every operation, the coverage, fuzzing and stateful
phases, about 2,000 requests) against the real app on 127.0.0.1, authenticated as an
admin: 0 server errors, 0 responses that break their schema, only documented status
codes, valid input accepted, invalid input refused, correct ``Allow`` headers, no
response cut off, no ignored authentication, and no traffic off this machine. The
10,000-request run is ``benchmarks/fuzz_api.py``; the harness (what runs, what is waived
and why) is ``tests/security/fuzz_support.py``.

One run serves every test of this module; each test is one category, so that a
category failing because of a known finding outside the API layer can be marked
xfail(strict=True) on its own, naming the finding, and turn into a failure the day the
finding is fixed (none is, today).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.security.fuzz_support import (
    FuzzReport,
    FuzzServer,
    LoopbackGuard,
    OffMachineTrafficError,
    run_fuzz,
)

if TYPE_CHECKING:
    from fleetguard.store import Database

SEED = 12
MAX_EXAMPLES = 2  # per operation, fuzzing phase; the coverage phase adds ~1,800 requests
STATEFUL_EXAMPLES = 12  # scenarios of linked calls, up to 10 calls each

@pytest.fixture(scope="module")
def report() -> Iterator[FuzzReport]:
    with FuzzServer() as server:
        result = run_fuzz(server, seed=SEED, max_examples=MAX_EXAMPLES,
                          stateful_examples=STATEFUL_EXAMPLES)
    print(f"\nschemathesis, seed {SEED}:\n{result.summary()}")
    if result.details():
        print(result.details())
    yield result


def _explain(report: FuzzReport, *categories: str) -> str:
    lines = [f"[{f.category}] {f.detail}" for f in report.found if f.category in categories]
    return "\n" + "\n".join(lines) + "\n\n" + report.summary()


def test_the_run_reached_every_operation_and_phase(report: FuzzReport) -> None:
    assert report.operations >= 50
    assert report.requests >= 1_500, report.summary()
    for phase in ("coverage", "fuzzing", "stateful"):
        assert report.cases_by_phase[phase] > 0, report.summary()


def test_no_server_errors(report: FuzzReport) -> None:
    assert report.count("server_errors") == 0, _explain(report, "server_errors")
    assert report.count("responses_5xx") == 0, report.summary()


def test_responses_match_their_schemas(report: FuzzReport) -> None:
    assert report.count("schema_violations") == 0, _explain(report, "schema_violations")


def test_only_documented_status_codes(report: FuzzReport) -> None:
    assert report.count("undocumented_statuses") == 0, _explain(report, "undocumented_statuses")


def test_valid_requests_are_accepted(report: FuzzReport) -> None:
    """Bar the refusals no schema can prevent (fuzz_support.WAIVED_REFUSALS)."""
    assert report.count("valid_refused") == 0, _explain(report, "valid_refused")


def test_invalid_requests_are_refused(report: FuzzReport) -> None:
    assert report.count("invalid_accepted") == 0, _explain(report, "invalid_accepted")


def test_allow_headers_name_the_methods_of_the_resource(report: FuzzReport) -> None:
    assert report.count("wrong_allow") == 0, _explain(report, "wrong_allow")


def test_content_types_and_headers_are_as_documented(report: FuzzReport) -> None:
    assert report.count("content_types") == 0, _explain(report, "content_types")
    assert report.count("headers") == 0, _explain(report, "headers")


def test_deleted_things_stay_deleted_and_created_things_exist(report: FuzzReport) -> None:
    assert report.count("stateful") == 0, _explain(report, "stateful")


def test_authentication_is_never_ignored(report: FuzzReport) -> None:
    assert report.count("auth") == 0, _explain(report, "auth")


def test_no_other_check_failed(report: FuzzReport) -> None:
    assert report.count("other") == 0, _explain(report, "other")


def test_no_response_is_cut_off_and_every_request_is_answered(report: FuzzReport) -> None:
    assert report.cut_off == [], report.details()
    assert report.errors == [], report.details()


def test_nothing_left_this_machine(report: FuzzReport) -> None:
    assert report.off_machine == [], report.off_machine


def test_the_guard_refuses_what_is_not_loopback() -> None:
    """The guard's hook, called as the interpreter would call it, with no socket at all
    (a real connect would send a packet if the guard were broken)."""
    with LoopbackGuard.armed() as blocked:
        LoopbackGuard._hook("socket.connect", (None, ("127.0.0.1", 80)))
        LoopbackGuard._hook("socket.getaddrinfo", ("localhost", 80, 0, 0, 0))
        with pytest.raises(OffMachineTrafficError):
            LoopbackGuard._hook("socket.connect", (None, ("192.0.2.1", 80)))
        with pytest.raises(OffMachineTrafficError):
            LoopbackGuard._hook("socket.getaddrinfo", ("example.com", 443, 0, 0, 0))
        with pytest.raises(OffMachineTrafficError):
            LoopbackGuard._hook("socket.sendto", (None, ("10.0.0.1", 161)))
    assert blocked == ["socket.connect '192.0.2.1'", "socket.getaddrinfo 'example.com'",
                       "socket.sendto '10.0.0.1'"]
    # Disarmed, it lets everything through untouched (other tests in this process).
    LoopbackGuard._hook("socket.connect", (None, ("192.0.2.1", 80)))


@pytest.mark.parametrize("target", [
    "192.0.2.7", "10.0.0.0/8", "127.0.0.0/8", "127.0.0.1-2", "127.0.0.1-127.0.0.9", "::1",
    "localhost", "camera.lan", "0", "@/etc/passwd",
])
def test_the_fuzzers_scans_cannot_leave_loopback(target: str, sqlite_db: Database) -> None:
    """Under the harness's scope every target but 127.0.0.1 is refused, names before any
    lookup (the guard would refuse the lookup too)."""
    from fleetguard.core.errors import ValidationFailedError
    from fleetguard.server.scan_jobs import ScanJobs
    from fleetguard.server.scan_scope import ScanScope
    from tests.security.fuzz_support import LOOPBACK_SCOPE

    jobs = ScanJobs(sqlite_db, scope=ScanScope.of(LOOPBACK_SCOPE))
    with LoopbackGuard.armed() as blocked, pytest.raises(ValidationFailedError):
        jobs.scan_options([target], "default", {})
    assert blocked == []
    assert jobs.scan_options(["127.0.0.1"], "default", {}).targets[0].address == "127.0.0.1"
