"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

from fleetguard.operators.errors import WeakPasswordError

MIN_LENGTH = 12
# Bounded so that hashing cannot be turned into a denial of service.
MAX_LENGTH = 256
MIN_ZXCVBN_SCORE = 3

# argon2id with RFC 9106's second recommended profile (t=3, m=64 MiB, p=4).
_HASHER = PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4)
# Verified against when the account does not exist, so the answer takes as long.
_DUMMY_HASH = _HASHER.hash("fleetguard-timing-equaliser-not-a-password")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)


def check_password_policy(password: str, username: str) -> None:
    """Refuse short, long, common or guessable passwords and any containing the username."""
    if len(password) < MIN_LENGTH:
        raise WeakPasswordError(
            f"password must be at least {MIN_LENGTH} characters", field="password"
        )
    if len(password) > MAX_LENGTH:
        raise WeakPasswordError(
            f"password must be at most {MAX_LENGTH} characters", field="password"
        )
    if username and username.lower() in password.lower():
        raise WeakPasswordError("password must not contain the username", field="password")
    result = zxcvbn(password, user_inputs=[username, "fleetguard"])
    common = any(
        m.get("pattern") == "dictionary" and m.get("dictionary_name") == "passwords"
        and len(m.get("token", "")) >= len(password) - 2
        for m in result["sequence"]
    )
    if common:
        raise WeakPasswordError(
            "password is on the list of common and breached passwords", field="password"
        )
    if result["score"] < MIN_ZXCVBN_SCORE:
        hint = result["feedback"].get("warning") or "it is too easy to guess"
        raise WeakPasswordError(f"password is too weak: {hint}", field="password")
