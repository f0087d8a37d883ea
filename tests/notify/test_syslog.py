"""Syslog to a real rsyslogd over UDP, TCP (octet counting) and TLS, each message read back
strictly as RFC 5424 with a CEF payload, escaping and all."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleetguard import __version__
from fleetguard.core.severity import Severity
from fleetguard.keys import MasterKey
from fleetguard.notify import (
    NotificationEvent,
    Notifier,
    SyslogSettings,
    SyslogTransport,
    create_destination,
)
from fleetguard.notify.syslog import octet_counted, rfc5424_message, send_syslog
from fleetguard.store import Database
from tests.agent.pki import TestCA
from tests.notify.syslog_lab import OSSL_DRIVER, RSYSLOGD, Rsyslog, parse_cef, parse_rfc5424

needs_rsyslog = pytest.mark.skipif(
    RSYSLOGD is None, reason="rsyslogd is absent: apt-get install rsyslog")
needs_rsyslog_tls = pytest.mark.skipif(
    not OSSL_DRIVER.exists(),
    reason="rsyslog's OpenSSL driver is absent: apt-get install rsyslog-openssl")

TRICKY = 'a|b\\c=d\ne "quoted" ] end'


def _event(title: str = "Beacon to 203.0.113.9 every 5 s") -> NotificationEvent:
    return NotificationEvent(
        id="evt-7", kind="alarm.opened", severity=Severity.HIGH, title=title,
        signature_id="beacon|v2", name="C2 beacon", occurred_at=datetime(
            2026, 12, 8, 1, 2, 3, 456789, tzinfo=UTC),
        device_id="4b7c9a1e-0000-4000-8000-000000000001",
        extensions={"dst": "203.0.113.9", "dpt": "443", "cs2Label": "why", "cs2": TRICKY},
    )  # fmt: skip


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslog]:
    if RSYSLOGD is None:
        pytest.skip("rsyslogd is absent: apt-get install rsyslog")
    lab = Rsyslog.start(tmp_path_factory.mktemp("rsyslog"), TestCA.create("syslog root"))
    yield lab
    lab.stop()


def _check_message(line: str, settings: SyslogSettings) -> None:
    message = parse_rfc5424(line)
    assert (message.facility, message.severity) == (16, 3)  # local0, err
    assert message.timestamp == "2026-12-08T01:02:03.456789Z"
    assert message.app == settings.app_name and message.msgid == "alarm.opened"
    assert message.procid == str(os.getpid())
    assert message.structured_data == {"fleetguard@32473": {
        "eventId": "evt-7", "kind": "alarm.opened", "severity": "high",
        "deviceId": "4b7c9a1e-0000-4000-8000-000000000001"}}
    cef = parse_cef(message.msg)
    assert (cef.version, cef.vendor, cef.product, cef.product_version) == \
        ("0", "fleetguard", "fleetguard", __version__)
    assert (cef.signature, cef.name, cef.severity) == ("beacon|v2", "C2 beacon", 8)
    assert cef.extensions["cs2"] == TRICKY
    assert cef.extensions["msg"] == "Beacon to 203.0.113.9 every 5 s"
    assert cef.extensions["externalId"] == "evt-7" and cef.extensions["cat"] == "alarm.opened"
    assert cef.extensions["rt"] == str(int(_event().occurred_at.timestamp() * 1000))
    assert cef.extensions["cs1"] == "4b7c9a1e-0000-4000-8000-000000000001"
    assert (cef.extensions["dst"], cef.extensions["dpt"]) == ("203.0.113.9", "443")


@needs_rsyslog
@pytest.mark.parametrize("transport", [
    SyslogTransport.UDP, SyslogTransport.TCP,
    pytest.param(SyslogTransport.TLS, marks=needs_rsyslog_tls),
])
def test_rsyslog_receives_each_message_whole_and_parses_its_fields(
    rsyslog: Rsyslog, transport: SyslogTransport
) -> None:
    port = {"udp": rsyslog.udp, "tcp": rsyslog.tcp, "tls": rsyslog.tls}[transport.value]
    settings = SyslogSettings(
        host="127.0.0.1", port=port, transport=transport, facility="local0",
        app_name=f"fg-{transport.value}",
        ca_pem=rsyslog.ca_pem if transport is SyslogTransport.TLS else None,
    )  # fmt: skip
    attempt = send_syslog(settings, _event())
    assert attempt.delivered, attempt.error
    raw = rsyslog.lines(rsyslog.raw, f" fg-{transport.value} ")
    # rsyslog hands on what it received (the framing removed), byte for byte.
    assert raw == [rfc5424_message(_event(), settings).decode()]
    _check_message(raw[0], settings)
    fields = [line.split("\t")
              for line in rsyslog.lines(rsyslog.fields, f"\tfg-{transport.value}\t")]
    # rsyslog's own RFC 5424 parser agrees on facility, severity, app, procid and msgid.
    assert [f[:5] for f in fields] == [["16", "3", f"fg-{transport.value}",
                                        str(os.getpid()), "alarm.opened"]]


@needs_rsyslog
@needs_rsyslog_tls
def test_tls_to_a_collector_with_an_untrusted_certificate_is_not_delivered(
    rsyslog: Rsyslog,
) -> None:
    settings = SyslogSettings(host="127.0.0.1", port=rsyslog.tls, transport=SyslogTransport.TLS,
                              ca_pem=TestCA.create("someone else").pem.decode())
    attempt = send_syslog(settings, _event())
    assert not attempt.delivered and attempt.retry
    assert attempt.error is not None and "TLS" in attempt.error


def test_a_collector_that_is_not_listening_is_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    attempt = send_syslog(SyslogSettings("127.0.0.1", port, SyslogTransport.TCP), _event())
    assert not attempt.delivered and attempt.retry


def test_a_metadata_address_is_never_sent_to() -> None:
    attempt = send_syslog(SyslogSettings("169.254.169.254", 514, SyslogTransport.UDP), _event())
    assert not attempt.delivered and not attempt.retry


def test_tcp_frames_count_octets_not_characters() -> None:
    message = rfc5424_message(_event(title="Exfiltration: 7.6\u00d7 normal"),
                              SyslogSettings("h", 1, SyslogTransport.TCP))
    length, _, rest = octet_counted(message).partition(b" ")
    assert int(length) == len(rest) == len(message) > len(message.decode())


def test_a_message_parses_strictly_with_every_special_character_escaped(tmp_path: Path) -> None:
    settings = SyslogSettings("h", 1, SyslogTransport.UDP, facility="local0",
                              app_name="fleetguard")
    event = _event(title=TRICKY)
    line = rfc5424_message(event, settings, hostname="fg.example", procid=42).decode()
    assert "\n" not in line and "\r" not in line
    message = parse_rfc5424(line)
    assert (message.hostname, message.procid) == ("fg.example", "42")
    assert parse_cef(message.msg).extensions["msg"] == TRICKY


def test_structured_data_escapes_quote_backslash_and_bracket() -> None:
    event = NotificationEvent(
        id='x"]\\y', kind="alarm.updated", severity=Severity.LOW, title="t",
        signature_id="s", occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    line = rfc5424_message(event, SyslogSettings("h", 1, SyslogTransport.UDP)).decode()
    message = parse_rfc5424(line)
    assert message.structured_data["fleetguard@32473"]["eventId"] == 'x"]\\y'
    assert (message.facility, message.severity) == (16, 5)


@needs_rsyslog
def test_the_notifier_delivers_to_a_syslog_destination_through_the_outbox(
    rsyslog: Rsyslog, db: Database, master_key: MasterKey,
    make_notifier: Callable[..., Notifier],
) -> None:
    with db.session() as session:
        create_destination(session, master_key, actor="test", name="siem",
                           min_severity=Severity.MEDIUM,
                           syslog=SyslogSettings("127.0.0.1", rsyslog.tcp, SyslogTransport.TCP,
                                                 app_name=f"fg-outbox-{db.dialect}"))
    notifier = make_notifier()
    notifier.start()
    notifier.publish(_event())
    lines = rsyslog.lines(rsyslog.raw, f" fg-outbox-{db.dialect} ")
    assert len(lines) == 1
    assert parse_cef(parse_rfc5424(lines[0]).msg).extensions["externalId"] == "evt-7"
