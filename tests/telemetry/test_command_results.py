"""Command results go through the ingest service, from HTTPS and MQTT alike: validated,
stored by its writer, and every refusal counted against the device."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from fleetguard.core.clock import utcnow
from fleetguard.pki import FleetCA
from fleetguard.protocol import (
    CommandName,
    CommandResult,
    CommandStatus,
    MessageRejectedError,
    encode_message,
    to_millis,
)
from fleetguard.registry import service as registry
from fleetguard.store import Database
from fleetguard.telemetry import (
    CommandFinishedError,
    CommandNotFoundError,
    CommandState,
    IngestService,
    list_commands,
    queue_command,
    rejection_counts,
)
from tests.telemetry.support import add_device, device_client, enrolled_device

CBOR = "application/cbor"


def _queue(db: Database, device_id: str) -> str:
    with db.session() as session:
        return queue_command(session, device_id, CommandName.REPORT_NOW, actor="operator:1").id


def _result(command_id: str, status: CommandStatus = CommandStatus.OK) -> bytes:
    now = to_millis(utcnow())
    return encode_message(CommandResult(id=command_id, name=CommandName.REPORT_NOW,
                                        status=status, started_at_ms=now, finished_at_ms=now,
                                        detail="sent a report"), CBOR)


def _state(db: Database, device_id: str) -> tuple[CommandState, str | None]:
    with db.session() as session:
        (command,) = list_commands(session, device_id)
    return command.state, command.detail


def test_a_result_is_stored_by_the_writer_and_resolves_to_the_stored_command(
    db: Database, ingest: IngestService
) -> None:
    device = add_device(db)
    command_id = _queue(db, device)
    stored = ingest.submit_command_result(device, _result(command_id), CBOR).result(timeout=10)
    assert (stored.id, stored.state) == (command_id, CommandState.OK)
    assert _state(db, device) == (CommandState.OK, "sent a report")


def test_a_result_alone_keeps_its_device_seen(db: Database, ingest: IngestService) -> None:
    device = add_device(db)
    command_id = _queue(db, device)
    ingest.submit_command_result(device, _result(command_id), CBOR).result(timeout=10)
    with db.session() as session:
        seen = registry.get_device(session, device).last_seen_at
    assert seen is not None and (utcnow() - seen).total_seconds() < 60


def test_a_result_for_another_devices_command_is_refused_counted_and_changes_nothing(
    db: Database, ingest: IngestService
) -> None:
    device, intruder = add_device(db, "a"), add_device(db, "b")
    command_id = _queue(db, device)
    refused = ingest.submit_command_result(intruder, _result(command_id), CBOR)
    with pytest.raises(CommandNotFoundError):
        refused.result(timeout=10)
    assert ingest.flush()
    assert _state(db, device) == (CommandState.PENDING, None)
    with db.session() as session:
        assert rejection_counts(session, intruder) == {intruder: {"command_not_found": 1}}
    assert ingest.stats().rejected == 1


def test_a_second_different_result_is_refused_but_a_repeat_is_accepted(
    db: Database, ingest: IngestService
) -> None:
    device = add_device(db)
    command_id = _queue(db, device)
    ingest.submit_command_result(device, _result(command_id), CBOR).result(timeout=10)
    repeat = ingest.submit_command_result(device, _result(command_id), CBOR)
    other = ingest.submit_command_result(device, _result(command_id, CommandStatus.FAILED), CBOR)
    assert repeat.result(timeout=10).state is CommandState.OK
    with pytest.raises(CommandFinishedError):
        other.result(timeout=10)
    assert _state(db, device)[0] is CommandState.OK


def test_a_malformed_result_is_refused_at_once_and_counted(
    db: Database, ingest: IngestService
) -> None:
    device = add_device(db)
    with pytest.raises(MessageRejectedError) as refused:
        ingest.submit_command_result(device, b"{not json", "application/json")
    assert refused.value.reason.value == "malformed"
    assert ingest.flush()
    with db.session() as session:
        assert rejection_counts(session, device) == {device: {"malformed": 1}}


def test_over_https_a_result_is_stored_and_a_refusal_is_a_counted_4xx(
    device_app: FastAPI, db: Database, fleet_ca: FleetCA
) -> None:
    device, certificate = enrolled_device(db, fleet_ca)
    other = add_device(db, "other")
    mine, theirs = _queue(db, device), _queue(db, other)
    headers = {"content-type": CBOR}
    with device_client(device_app, certificate) as client:
        ok = client.post("/v1/commands/result", content=_result(mine), headers=headers)
        again = client.post("/v1/commands/result", content=_result(mine, CommandStatus.FAILED),
                            headers=headers)
        foreign = client.post("/v1/commands/result", content=_result(theirs), headers=headers)
        broken = client.post("/v1/commands/result", content=b"\xff", headers=headers)
    assert (ok.status_code, ok.json()) == (200, {"id": mine, "state": "ok"})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "command_finished")
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "command_not_found")
    assert (broken.status_code, broken.json()["error"]["reason"]) == (422, "malformed")
    assert _state(db, other) == (CommandState.PENDING, None)
    assert device_app.state.device_ctx.ingest.flush()
    with db.session() as session:
        assert rejection_counts(session, device) == {device: {
            "command_finished": 1, "command_not_found": 1, "malformed": 1}}
