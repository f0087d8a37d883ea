"""Signed heads: to a file in the data dir and to syslog (RFC 5424 over a real UDP socket).

An auditor checks them with the public key alone; a head exported before entries were
deleted or rewritten no longer matches the chain.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, update
from typer.testing import CliRunner

from fleetguard.auditlog import (
    ROTATION_ACTION,
    SignedHeadInvalidError,
    append_audit_entry,
    attach_audit_keys,
    audit_key_for,
    chain_head,
    export_signed_head,
    parse_signed_head,
    parse_syslog_address,
    retire_audit_key,
    run_head_exporter,
    verify_chain,
    verify_signed_head,
)
from fleetguard.cli.main import app
from fleetguard.core.errors import DependencyError
from fleetguard.keys import MasterKey
from fleetguard.store import Database, open_database
from fleetguard.store.tables import AuditEntryRow, AuditHeadRow

runner = CliRunner()
RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<host>\S+) "
    r"fleetguard (?P<pid>\d+) audit-head - (?P<msg>\{.*\})"
)


@pytest.fixture
def syslog_receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def _fill(db: Database, n: int = 6) -> None:
    with db.session() as session:
        for i in range(n):
            append_audit_entry(session, actor="operator:alice", action="test.change",
                               target=f"t{i}")


def test_export_writes_a_signed_head_that_the_public_key_verifies(
    db: Database, master_key: MasterKey, tmp_path: Path
) -> None:
    _fill(db)
    path = tmp_path / "audit-head.json"
    signed = export_signed_head(db, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with db.read_session() as session:
        assert signed.head == chain_head(session)
    record = json.loads(path.read_text())
    assert record["seq"] == 6 and record["key_id"] == master_key.key_id.hex()
    public = audit_key_for(master_key).public_key
    assert base64.b64decode(record["public_key"]) == public
    assert verify_signed_head(path.read_bytes(), [public]).head == signed.head
    with pytest.raises(SignedHeadInvalidError, match="not a trusted key"):
        verify_signed_head(path.read_bytes(), [audit_key_for(MasterKey(b"x" * 32)).public_key])
    forged = dict(record, seq=5)
    with pytest.raises(SignedHeadInvalidError, match="does not verify"):
        parse_signed_head(json.dumps(forged))


def test_export_sends_rfc5424_to_syslog_over_udp(
    db: Database, master_key: MasterKey, tmp_path: Path, syslog_receiver: socket.socket
) -> None:
    _fill(db, 3)
    port = syslog_receiver.getsockname()[1]
    signed = export_signed_head(db, tmp_path / "audit-head.json",
                                syslog_address=("127.0.0.1", port))
    datagram, _ = syslog_receiver.recvfrom(65536)
    match = RFC5424.fullmatch(datagram.decode())
    assert match is not None, datagram
    assert int(match["pri"]) == 4 * 8 + 6  # facility auth, severity informational
    received = verify_signed_head(match["msg"], [audit_key_for(master_key).public_key])
    assert received.head == signed.head
    assert len(datagram) < 1024  # well inside what every syslog receiver takes over UDP


def test_an_unreachable_syslog_fails_after_the_file_is_written(
    db: Database, tmp_path: Path
) -> None:
    _fill(db, 1)
    path = tmp_path / "audit-head.json"
    with pytest.raises(DependencyError, match="syslog"):
        export_signed_head(db, path, syslog_address=str(tmp_path / "no-such-socket"))
    assert parse_signed_head(path.read_text()).seq == 1


def test_syslog_addresses() -> None:
    assert parse_syslog_address("127.0.0.1:514") == ("127.0.0.1", 514)
    assert parse_syslog_address("[::1]:5514") == ("::1", 5514)
    assert parse_syslog_address("/run/syslog.sock") == "/run/syslog.sock"
    assert parse_syslog_address("none") is None
    with pytest.raises(Exception, match="HOST:PORT"):
        parse_syslog_address("loghost")


def test_deleted_newest_entries_are_caught_by_an_exported_head(
    db: Database, tmp_path: Path
) -> None:
    _fill(db)
    signed = export_signed_head(db, tmp_path / "audit-head.json")
    with db.session() as session:  # the newest two go, and the head row is moved to match
        session.execute(delete(AuditEntryRow).where(AuditEntryRow.seq > 4))
        fourth = session.get(AuditEntryRow, 4)
        assert fourth is not None
        session.execute(update(AuditHeadRow).values(seq=4, entry_hash=fourth.entry_hash))
    with db.read_session() as session:
        assert verify_chain(session).ok  # consistent in itself, keyed and all...
        result = verify_chain(session, signed.head)
    assert not result.ok and result.first_bad_seq == 6  # ...but not with the anchor


def test_after_rotation_the_new_head_key_is_endorsed_by_the_old(
    db: Database, master_key: MasterKey, tmp_path: Path
) -> None:
    new = MasterKey(b"n" * 32)
    _fill(db, 2)
    with db.session() as session:
        retire_audit_key(session, master_key, new)
        append_audit_entry(session, actor="system", action=ROTATION_ACTION, target="master-key",
                           details={"old_key_id": master_key.key_id.hex(),
                                    "new_key_id": new.key_id.hex()})
    attach_audit_keys(db, new)
    path = tmp_path / "audit-head.json"
    signed = export_signed_head(db, path)
    assert signed.public_key == audit_key_for(new).public_key
    # An auditor who pinned the old key follows the endorsement to the new one.
    pinned = audit_key_for(master_key).public_key
    assert verify_signed_head(path.read_bytes(), [pinned]).seq == 3
    record = json.loads(path.read_text())
    record["endorsements"][0]["signature"] = base64.b64encode(b"\0" * 64).decode()
    with pytest.raises(SignedHeadInvalidError, match="endorsement does not verify"):
        verify_signed_head(json.dumps(record), [pinned])


def test_the_exporter_loop_exports_at_start_periodically_and_when_stopping(
    db: Database, tmp_path: Path, syslog_receiver: socket.socket
) -> None:
    path = tmp_path / "audit-head.json"
    port = syslog_receiver.getsockname()[1]
    stopping = False

    async def scenario() -> None:
        nonlocal stopping
        loop = asyncio.create_task(run_head_exporter(
            db, path, every_s=0.2, stop=lambda: stopping, syslog_address=("127.0.0.1", port)))
        async def exported(seq: int) -> None:
            for _ in range(400):
                if path.exists() and parse_signed_head(path.read_text()).seq == seq:
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"head {seq} was never exported")

        await exported(0)  # at start
        _fill(db, 2)
        await exported(2)  # periodically
        _fill(db, 1)
        stopping = True
        await asyncio.wait_for(loop, 10)

    asyncio.run(scenario())
    seqs = []
    syslog_receiver.settimeout(0.5)
    try:
        while True:
            datagram, _ = syslog_receiver.recvfrom(65536)
            match = RFC5424.fullmatch(datagram.decode())
            assert match is not None
            seqs.append(parse_signed_head(match["msg"]).seq)
    except TimeoutError:
        pass
    assert seqs[0] == 0 and 2 in seqs and seqs[-1] == 3  # start, periodic, final
    assert parse_signed_head(path.read_text()).seq == 3


def _init(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    assert runner.invoke(app, ["init", "--data-dir", str(data)]).exit_code == 0
    return data


def test_cli_export_head_then_verify_against_it(
    tmp_path: Path, syslog_receiver: socket.socket
) -> None:
    data = _init(tmp_path)
    port = syslog_receiver.getsockname()[1]
    out = runner.invoke(app, ["audit-log", "export-head", "--syslog", f"127.0.0.1:{port}",
                              "--data-dir", str(data)])
    assert out.exit_code == 0, out.output
    head_file = data / "audit-head.json"
    assert out.stdout.strip().splitlines()[-1] == "{seq}:{entry_hash}".format(
        **json.loads(head_file.read_text()))
    assert RFC5424.fullmatch(syslog_receiver.recvfrom(65536)[0].decode())
    result = runner.invoke(app, ["audit-log", "verify", "--expect-head", str(head_file),
                                 "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "contains the anchored head 2:" in result.output
    # Off the box: only the head file and the key pinned earlier.
    key = runner.invoke(app, ["audit-log", "public-key", "--data-dir", str(data)]).stdout.strip()
    checked = runner.invoke(app, ["audit-log", "check-head", str(head_file), "--public-key", key])
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.strip().startswith("2:")
    other = base64.b64encode(audit_key_for(MasterKey(b"o" * 32)).public_key).decode()
    refused = runner.invoke(app, ["audit-log", "check-head", str(head_file), "--public-key",
                                  other])
    assert refused.exit_code != 0 and "not a trusted key" in refused.output


def test_cli_verify_checks_the_exported_head_by_default(tmp_path: Path) -> None:
    data = _init(tmp_path)
    assert runner.invoke(app, ["audit-log", "export-head", "--syslog", "none",
                               "--data-dir", str(data)]).exit_code == 0
    db = open_database(f"sqlite:///{data / 'fleetguard.db'}")  # the database alone
    try:
        with db.session() as session:
            session.execute(delete(AuditEntryRow).where(AuditEntryRow.seq == 2))
            first = session.get(AuditEntryRow, 1)
            assert first is not None
            session.execute(update(AuditHeadRow).values(seq=1, entry_hash=first.entry_hash))
    finally:
        db.dispose()
    result = runner.invoke(app, ["audit-log", "verify", "--data-dir", str(data)])
    assert result.exit_code == 1, result.output
    assert "first bad entry 2" in result.output
    unanchored = runner.invoke(app, ["audit-log", "verify", "--no-exported-head",
                                     "--data-dir", str(data)])
    assert unanchored.exit_code == 0  # what the chain alone cannot tell
