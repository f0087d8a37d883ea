"""Operator accounts through the service, without HTTP: own password, the first admin."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from fleetguard.operators import Principal, Role
from fleetguard.operators import service as operators
from fleetguard.operators.errors import InvalidCredentialError, LoginFailedError
from fleetguard.store import Database, open_database
from tests.support import strong_password


def _operator(session: Session, username: str, password: str) -> Principal:
    op = operators.create_operator(
        session, username=username, password=password, role=Role.OPERATOR, actor="test",
        issuer=None,
    )
    return Principal(operator_id=op.id, username=op.username, role=op.role, via="session")


def test_own_password_change_needs_the_current_password(db: Database) -> None:
    password = strong_password()
    with db.session() as session:
        me = _operator(session, "alice", password)
    with db.session() as session, pytest.raises(LoginFailedError):
        operators.change_own_password(
            session, me, current_password="not-" + password, new_password=strong_password()
        )
    with db.session() as session:
        result = operators.login_with_password(
            session, username="alice", password=password, source="127.0.0.1"
        )
    assert result.session_token


def test_own_password_change_ends_every_session(db: Database) -> None:
    password, new = strong_password(), strong_password()
    with db.session() as session:
        me = _operator(session, "alice", password)
        login = operators.login_with_password(
            session, username="alice", password=password, source="127.0.0.1"
        )
    assert login.session_token is not None
    with db.session() as session:
        operators.change_own_password(session, me, current_password=password, new_password=new)
    with db.session() as session, pytest.raises(InvalidCredentialError):
        operators.authenticate_session(
            session, session_token=login.session_token, csrf_token=None, needs_csrf=False
        )


def test_an_unmigrated_database_has_no_operators(tmp_path) -> None:  # type: ignore[no-untyped-def]
    empty = open_database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        assert operators.database_has_operators(empty) is False
    finally:
        empty.dispose()


def test_a_database_with_an_operator_has_operators(db: Database) -> None:
    with db.session() as session:
        _operator(session, "alice", strong_password())
    assert operators.database_has_operators(db) is True
