"""The HTTPS telemetry routes end to end: real `fleetguard serve`, an agent-enrolled device."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from fleetguard.core.config import load_settings
from fleetguard.install import open_installation_database
from fleetguard.protocol import CommandName, CommandResult, CommandStatus, encode_message
from fleetguard.store import Database
from fleetguard.telemetry import Metric, queue_command, read_series, rejection_counts
from tests.integration.server import FLEETGUARD, RunningServer, start_server
from tests.protocol import samples
from tests.telemetry.support import report

pytestmark = pytest.mark.process
T = TypeVar("T")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("telemetry"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def store(server: RunningServer) -> Iterator[Database]:
    # The server's installation, keyed by its master key: these tests write audited rows.
    db = open_installation_database(load_settings(server.data_dir), migrate=False)
    yield db
    db.dispose()


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def _url(server: RunningServer, path: str) -> str:
    return f"https://127.0.0.1:{server.device_port}{path}"


def _enroll(server: RunningServer, tmp: Path, name: str) -> tuple[str, Path]:
    device_id = _ok(server.cli("device", "add", name))
    token = _ok(server.cli("device", "token", device_id))
    state = tmp / name
    _ok(subprocess.run(
        [*FLEETGUARD, "agent", "enroll", "--server", _url(server, ""), "--token", token,
         "--state-dir", str(state)],
        env=server.env, capture_output=True, text=True, timeout=60, check=False,
    ))
    return device_id, state


def _client(state: Path, *, with_cert: bool = True) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(state / "ca.pem"))
    if with_cert:
        ctx.load_cert_chain(state / "device.crt", state / "device.key")
    return httpx.Client(verify=ctx, timeout=10)


def _eventually(probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 10) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_device_posts_telemetry_and_heartbeats_in_both_encodings(
    server: RunningServer, store: Database, tmp_path: Path
) -> None:
    device_id, state = _enroll(server, tmp_path, "cam-t1")
    with _client(state) as c:
        for seq, content_type in ((1, "application/cbor"), (2, "application/json")):
            r = c.post(_url(server, "/v1/telemetry"), content=encode_message(report(seq, cpu_percent=40.0 + seq), content_type),
                       headers={"content-type": content_type})
            assert r.status_code == 202, r.text
            assert r.json() == {"accepted": True, "seq": seq}
        r = c.post(_url(server, "/v1/heartbeat"), content=encode_message(samples.heartbeat(), "application/cbor"),
                   headers={"content-type": "application/cbor"})
        assert r.status_code == 202, r.text

    def cpu() -> list[float]:
        with store.session() as session:
            since = report(0).collected_at.replace(year=2000)
            return [s.value for s in read_series(session, device_id, Metric.CPU_PERCENT, since=since)]

    assert _eventually(cpu, lambda v: len(v) == 2) == [41.0, 42.0]


def test_bad_messages_are_refused_with_their_reason_and_counted(
    server: RunningServer, store: Database, tmp_path: Path
) -> None:
    device_id, state = _enroll(server, tmp_path, "cam-t2")
    with _client(state) as c:
        bad = c.post(_url(server, "/v1/telemetry"), content=b"{nope", headers={"content-type": "application/json"})
        plain = c.post(_url(server, "/v1/telemetry"), content=b"hi", headers={"content-type": "text/plain"})
        big = c.post(_url(server, "/v1/telemetry"), content=b"0" * (256 * 1024 + 10),
                     headers={"content-type": "application/json"})
        wrong = c.post(_url(server, "/v1/heartbeat"), content=encode_message(report(1), "application/json"),
                       headers={"content-type": "application/json"})
        good = c.post(_url(server, "/v1/telemetry"), content=encode_message(report(1), "application/cbor"),
                      headers={"content-type": "application/cbor"})
    assert (bad.status_code, bad.json()["error"]["reason"]) == (422, "malformed")
    assert (plain.status_code, plain.json()["error"]["reason"]) == (415, "unsupported_content_type")
    assert (big.status_code, big.json()["error"]["reason"]) == (413, "too_large")
    assert (wrong.status_code, wrong.json()["error"]["reason"]) == (422, "unexpected_kind")
    assert good.status_code == 202

    def counts() -> dict[str, int]:
        with store.session() as session:
            return rejection_counts(session, device_id).get(device_id, {})

    assert _eventually(counts, lambda v: sum(v.values()) == 4) == {
        "malformed": 1, "unsupported_content_type": 1, "too_large": 1, "unexpected_kind": 1,
    }


def test_no_certificate_or_a_revoked_one_is_refused(server: RunningServer, tmp_path: Path) -> None:
    _, state = _enroll(server, tmp_path, "cam-t3")
    body = encode_message(report(1), "application/cbor")
    with _client(state, with_cert=False) as c:
        anonymous = c.post(_url(server, "/v1/telemetry"), content=body, headers={"content-type": "application/cbor"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "client_cert_required"
    serial = json.loads((state / "identity.json").read_text())["serial"]
    _ok(server.cli("cert", "revoke", serial, "--reason", "key_compromise"))
    with _client(state) as c:
        revoked = c.post(_url(server, "/v1/telemetry"), content=body, headers={"content-type": "application/cbor"})
        commands = c.get(_url(server, "/v1/commands"))
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "device_certificate_rejected"
    assert commands.status_code == 401


def test_commands_are_fetched_and_answered(server: RunningServer, store: Database, tmp_path: Path) -> None:
    device_id, state = _enroll(server, tmp_path, "cam-t4")
    with _client(state) as c:
        assert c.get(_url(server, "/v1/commands")).json() == {"commands": []}
        with store.session() as session:
            queued = queue_command(session, device_id, CommandName.REPORT_NOW, actor="operator:test")
        fetched = c.get(_url(server, "/v1/commands")).json()["commands"]
        assert [(f["id"], f["name"], f["type"]) for f in fetched] == [(queued.id, "report_now", "command")]
        result = CommandResult(id=queued.id, name=CommandName.REPORT_NOW, status=CommandStatus.OK,
                               started_at_ms=1, finished_at_ms=2)
        r = c.post(_url(server, "/v1/commands/result"), content=encode_message(result, "application/cbor"),
                   headers={"content-type": "application/cbor"})
        assert r.status_code == 200 and r.json() == {"id": queued.id, "state": "ok"}
        assert c.get(_url(server, "/v1/commands")).json() == {"commands": []}
        stranger = CommandResult(id="not-mine", name=CommandName.REPORT_NOW, status=CommandStatus.OK,
                                 started_at_ms=1, finished_at_ms=2)
        r = c.post(_url(server, "/v1/commands/result"), content=encode_message(stranger, "application/json"),
                   headers={"content-type": "application/json"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "command_not_found"
