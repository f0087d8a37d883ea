"""Migrations build the schema the code expects, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

import fleetguard.store.tables  # noqa: F401
from fleetguard.store import Database, current_revision, open_database, upgrade_database
from fleetguard.store.base import Base
from fleetguard.store.migrate import head_revision
from fleetguard.store.tables import SecretRow


def test_upgrade_reaches_head(db: Database) -> None:
    assert current_revision(db) == head_revision()


def test_migrated_schema_matches_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_twice_is_harmless(db: Database) -> None:
    upgrade_database(db)
    assert current_revision(db) == head_revision()


def test_timestamps_come_back_as_aware_utc(db: Database) -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with db.session() as session:
        session.add(SecretRow(purpose="t", context="t", sealed=b"x", created_at=stamp))
    with db.session() as session:
        row = session.query(SecretRow).one()
    assert row.created_at == stamp and row.created_at.tzinfo is not None


def test_sqlite_runs_in_wal_mode(sqlite_db: Database) -> None:
    with sqlite_db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_postgres_urls_use_psycopg3(postgres_url: str) -> None:
    database = open_database(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert database.engine.dialect.driver == "psycopg"
        assert database.dialect == "postgresql"
    finally:
        database.dispose()
