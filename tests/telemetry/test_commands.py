"""Device commands: queued, fetched, answered only by their own device."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fleetguard.core.clock import utcnow
from fleetguard.core.errors import ValidationFailedError
from fleetguard.protocol import CommandName, CommandResult, CommandStatus, to_millis
from fleetguard.store import Database
from fleetguard.telemetry import (
    CommandFinishedError,
    CommandNotFoundError,
    CommandState,
    list_commands,
    pending_commands,
    queue_command,
    record_command_result,
)
from tests.telemetry.support import add_device


def _result(command_id: str, status: CommandStatus = CommandStatus.OK) -> CommandResult:
    now = to_millis(utcnow())
    return CommandResult(id=command_id, name=CommandName.REPORT_NOW, status=status,
                         started_at_ms=now, finished_at_ms=now)


def test_command_lifecycle(db: Database) -> None:
    device, other = add_device(db, "a"), add_device(db, "b")
    with db.session() as session:
        queued = queue_command(session, device, CommandName.REPORT_NOW, actor="operator:1")
        queue_command(session, device, "run_checks", actor="operator:1", checks=["ssh.password_auth"])
    with db.session() as session:
        assert pending_commands(session, other) == []
        fetched = pending_commands(session, device)
    assert [c.name for c in fetched] == [CommandName.REPORT_NOW, CommandName.RUN_CHECKS]
    assert fetched[1].checks == ["ssh.password_auth"]
    with db.session() as session:
        assert len(pending_commands(session, device)) == 2  # delivered, unanswered: again
    with db.session() as session, pytest.raises(CommandNotFoundError):
        record_command_result(session, other, _result(queued.id))
    with db.session() as session:
        done = record_command_result(session, device, _result(queued.id))
        assert done.state is CommandState.OK
        record_command_result(session, device, _result(queued.id))  # repeated delivery
    with db.session() as session, pytest.raises(CommandFinishedError):
        record_command_result(session, device, _result(queued.id, CommandStatus.FAILED))
    with db.session() as session:
        assert [c.name for c in pending_commands(session, device)] == [CommandName.RUN_CHECKS]
        states = {c.name: c.state for c in list_commands(session, device)}
    assert states == {"report_now": CommandState.OK, "run_checks": CommandState.DELIVERED}


def test_expired_commands_are_not_sent(db: Database) -> None:
    device = add_device(db)
    with db.session() as session:
        queue_command(session, device, CommandName.ROTATE_CERTIFICATE, actor="operator:1",
                      ttl=timedelta(seconds=1))
    with db.session() as session:
        assert pending_commands(session, device, now=utcnow() + timedelta(seconds=5)) == []
        assert list_commands(session, device)[0].state is CommandState.EXPIRED


def test_only_allowed_commands_can_be_queued(db: Database) -> None:
    device = add_device(db)
    with db.session() as session, pytest.raises(ValidationFailedError):
        queue_command(session, device, "format_disk", actor="operator:1")
