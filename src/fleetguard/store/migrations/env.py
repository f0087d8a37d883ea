"""Alembic environment: runs on the connection or URL handed over by fleetguard.store.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import fleetguard.store.tables  # noqa: F401  (registers every table)
from fleetguard.store.base import Base
from fleetguard.store.db import create_db_engine

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = create_db_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
