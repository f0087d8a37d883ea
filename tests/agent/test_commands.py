"""Only the allowed commands run; everything else is refused and reported, never raised."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from fleetguard.agent import CommandDispatcher, CommandHandlers
from fleetguard.protocol import (
    CheckOutcome,
    CheckStatus,
    Command,
    CommandName,
    CommandStatus,
    ContentType,
    RejectReason,
    encode_message,
    to_millis,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


class Recorder:
    def __init__(self):
        self.calls = []

    async def report_now(self):
        self.calls.append("report_now")
        return "report queued"

    async def rotate_certificate(self):
        self.calls.append("rotate_certificate")
        return "renewed, expires 2026-02-01"

    async def run_checks(self, checks):
        self.calls.append(("run_checks", checks))
        return [CheckOutcome(check_id=c, status=CheckStatus.PASS) for c in checks or ["all"]]


def dispatcher(recorder=None, **kwargs):
    recorder = recorder or Recorder()
    handlers = CommandHandlers(recorder.report_now, recorder.rotate_certificate, recorder.run_checks)
    return CommandDispatcher(handlers, clock=lambda: NOW, **kwargs), recorder


def command(name=CommandName.REPORT_NOW, **kwargs):
    fields = {"id": "c1", "name": name, "issued_at_ms": to_millis(NOW - timedelta(seconds=1))}
    fields.update(kwargs)
    return Command(**fields)


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("name", list(CommandName))
def test_each_allowed_command_runs_and_reports(name):
    dispatch, recorder = dispatcher()
    checks = ["ssh.root_login"] if name is CommandName.RUN_CHECKS else None
    result = run(dispatch.dispatch(command(name, checks=checks)))
    assert result.status is CommandStatus.OK and result.id == "c1" and result.name is name
    assert result.started_at_ms == result.finished_at_ms == to_millis(NOW)
    assert len(recorder.calls) == 1
    if name is CommandName.RUN_CHECKS:
        assert recorder.calls == [("run_checks", ["ssh.root_login"])]
        assert result.checks is not None and result.checks[0].check_id == "ssh.root_login"


@pytest.mark.parametrize("content_type", list(ContentType))
def test_an_unknown_command_is_refused_before_anything_runs(content_type):
    dispatch, recorder = dispatcher()
    raw = json.loads(encode_message(command(), ContentType.JSON)) | {"name": "exec"}
    data = json.dumps(raw).encode()
    if content_type is ContentType.CBOR:
        import cbor2

        data = cbor2.dumps(raw)
    assert run(dispatch.handle_payload(data, content_type)) is None
    assert recorder.calls == []
    assert dispatch.rejections[RejectReason.UNKNOWN_COMMAND] == 1


def test_a_payload_that_is_not_a_command_is_refused():
    dispatch, recorder = dispatcher()
    for data in (b"\xff\x00", b'{"v":1,"type":"heartbeat"}', b"rm -rf /"):
        assert run(dispatch.handle_payload(data, ContentType.JSON)) is None
    assert recorder.calls == [] and dispatch.rejections.total == 3


def test_a_good_payload_runs():
    dispatch, recorder = dispatcher()
    data = encode_message(command(CommandName.ROTATE_CERTIFICATE), ContentType.CBOR)
    result = run(dispatch.handle_payload(data, ContentType.CBOR))
    assert result is not None and result.status is CommandStatus.OK
    assert recorder.calls == ["rotate_certificate"]


def test_an_expired_command_is_rejected_not_run():
    dispatch, recorder = dispatcher()
    expired = command(expires_at_ms=to_millis(NOW - timedelta(milliseconds=1)),
                      issued_at_ms=to_millis(NOW - timedelta(minutes=5)))
    result = run(dispatch.dispatch(expired))
    assert result.status is CommandStatus.REJECTED and result.detail == "expired"
    assert recorder.calls == []


def test_a_replayed_command_id_is_rejected():
    dispatch, recorder = dispatcher()
    assert run(dispatch.dispatch(command())).status is CommandStatus.OK
    replay = run(dispatch.dispatch(command()))
    assert replay.status is CommandStatus.REJECTED and replay.detail == "duplicate command id"
    assert recorder.calls == ["report_now"]


def test_a_failing_handler_gives_a_failed_result():
    recorder = Recorder()

    async def broken():
        raise RuntimeError("CA unreachable")

    handlers = CommandHandlers(recorder.report_now, broken, recorder.run_checks)
    dispatch = CommandDispatcher(handlers, clock=lambda: NOW)
    result = run(dispatch.dispatch(command(CommandName.ROTATE_CERTIFICATE)))
    assert result.status is CommandStatus.FAILED
    assert result.detail == "RuntimeError: CA unreachable"


def test_a_slow_handler_times_out():
    recorder = Recorder()

    async def slow():
        await asyncio.sleep(10)
        return None

    handlers = CommandHandlers(slow, recorder.rotate_certificate, recorder.run_checks)
    dispatch = CommandDispatcher(handlers, clock=lambda: NOW, timeout_s=0.05)
    result = run(dispatch.dispatch(command()))
    assert result.status is CommandStatus.FAILED and result.detail == "timed out"
