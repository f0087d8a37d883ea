"""Persistence: SQLAlchemy 2 tables, engines and sessions, Alembic migrations."""

from fleetguard.store.db import Database, open_database
from fleetguard.store.migrate import current_revision, upgrade_database

__all__ = ["Database", "current_revision", "open_database", "upgrade_database"]
