"""Shared fixtures: databases (SQLite and PostgreSQL), the app, and logged-in clients."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from fleetguard.auditlog import attach_audit_keys
from fleetguard.core.config import Settings
from fleetguard.keys import MasterKey
from fleetguard.store import Database, open_database, upgrade_database

PG_ADMIN_URL = os.environ.get(
    "FLEETGUARD_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except OperationalError as exc:
        return str(exc.orig).strip().splitlines()[0]


_PG_PROBLEM = _postgres_reachable()


def pytest_report_header() -> str:
    if _PG_PROBLEM:
        return f"PostgreSQL ABSENT at {PG_ADMIN_URL}: PostgreSQL tests skip ({_PG_PROBLEM})"
    return f"PostgreSQL reachable at {PG_ADMIN_URL}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database of its own on the local PostgreSQL, dropped afterwards."""
    if _PG_PROBLEM:
        pytest.skip(f"PostgreSQL is absent on 127.0.0.1:5432 ({_PG_PROBLEM})")
    name = f"fg_test_{secrets.token_hex(6)}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fleetguard.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(database_url: str, master_key: MasterKey) -> Iterator[Database]:
    """A migrated database, on SQLite and on PostgreSQL, keyed by ``master_key`` as an
    installation's is (its sessions write keyed audit entries)."""
    database = open_database(database_url)
    upgrade_database(database)
    attach_audit_keys(database, master_key)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path, master_key: MasterKey) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'fleetguard.db'}")
    upgrade_database(database)
    attach_audit_keys(database, master_key)
    yield database
    database.dispose()


@pytest.fixture
def master_key() -> MasterKey:
    return MasterKey(secrets.token_bytes(32))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'fleetguard.db'}")
