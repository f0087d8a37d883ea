"""SQLite writers queue on one lock: threads of a process and processes alike."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

from fleetguard.auditlog import append_audit_entry, attach_audit_keys, verify_chain
from fleetguard.keys import MasterKey
from fleetguard.store import open_database, upgrade_database
from fleetguard.store.db import SQLiteWriterLock


def _try_lock(path: str) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def _try_lock_elsewhere(path: Path) -> bool:
    """Whether another process could take the writer lock now."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return bool(pool.apply(_try_lock, (str(path),)))


def test_a_writer_in_one_process_shuts_out_writers_in_others(tmp_path: Path) -> None:
    lock = SQLiteWriterLock(tmp_path / "db.writer-lock")
    with lock:
        assert not _try_lock_elsewhere(tmp_path / "db.writer-lock")
    assert _try_lock_elsewhere(tmp_path / "db.writer-lock")


def test_nested_units_in_one_thread_keep_the_lock_until_the_outermost_ends(
    tmp_path: Path,
) -> None:
    lock = SQLiteWriterLock(tmp_path / "db.writer-lock")
    with lock:
        with lock:
            pass
        assert not _try_lock_elsewhere(tmp_path / "db.writer-lock")
    assert _try_lock_elsewhere(tmp_path / "db.writer-lock")


def test_taking_the_lock_if_free_shuts_out_other_processes_until_released(
    tmp_path: Path,
) -> None:
    lock = SQLiteWriterLock(tmp_path / "db.writer-lock")
    assert lock.acquire_if_free()
    assert not _try_lock_elsewhere(tmp_path / "db.writer-lock")
    lock.release()
    assert _try_lock_elsewhere(tmp_path / "db.writer-lock")


def _hold_lock(path: str, held: Any, release: Any) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    held.set()
    release.wait(60)
    os.close(fd)


def test_the_lock_is_not_free_while_another_process_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "db.writer-lock"
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(path), held, release))
    holder.start()
    try:
        held.wait(60)
        lock = SQLiteWriterLock(path)
        assert not lock.acquire_if_free()
        release.set()
        holder.join(60)
        assert lock.acquire_if_free()
        lock.release()
    finally:
        release.set()
        holder.join(60)


def test_the_lock_is_not_free_while_another_thread_holds_it(tmp_path: Path) -> None:
    lock = SQLiteWriterLock(tmp_path / "db.writer-lock")
    taken: list[bool] = []
    with lock:
        thread = threading.Thread(target=lambda: taken.append(lock.acquire_if_free()))
        thread.start()
        thread.join()
    assert taken == [False]


def test_the_lock_is_not_free_for_the_thread_that_holds_it(tmp_path: Path) -> None:
    # Its new unit of work would wait on its own open transaction.
    lock = SQLiteWriterLock(tmp_path / "db.writer-lock")
    with lock:
        assert not lock.acquire_if_free()
    assert lock.acquire_if_free()
    lock.release()


def test_engines_on_one_file_in_one_process_share_the_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    first, second = open_database(url), open_database(url)
    try:
        assert first.write_lock is not None
        assert first.write_lock is second.write_lock
    finally:
        first.dispose()
        second.dispose()


def test_the_lock_file_is_private(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'fleet.db'}")
    try:
        upgrade_database(db)
        with db.session():
            pass
        assert (tmp_path / "fleet.db.writer-lock").stat().st_mode & 0o077 == 0
    finally:
        db.dispose()


def _append_entries(url: str, worker: int, master: bytes) -> None:
    db = open_database(url)
    attach_audit_keys(db, MasterKey(master))
    try:
        for i in range(40):
            with db.session() as session:
                append_audit_entry(session, actor=f"process:{worker}", action="test.parallel",
                                   target=f"thing:{i}")
    finally:
        db.dispose()


def test_writers_in_several_processes_build_one_valid_chain(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    master = MasterKey(os.urandom(32))
    db = open_database(url)
    upgrade_database(db)
    attach_audit_keys(db, master)
    try:
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=_append_entries, args=(url, n, master.material))
                   for n in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(90)
        assert [w.exitcode for w in workers] == [0, 0, 0]
        with db.read_session() as session:
            result = verify_chain(session)
        assert result.ok, result.problems
        assert result.entries_checked == 120
    finally:
        db.dispose()
