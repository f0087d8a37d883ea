"""Engines and sessions for SQLite (embedded default, WAL) and PostgreSQL."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.util import identity_key

from fleetguard.core.errors import ConfigurationError, DependencyError


def normalize_url(url: str) -> str:
    """Let people write postgresql:// and get the psycopg 3 driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite would BEGIN only before the first write, leaving earlier reads outside
    # the transaction; we begin ourselves (below) so a unit of work is one transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


READ_ONLY_OPTION = "fleetguard_read_only"


def _sqlite_begin(connection: Connection) -> None:
    # Units of work that may write take the write lock at the start: read-then-write work
    # (the audit chain's head, token consumption) then serialises instead of racing, as
    # FOR UPDATE does on PostgreSQL. Read-only units take a plain snapshot (WAL readers
    # never wait for writers) and must not write.
    if connection.get_execution_options().get(READ_ONLY_OPTION):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    raise ConfigurationError(f"unsupported database URL scheme: {url.split(':', 1)[0]}")


class SQLiteWriterLock:
    """One SQLite writer at a time, across threads and across processes.

    Threads queue on a re-entrant lock; processes (``serve --device-workers``) on an
    advisory file lock beside the database, where a waiter blocks in the kernel and wakes
    the moment the writer commits. Without it they would meet in SQLite's busy handler,
    which sleeps 1, 2, 5, 10... ms between polls, and a short write would cost a waiter
    several times its own length. Writers that do not take this lock (the sqlite3 shell)
    still meet the busy timeout.
    """

    def __init__(self, path: Path | None) -> None:
        self._threads = threading.RLock()
        self._depth = 0
        self._path = path
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int | None:
        if self._path is None:
            return None
        if self._fd is None or self._pid != os.getpid():  # a forked child needs its own
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._depth == 0 and (fd := self._file()) is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise
        self._depth += 1

    def acquire_if_free(self) -> bool:
        """Take the lock only if no thread or process holds it, without waiting.

        For callers that must not block (an event loop). A thread that already holds it
        gets False too: its new unit of work would wait on its own open transaction.
        Release with ``release()``.
        """
        if not self._threads.acquire(blocking=False):
            return False
        try:
            if self._depth or ((fd := self._file()) is not None
                               and not _flock_nowait(fd)):
                self._threads.release()
                return False
        except BaseException:
            self._threads.release()
            raise
        self._depth = 1
        return True

    def release(self) -> None:
        self.__exit__()

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        try:
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()


def _flock_nowait(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


_writer_locks: dict[Path | None, SQLiteWriterLock] = {}
_writer_locks_guard = threading.Lock()


def _writer_lock_for(engine: Engine) -> SQLiteWriterLock:
    """One lock per database file in a process, however many engines open it."""
    database = engine.url.database
    path = None
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).resolve().with_name(Path(database).name + ".writer-lock")
    with _writer_locks_guard:
        if path is None:
            return SQLiteWriterLock(None)
        return _writer_locks.setdefault(path, SQLiteWriterLock(path))


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    # SQLite has one writer at a time: writers queue here (see SQLiteWriterLock).
    write_lock: SQLiteWriterLock | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back on any error."""
        if self.write_lock is None:
            with self._unit(self.sessions) as session:
                yield session
            return
        with self.write_lock, self._unit(self.sessions) as session:
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read-only unit of work: never blocks or waits for writers on SQLite."""
        with self._unit(self.read_sessions) as session:
            yield session

    @contextmanager
    def _unit(self, factory: sessionmaker[Session]) -> Iterator[Session]:
        session = factory()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            raise DependencyError(f"database error: {exc.orig}") from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def share_with_sessions(self, name: str, value: object) -> None:
        """Put ``value`` in the ``info`` of every session this database opens from now on.

        How something the installation holds in memory reaches code that only gets a
        session: the audit log's keys, set once when the installation is opened with its
        master key (``fleetguard.auditlog.attach_audit_keys``), so no caller passes them.
        """
        for factory in (self.sessions, self.read_sessions):
            info = dict(factory.kw.get("info") or {})
            info[name] = value
            factory.configure(info=info)

    def shared_with_sessions(self, name: str) -> object | None:
        value: object | None = (self.sessions.kw.get("info") or {}).get(name)
        return value

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str) -> Database:
    engine = create_db_engine(url)
    reader = engine.execution_options(**{READ_ONLY_OPTION: True})
    read_sessions = sessionmaker(reader, expire_on_commit=False)
    event.listen(read_sessions, "before_flush", _refuse_writes)
    return Database(
        engine=engine, sessions=sessionmaker(engine, expire_on_commit=False),
        read_sessions=read_sessions,
        write_lock=_writer_lock_for(engine) if engine.dialect.name == "sqlite" else None,
    )


def flushed_connection(session: Session) -> Connection:
    """The session's connection, for plain (Core) statements on hot paths.

    Pending ORM changes are flushed first, so a plain statement never overtakes a row the
    unit of work still holds (a foreign key to a device added moments ago, say).
    """
    if session.new or session.dirty or session.deleted:
        session.flush()
    return session.connection()


def expire_loaded(session: Session, entity: type[Any], key: object, *attributes: str) -> None:
    """After a plain UPDATE, make a row this session already loaded re-read those columns."""
    loaded = session.identity_map.get(identity_key(entity, key))
    if loaded is not None:
        session.expire(loaded, list(attributes) or None)


def _refuse_writes(session: Session, _context: Any, _instances: Any) -> None:
    raise RuntimeError("a read-only unit of work tried to write")
