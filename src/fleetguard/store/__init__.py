"""Persistence: SQLAlchemy 2 tables, engines and sessions, Alembic migrations."""

from fleetguard.store.db import Database, expire_loaded, flushed_connection, open_database
from fleetguard.store.migrate import current_revision, upgrade_database

__all__ = [
    "Database",
    "current_revision",
    "expire_loaded",
    "flushed_connection",
    "open_database",
    "upgrade_database",
]
