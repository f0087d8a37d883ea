"""Attack: replaying a second-factor code.

The attacker has the admin's password (phished, reused) and sees one TOTP code (over the
shoulder, a phishing proxy, a screen share). A code is valid for about 90 s (one step
either side for clock drift), so without replay protection the attacker could log in
with it during that window. A TOTP code accepted once is refused afterwards for the rest
of its window, as is any older code; recovery codes are single-use. Both hold when the
attacker sends the code at the same moment as the admin (the race), on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI

from fleetguard.core.config import Settings
from fleetguard.keys import MasterKey
from fleetguard.operators import Role
from fleetguard.operators import service as operators
from fleetguard.pki import FleetCA
from fleetguard.server.operator_app import create_operator_app
from fleetguard.store import Database
from tests.api.conftest import new_client
from tests.security.support_race import at_once, reads_before_writes
from tests.support import LoggedIn, code_for, login_admin_enrolling_mfa, strong_password

ADMIN = "root"


@pytest.fixture
def admin(app: FastAPI, add_operator: Callable[[str, Role], str]) -> LoggedIn:
    """An admin who has enrolled a TOTP authenticator (with the current step's code)."""
    return login_admin_enrolling_mfa(new_client(app), ADMIN, add_operator(ADMIN, Role.ADMIN))


def _second_step(app: FastAPI, password: str) -> tuple[httpx.Client, str]:
    """A new browser past the password step: (its client, the MFA challenge)."""
    client = new_client(app)
    r = client.post("/api/v1/auth/login", json={"username": ADMIN, "password": password})
    assert r.status_code == 200 and r.json()["step"] == "mfa_required", r.text
    return client, r.json()["challenge"]


def _give_code(app: FastAPI, password: str, code: str) -> tuple[httpx.Response, int]:
    """Log in with this code: (the MFA answer, then the status of GET /me)."""
    client, challenge = _second_step(app, password)
    with client:
        r = client.post("/api/v1/auth/mfa", json={"challenge": challenge, "code": code})
        return r, client.get("/api/v1/me").status_code


def _refused(answer: tuple[httpx.Response, int]) -> None:
    r, me = answer
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "mfa_failed"
    assert "set-cookie" not in r.headers
    assert me == 401


def _accepted(answer: tuple[httpx.Response, int]) -> None:
    r, me = answer
    assert r.status_code == 200, r.text
    assert r.json()["step"] == "done"
    assert me == 200


def test_totp_replay_a_code_accepted_once_is_refused_the_second_time(
    app: FastAPI, admin: LoggedIn
) -> None:
    assert admin.totp_secret
    # The next step's code: valid now and for the next minute, and not used at enrollment.
    code = code_for(admin.totp_secret, 1)
    _accepted(_give_code(app, admin.password, code))
    _refused(_give_code(app, admin.password, code))


def test_totp_replay_an_older_code_still_in_its_window_is_refused(
    app: FastAPI, admin: LoggedIn
) -> None:
    """Codes are accepted once per time step and only forwards: after the next step's
    code, this step's (still within the drift window) is refused too."""
    assert admin.totp_secret
    _accepted(_give_code(app, admin.password, code_for(admin.totp_secret, 1)))
    _refused(_give_code(app, admin.password, code_for(admin.totp_secret, 0)))


def test_recovery_code_replay_is_refused(app: FastAPI, admin: LoggedIn) -> None:
    assert admin.recovery_codes
    code = admin.recovery_codes[0]
    _accepted(_give_code(app, admin.password, code))
    _refused(_give_code(app, admin.password, code))
    # the others still work, once each
    _accepted(_give_code(app, admin.password, admin.recovery_codes[1]))


# --- the race: the attacker sends the same code at the same moment -----------------------


@pytest.fixture
def any_app(settings: Settings, db: Database, master_key: MasterKey, fleet_ca: FleetCA
            ) -> Iterator[FastAPI]:
    """The operator API over SQLite and over PostgreSQL."""
    yield create_operator_app(settings, db=db, master_key=master_key, ca=fleet_ca)


@pytest.fixture
def any_admin(any_app: FastAPI, db: Database) -> LoggedIn:
    password = strong_password()
    with db.session() as session:
        operators.create_operator(session, username=ADMIN, password=password, role=Role.ADMIN,
                                  actor="test", issuer=None)
    return login_admin_enrolling_mfa(new_client(any_app), ADMIN, password)


def _race(app: FastAPI, db: Database, password: str, code: str) -> list[tuple[int, int]]:
    """Two browsers past the password step send the same code at once:
    [(MFA status, GET /me status)] for each."""
    steps = [_second_step(app, password) for _ in range(2)]

    def send(client: httpx.Client, challenge: str) -> tuple[int, int]:
        r = client.post("/api/v1/auth/mfa", json={"challenge": challenge, "code": code})
        return r.status_code, client.get("/api/v1/me").status_code

    with reads_before_writes(db, parties=2):
        answers = at_once(*(lambda c=c, ch=ch: send(c, ch) for c, ch in steps))
    for client, _ in steps:
        client.close()
    return answers


def test_totp_replay_race_only_one_of_two_simultaneous_logins_with_a_code_wins(
    any_app: FastAPI, db: Database, any_admin: LoggedIn
) -> None:
    assert any_admin.totp_secret
    code = code_for(any_admin.totp_secret, 1)
    answers = _race(any_app, db, any_admin.password, code)
    assert sorted(answers) == [(200, 200), (401, 401)], answers


def test_recovery_code_replay_race_only_one_of_two_simultaneous_logins_wins(
    any_app: FastAPI, db: Database, any_admin: LoggedIn
) -> None:
    assert any_admin.recovery_codes
    answers = _race(any_app, db, any_admin.password, any_admin.recovery_codes[0])
    assert sorted(answers) == [(200, 200), (401, 401)], answers
