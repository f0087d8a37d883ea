"""The password policy and argon2id hashing."""

from __future__ import annotations

import pytest

from fleetguard.operators.errors import WeakPasswordError
from fleetguard.operators.passwords import check_password_policy, hash_password, verify_password


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("Sh0rt!pass", "at least 12"),
        ("password1234", "common"),
        ("qwertyuiop123", "common"),
        ("alice-Gr8-Secret-2026", "username"),
        ("aaaaaaaaaaaaaaaa", "weak"),
        ("x" * 257, "at most"),
    ],
)
def test_policy_refuses(password: str, reason: str) -> None:
    with pytest.raises(WeakPasswordError, match=reason):
        check_password_policy(password, "alice")


def test_policy_accepts_a_long_unguessable_password() -> None:
    check_password_policy("vault-Ember-Quiver-93", "alice")


def test_hash_is_argon2id_and_verifies() -> None:
    stored = hash_password("vault-Ember-Quiver-93")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "vault-Ember-Quiver-93")
    assert not verify_password(stored, "vault-Ember-Quiver-94")


def test_missing_hash_never_verifies() -> None:
    assert not verify_password(None, "anything-at-all-123")
