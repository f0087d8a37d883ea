"""Attack: enumerating operator accounts through the login endpoint.

The attacker tries usernames with a wrong password and watches the answer: a different
status or message, or a faster answer (no password hash to check for a name that does
not exist), tells which accounts exist and are worth a password-guessing campaign. An
unknown name and a known name with a wrong password get the same status, body and
headers, and take as long (both run argon2: ``passwords.verify_password`` checks a dummy
hash when there is no account).

Timing on a shared CI machine is noisy, so the comparison is of medians over alternating
attempts with a generous band (0.5x to 2x); the difference it guards against is two
orders of magnitude (argon2id at 64 MiB against a database miss). The login throttle is
lifted for the measurement so that lockout (which answers before hashing) cannot mix in.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from fleetguard.operators import Role, throttle
from fleetguard.operators.throttle import ThrottlePolicy
from tests.support import LoggedIn

ROUNDS = 15
WRONG = "Wrong-password-0123456789"


@pytest.fixture
def no_lockout(monkeypatch: pytest.MonkeyPatch) -> None:
    unlimited = ThrottlePolicy(free_failures=10**9, max_delay_s=0, forget_after=timedelta(hours=1))
    monkeypatch.setattr(throttle, "ACCOUNT_POLICY", unlimited)
    monkeypatch.setattr(throttle, "ADDRESS_POLICY", unlimited)


def _attempt(client: TestClient, username: str) -> float:
    start = time.perf_counter()
    r = client.post("/api/v1/auth/login", json={"username": username, "password": WRONG})
    elapsed = time.perf_counter() - start
    assert r.status_code == 401, r.text
    return elapsed


@pytest.mark.usefixtures("no_lockout")
def test_login_timing_unknown_user_and_wrong_password_take_as_long(
    client: TestClient, add_operator: Callable[[str, Role], str]
) -> None:
    add_operator("alice", Role.OPERATOR)
    for name in ("alice", "nobody-here"):  # warm up (first requests pay for imports)
        _attempt(client, name)
    known: list[float] = []
    unknown: list[float] = []
    for _ in range(ROUNDS):
        known.append(_attempt(client, "alice"))
        unknown.append(_attempt(client, "nobody-here"))
    ratio = statistics.median(unknown) / statistics.median(known)
    print(f"median login: known {statistics.median(known) * 1000:.1f} ms, "
          f"unknown {statistics.median(unknown) * 1000:.1f} ms, ratio {ratio:.2f}")
    assert 0.5 <= ratio <= 2.0, (ratio, known, unknown)


def _answer(client: TestClient, username: str, password: str) -> tuple[int, object, list[tuple[str, str]]]:
    r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
    headers = sorted((k, v) for k, v in r.headers.multi_items() if k != "date")
    return r.status_code, r.json(), headers


def test_login_timing_unknown_user_wrong_password_and_disabled_account_answer_alike(
    client: TestClient, add_operator: Callable[[str, Role], str],
    login_as: Callable[[Role], LoggedIn],
) -> None:
    add_operator("alice", Role.OPERATOR)
    bob_password = add_operator("bob", Role.OPERATOR)
    admin = login_as(Role.ADMIN)
    r = admin.client.post("/api/v1/operators/bob/disable", headers=admin.headers())
    assert r.status_code == 200, r.text
    unknown = _answer(client, "nobody-here", WRONG)
    wrong = _answer(client, "alice", WRONG)
    disabled = _answer(client, "bob", bob_password)  # the right password, a disabled account
    assert unknown[0] == 401
    assert "set-cookie" not in dict(unknown[2])
    assert unknown == wrong == disabled
