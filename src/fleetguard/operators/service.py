"""Operators, logins with a second factor and browser sessions (API tokens: tokens.py).

Authentication failures are committed before the error is raised (so a failed attempt
always counts towards lockout even though the caller's unit of work rolls back).
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from fleetguard.auditlog import append_audit_entry
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import PermissionDeniedError, ValidationFailedError
from fleetguard.keys import MasterKey
from fleetguard.operators import passwords, throttle, totp
from fleetguard.operators._accounts import (
    LAST_USE_GRANULARITY,
    operator_row,
    sha256_hex,
    to_operator,
)
from fleetguard.operators._second_factor import (
    confirm_totp_secret,
    consume_recovery_code,
    drop_recovery_codes,
    drop_totp_secret,
    locked_operator,
    new_challenge,
    new_recovery_codes,
    open_challenge,
    open_totp_secret,
    seal_pending_totp_secret,
)
from fleetguard.operators.errors import (
    InvalidCredentialError,
    LastAdminError,
    LoginFailedError,
    MfaFailedError,
    OperatorExistsError,
)
from fleetguard.operators.minting import ensure_may_mint
from fleetguard.operators.models import (
    MFA_REQUIRED_ROLES,
    LoginResult,
    LoginStep,
    MfaEnrollment,
    Operator,
    Principal,
    Role,
)
from fleetguard.operators.tokens import revoke_operator_tokens
from fleetguard.store import Database
from fleetguard.store.tables.operators import OperatorRow, WebSessionRow

SESSION_IDLE = timedelta(minutes=30)
SESSION_ABSOLUTE = timedelta(hours=12)
USERNAME_ALPHABET = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


def validate_username(username: str) -> str:
    name = username.strip().lower()
    if not 2 <= len(name) <= 64 or not set(name) <= USERNAME_ALPHABET:
        raise ValidationFailedError(
            "username must be 2-64 characters of a-z, 0-9, '.', '_' or '-'", field="username"
        )
    return name


def database_has_operators(db: Database) -> bool:
    """Whether any operator exists, in a database that may not be migrated yet."""
    if not inspect(db.engine).has_table(OperatorRow.__tablename__):
        return False
    with db.session() as session:
        return session.execute(select(OperatorRow.id).limit(1)).first() is not None


def _enabled_admins(session: Session) -> int:
    return len(session.execute(
        select(OperatorRow.id).where(
            OperatorRow.role == Role.ADMIN.value, OperatorRow.disabled.is_(False)
        )
    ).all())


# --- operators -------------------------------------------------------------------------


def create_operator(
    session: Session, *, username: str, password: str, role: Role, actor: str,
    issuer: Principal | None,
) -> Operator:
    ensure_may_mint(issuer, what="an operator", role=role)
    name = validate_username(username)
    passwords.check_password_policy(password, name)
    exists = session.execute(
        select(OperatorRow.id).where(OperatorRow.username == name)
    ).scalar_one_or_none()
    if exists is not None:
        raise OperatorExistsError(f"an operator named {name!r} already exists")
    now = utcnow()
    row = OperatorRow(
        username=name, role=role.value, password_hash=passwords.hash_password(password),
        disabled=False, mfa_enabled=False, last_totp_step=0, created_at=now, updated_at=now,
    )
    session.add(row)
    session.flush()
    append_audit_entry(
        session, actor=actor, action="operator.create", target=f"operator:{name}",
        details={"role": role.value},
    )
    return to_operator(row)


def list_operators(session: Session) -> list[Operator]:
    rows = session.execute(select(OperatorRow).order_by(OperatorRow.username)).scalars()
    return [to_operator(r) for r in rows]


def get_operator(session: Session, username: str) -> Operator:
    return to_operator(operator_row(session, username))


def set_operator_disabled(
    session: Session, *, username: str, disabled: bool, actor: str,
    issuer: Principal | None,
) -> Operator:
    """Disable or enable again; never the last enabled admin.

    Disabling ends the operator's sessions and revokes their API tokens: an account is
    usually disabled because it is suspected, and enabling it again must not bring back
    a token that may have been stolen meanwhile. Enabling hands back the password login.
    """
    row = operator_row(session, username)
    if not disabled:
        ensure_may_mint(issuer, what="an enabled operator", role=Role(row.role))
    elif not row.disabled and row.role == Role.ADMIN.value and _enabled_admins(session) <= 1:
        raise LastAdminError(
            f"{row.username} is the last enabled admin; enable or add another admin first"
        )
    row.disabled = disabled
    row.updated_at = utcnow()
    details: dict[str, object] = {}
    if disabled:
        _end_all_sessions(session, row.id)
        details["tokens_revoked"] = revoke_operator_tokens(session, row.id)
    append_audit_entry(
        session, actor=actor, action="operator.disable" if disabled else "operator.enable",
        target=f"operator:{row.username}", details=details,
    )
    return to_operator(row)


def change_own_password(
    session: Session, principal: Principal, *, current_password: str, new_password: str
) -> None:
    """The caller changes their own password, proving the current one; every session of
    theirs ends (one may be an attacker's)."""
    row = session.get(OperatorRow, principal.operator_id)
    if row is None or not passwords.verify_password(row.password_hash, current_password):
        raise LoginFailedError("current password is wrong")
    passwords.check_password_policy(new_password, row.username)
    row.password_hash = passwords.hash_password(new_password)
    row.updated_at = utcnow()
    _end_all_sessions(session, row.id)
    append_audit_entry(
        session, actor=principal.actor, action="operator.password_change",
        target=f"operator:{row.username}",
    )


def reset_mfa(
    session: Session, *, username: str, actor: str, issuer: Principal | None
) -> Operator:
    """Remove the second factor; the operator enrolls again at the next login."""
    row = operator_row(session, username)
    # Whoever resets a second factor and knows the password holds the account.
    ensure_may_mint(issuer, what="a second-factor reset", role=Role(row.role))
    if row.totp_secret_id is not None:
        drop_totp_secret(session, row.totp_secret_id)
        row.totp_secret_id = None
    row.mfa_enabled = False
    row.last_totp_step = 0
    row.updated_at = utcnow()
    drop_recovery_codes(session, row.id)
    _end_all_sessions(session, row.id)
    append_audit_entry(
        session, actor=actor, action="operator.mfa_reset", target=f"operator:{row.username}"
    )
    return to_operator(row)


# --- login -----------------------------------------------------------------------------


def _fail_login(session: Session, keys: list[str], error: Exception) -> Exception:
    throttle.record_failure(session, keys)
    session.commit()
    return error


def login_with_password(
    session: Session, *, username: str, password: str, source: str
) -> LoginResult:
    """First step of a login. The same error for unknown user, wrong password or disabled."""
    keys = [throttle.account_key(username), throttle.address_key(source)]
    throttle.ensure_not_locked(session, keys)
    row = session.execute(
        select(OperatorRow).where(OperatorRow.username == username.strip().lower())
    ).scalar_one_or_none()
    ok = passwords.verify_password(row.password_hash if row else None, password)
    if row is None or not ok or row.disabled:
        raise _fail_login(session, keys, LoginFailedError("invalid username or password"))
    if passwords.needs_rehash(row.password_hash):
        row.password_hash = passwords.hash_password(password)
    operator = to_operator(row)
    if row.mfa_enabled:
        return LoginResult(
            LoginStep.MFA_REQUIRED, operator, challenge=new_challenge(session, row, "mfa", source)
        )
    if Role(row.role) in MFA_REQUIRED_ROLES:
        return LoginResult(
            LoginStep.MFA_ENROLLMENT_REQUIRED, operator,
            challenge=new_challenge(session, row, "enroll", source),
        )
    throttle.clear_failures(session, throttle.account_key(row.username))
    return _start_session(session, row, source)


def complete_mfa_login(
    session: Session, master: MasterKey, *, challenge: str, code: str, source: str
) -> LoginResult:
    """Second step: a TOTP code (never accepted twice) or a single-use recovery code."""
    chal = open_challenge(session, challenge, "mfa")
    row = locked_operator(session, chal.operator_id)
    keys = [throttle.account_key(row.username), throttle.address_key(source)]
    throttle.ensure_not_locked(session, keys)
    if row.disabled or not row.mfa_enabled or row.totp_secret_id is None:
        raise MfaFailedError("the login step has expired or is unknown; log in again")
    secret = open_totp_secret(session, master, row.totp_secret_id, row.id)
    step = totp.matching_step(secret, code, last_used_step=row.last_totp_step)
    if step is not None:
        row.last_totp_step = step
    elif not consume_recovery_code(session, row.id, code):
        chal.attempts += 1
        raise _fail_login(session, keys, MfaFailedError("invalid or already used code"))
    else:
        append_audit_entry(
            session, actor=f"operator:{row.username}", action="operator.recovery_code_used",
            target=f"operator:{row.username}",
        )
    chal.used_at = utcnow()
    throttle.clear_failures(session, throttle.account_key(row.username))
    return _start_session(session, row, source)


def begin_mfa_enrollment(
    session: Session, master: MasterKey, *, challenge: str
) -> MfaEnrollment:
    """Make a new TOTP secret for the operator behind an enrollment challenge."""
    chal = open_challenge(session, challenge, "enroll")
    row = session.get(OperatorRow, chal.operator_id)
    assert row is not None
    secret = totp.new_secret()
    pending_id = seal_pending_totp_secret(session, master, row.id, secret)
    if chal.pending_secret_id is not None:
        drop_totp_secret(session, chal.pending_secret_id)
    chal.pending_secret_id = pending_id
    uri = totp.provisioning_uri(secret, row.username)
    return MfaEnrollment(secret_base32=secret, otpauth_uri=uri, qr_svg=totp.qr_svg(uri))


def confirm_mfa_enrollment(
    session: Session, master: MasterKey, *, challenge: str, code: str, source: str
) -> tuple[LoginResult, list[str]]:
    """Enable MFA once the operator proves the authenticator works; returns recovery codes."""
    chal = open_challenge(session, challenge, "enroll")
    row = locked_operator(session, chal.operator_id)
    keys = [throttle.account_key(row.username), throttle.address_key(source)]
    throttle.ensure_not_locked(session, keys)
    if chal.pending_secret_id is None:
        raise MfaFailedError("start the enrollment first")
    pending_id = chal.pending_secret_id
    secret = open_totp_secret(session, master, pending_id, row.id)
    step = totp.matching_step(secret, code, last_used_step=0)
    if step is None:
        chal.attempts += 1
        raise _fail_login(session, keys, MfaFailedError("invalid code"))
    confirm_totp_secret(session, pending_id)
    row.totp_secret_id = pending_id
    row.mfa_enabled = True
    row.last_totp_step = step
    row.updated_at = utcnow()
    chal.used_at = utcnow()
    chal.pending_secret_id = None
    codes = new_recovery_codes(session, row.id)
    append_audit_entry(
        session, actor=f"operator:{row.username}", action="operator.mfa_enroll",
        target=f"operator:{row.username}",
    )
    throttle.clear_failures(session, throttle.account_key(row.username))
    return _start_session(session, row, source), codes


# --- sessions --------------------------------------------------------------------------


def _start_session(session: Session, row: OperatorRow, source: str) -> LoginResult:
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + SESSION_ABSOLUTE
    session.add(
        WebSessionRow(
            session_hash=sha256_hex(token), csrf_hash=sha256_hex(csrf), operator_id=row.id,
            created_at=now, expires_at=expires, last_seen_at=now, source=source[:64],
        )
    )
    append_audit_entry(
        session, actor=f"operator:{row.username}", action="operator.login",
        target=f"operator:{row.username}", details={"source": source},
    )
    session.flush()
    return LoginResult(
        LoginStep.DONE, to_operator(row), session_token=token, csrf_token=csrf,
        session_expires_at=expires,
    )


def _end_all_sessions(session: Session, operator_id: int) -> None:
    now = utcnow()
    for row in session.execute(
        select(WebSessionRow).where(
            WebSessionRow.operator_id == operator_id, WebSessionRow.revoked_at.is_(None)
        )
    ).scalars():
        row.revoked_at = now


def authenticate_session(
    session: Session, *, session_token: str, csrf_token: str | None, needs_csrf: bool
) -> Principal:
    row = session.execute(
        select(WebSessionRow).where(WebSessionRow.session_hash == sha256_hex(session_token))
    ).scalar_one_or_none()
    now = utcnow()
    if (
        row is None or row.revoked_at is not None or row.expires_at <= now
        or now - row.last_seen_at > SESSION_IDLE
    ):
        raise InvalidCredentialError("session expired or unknown; log in again")
    if needs_csrf and (
        csrf_token is None or not hmac.compare_digest(row.csrf_hash, sha256_hex(csrf_token))
    ):
        raise PermissionDeniedError("missing or wrong CSRF token", code="csrf_failed")
    operator = session.get(OperatorRow, row.operator_id)
    if operator is None or operator.disabled:
        raise InvalidCredentialError("session expired or unknown; log in again")
    if now - row.last_seen_at > LAST_USE_GRANULARITY:
        row.last_seen_at = now
    return Principal(
        operator_id=operator.id, username=operator.username, role=Role(operator.role),
        via="session", session_id=row.id,
    )


def end_session(session: Session, principal: Principal) -> None:
    if principal.session_id is None:
        return
    row = session.get(WebSessionRow, principal.session_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        append_audit_entry(
            session, actor=principal.actor, action="operator.logout", target=principal.actor
        )
