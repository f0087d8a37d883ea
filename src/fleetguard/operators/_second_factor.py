"""Between a login's two steps: challenges, the sealed TOTP secret and recovery codes.

Every secret here is stored hashed (challenges, recovery codes) or sealed under the
master key and bound to its operator (TOTP secrets).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetguard.core.clock import utcnow
from fleetguard.keys import MasterKey
from fleetguard.keys.stored import (
    delete_stored_secret,
    open_stored_secret,
    set_stored_secret_purpose,
    store_sealed_secret,
)
from fleetguard.operators._accounts import sha256_hex
from fleetguard.operators.errors import MfaFailedError
from fleetguard.store.tables.operators import LoginChallengeRow, OperatorRow, RecoveryCodeRow

CHALLENGE_TTL = timedelta(minutes=5)
CHALLENGE_MAX_ATTEMPTS = 5
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_STEP_UNKNOWN = "the login step has expired or is unknown; log in again"


def new_challenge(session: Session, row: OperatorRow, purpose: str, source: str) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(
        LoginChallengeRow(
            challenge_hash=sha256_hex(token), operator_id=row.id, purpose=purpose,
            source=source, attempts=0, created_at=now, expires_at=now + CHALLENGE_TTL,
        )
    )
    session.flush()
    return token


def open_challenge(session: Session, challenge: str, purpose: str) -> LoginChallengeRow:
    # Locked (on PostgreSQL) until the step commits: two requests racing with one challenge
    # see each other's use instead of both passing.
    row = session.execute(
        select(LoginChallengeRow)
        .where(LoginChallengeRow.challenge_hash == sha256_hex(challenge))
        .with_for_update().execution_options(populate_existing=True)
    ).scalar_one_or_none()
    now = utcnow()
    if (
        row is None or row.purpose != purpose or row.used_at is not None
        or row.expires_at <= now or row.attempts >= CHALLENGE_MAX_ATTEMPTS
    ):
        raise MfaFailedError(_STEP_UNKNOWN)
    return row


def locked_operator(session: Session, operator_id: int) -> OperatorRow:
    """The operator's row, locked (on PostgreSQL) until this unit of work ends.

    A second factor is checked against state the check then changes (the last TOTP step,
    unused recovery codes); two logins racing with one code each read the old state unless
    the second waits for the first to commit and reads again.
    """
    row = session.execute(
        select(OperatorRow).where(OperatorRow.id == operator_id)
        .with_for_update().execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if row is None:
        raise MfaFailedError(_STEP_UNKNOWN)
    return row


# --- TOTP secrets ----------------------------------------------------------------------


def _secret_context(operator_id: int) -> str:
    return f"totp:{operator_id}"


def seal_pending_totp_secret(
    session: Session, master: MasterKey, operator_id: int, secret: str
) -> int:
    """Store a TOTP secret not yet confirmed by a code; returns its id."""
    return store_sealed_secret(
        session, master, purpose="totp-pending", context=_secret_context(operator_id),
        secret=secret.encode(),
    )


def open_totp_secret(
    session: Session, master: MasterKey, secret_id: int, operator_id: int
) -> str:
    secret = open_stored_secret(session, master, secret_id, context=_secret_context(operator_id))
    if secret is None:
        raise MfaFailedError("second factor is not set up; ask an admin to reset it")
    return secret.decode()


def confirm_totp_secret(session: Session, secret_id: int) -> None:
    set_stored_secret_purpose(session, secret_id, "totp")


def drop_totp_secret(session: Session, secret_id: int) -> None:
    delete_stored_secret(session, secret_id)


# --- recovery codes --------------------------------------------------------------------


def new_recovery_codes(session: Session, operator_id: int) -> list[str]:
    """Fresh single-use codes (the old ones stop working), shown to the operator once."""
    drop_recovery_codes(session, operator_id)
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(16))
        session.add(RecoveryCodeRow(operator_id=operator_id, code_hash=sha256_hex(raw)))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    session.flush()
    return codes


def consume_recovery_code(session: Session, operator_id: int, code: str) -> bool:
    normalized = code.strip().replace("-", "").replace(" ", "").upper()
    if len(normalized) != 16:
        return False
    wanted = sha256_hex(normalized)
    for row in session.execute(
        select(RecoveryCodeRow).where(
            RecoveryCodeRow.operator_id == operator_id, RecoveryCodeRow.used_at.is_(None)
        )
    ).scalars():
        if hmac.compare_digest(row.code_hash, wanted):
            row.used_at = utcnow()
            return True
    return False


def drop_recovery_codes(session: Session, operator_id: int) -> None:
    for row in session.execute(
        select(RecoveryCodeRow).where(RecoveryCodeRow.operator_id == operator_id)
    ).scalars():
        session.delete(row)
