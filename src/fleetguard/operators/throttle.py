"""Lockout with a growing delay, per account name and per source address."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from fleetguard.core.clock import utcnow
from fleetguard.operators.errors import LockedOutError
from fleetguard.store.tables.operators import LoginThrottleRow


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures: int
    max_delay_s: float
    forget_after: timedelta

    def delay_after(self, failures: int) -> float:
        """No delay for the first few failures, then 1 s, 2 s, 4 s ... up to the cap."""
        if failures < self.free_failures:
            return 0.0
        return float(min(self.max_delay_s, 2 ** (failures - self.free_failures)))


ACCOUNT_POLICY = ThrottlePolicy(free_failures=5, max_delay_s=900, forget_after=timedelta(hours=24))
ADDRESS_POLICY = ThrottlePolicy(free_failures=20, max_delay_s=900, forget_after=timedelta(hours=1))


def account_key(username: str) -> str:
    return "account:" + username.strip().lower()[:150]


def address_key(address: str) -> str:
    return "address:" + address[:150]


def _policy(key: str) -> ThrottlePolicy:
    return ACCOUNT_POLICY if key.startswith("account:") else ADDRESS_POLICY


def ensure_not_locked(session: Session, keys: list[str], now: datetime | None = None) -> None:
    now = now or utcnow()
    for key in keys:
        row = session.get(LoginThrottleRow, key)
        if row and row.locked_until and row.locked_until > now:
            wait = (row.locked_until - now).total_seconds()
            raise LockedOutError(
                f"too many failed attempts; try again in {max(1, round(wait))} s",
                retry_after=wait,
            )


def record_failure(session: Session, keys: list[str], now: datetime | None = None) -> None:
    now = now or utcnow()
    for key in keys:
        policy = _policy(key)
        row = session.get(LoginThrottleRow, key)
        if row is None:
            row = LoginThrottleRow(key=key, failures=0, last_failure_at=now)
            session.add(row)
        elif now - row.last_failure_at > policy.forget_after:
            row.failures = 0
        row.failures += 1
        row.last_failure_at = now
        delay = policy.delay_after(row.failures)
        row.locked_until = now + timedelta(seconds=delay) if delay else None
    session.flush()


def clear_failures(session: Session, key: str) -> None:
    row = session.get(LoginThrottleRow, key)
    if row is not None:
        session.delete(row)
        session.flush()
