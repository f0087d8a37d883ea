"""Destinations: what is refused (SSRF rules, bad settings), the webhook secret sealed and
rotated, every change audited."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest
from sqlalchemy import select

from fleetguard.auditlog import list_audit_entries
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import ValidationFailedError
from fleetguard.core.severity import Severity
from fleetguard.keys import MasterKey
from fleetguard.notify import (
    AddressRefusedError,
    DeliveryState,
    DestinationChanges,
    DestinationExistsError,
    NotAWebhookError,
    NotificationEvent,
    Notifier,
    SyslogSettings,
    SyslogTransport,
    WebhookSettings,
    create_destination,
    delete_destination,
    list_deliveries,
    list_destinations,
    rotate_webhook_secret,
    update_destination,
)
from fleetguard.notify.addresses import check_address, never_reason
from fleetguard.notify.destinations import webhook_secret
from fleetguard.notify.webhook import send_webhook, shown_url
from fleetguard.store import Database
from fleetguard.store.tables import SecretRow
from tests.agent.pki import TestCA
from tests.notify.receivers import HttpsReceiver, verify_signature


def _hook(db: Database, key: MasterKey, url: str, *, allow_http: bool = False,
          allow_private_network: bool = False) -> None:
    with db.session() as session:
        create_destination(session, key, actor="test", name="hook", min_severity=Severity.LOW,
                           webhook=WebhookSettings(url=url, allow_http=allow_http,
                                                   allow_private_network=allow_private_network))


@pytest.mark.parametrize("url", [
    "https://169.254.169.254/latest/meta-data/",
    "https://[fd00:ec2::254]/latest/",
    "https://[fe80::1]/x",
    "https://[::ffff:169.254.169.254]/x",
    "https://100.100.100.200/x",
    "https://0.0.0.0/x",
    "https://224.0.0.1/x",
    # The C library's numeric forms are addresses, judged as such, never looked up as names.
    "https://0/x",
    "https://2852039166/latest/",
    "https://0xa9.0xfe.0xa9.0xfe/latest/",
])
def test_metadata_and_link_local_addresses_are_refused_even_when_private_is_allowed(
    sqlite_db: Database, master_key: MasterKey, url: str
) -> None:
    with pytest.raises(AddressRefusedError) as refused:
        _hook(sqlite_db, master_key, url, allow_private_network=True)
    assert refused.value.code == "destination_address_refused" and refused.value.field == "url"


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/x", "https://[::1]/x", "https://10.1.2.3/x", "https://192.168.0.10/x",
    "https://172.16.5.5/x", "https://100.64.0.1/x", "https://[fd12:3456::1]/x",
    "https://2130706433/x", "https://127.1/x",
])
def test_private_and_loopback_addresses_need_the_flag(
    sqlite_db: Database, master_key: MasterKey, url: str
) -> None:
    with pytest.raises(AddressRefusedError, match="allow_private_network"):
        _hook(sqlite_db, master_key, url)
    _hook(sqlite_db, master_key, url, allow_private_network=True)


def test_a_name_resolving_to_loopback_is_refused_at_delivery_without_the_flag() -> None:
    # Names are checked where they are sent to, with the addresses they resolve to then.
    attempt = send_webhook(WebhookSettings("https://localhost:9/x"), "whsec_x", _probe())
    assert not attempt.delivered and not attempt.retry
    assert attempt.error is not None and "allow_private_network" in attempt.error


def test_a_metadata_address_is_never_connected_to_even_by_a_stored_destination() -> None:
    attempt = send_webhook(WebhookSettings("https://169.254.169.254/x",
                                           allow_private_network=True), "whsec_x", _probe())
    assert not attempt.delivered and not attempt.retry and "link-local" in (attempt.error or "")


def test_plain_http_needs_its_flag(sqlite_db: Database, master_key: MasterKey) -> None:
    with pytest.raises(ValidationFailedError, match="allow_http") as refused:
        _hook(sqlite_db, master_key, "http://127.0.0.1:8080/x", allow_private_network=True)
    assert refused.value.code == "invalid_destination"
    _hook(sqlite_db, master_key, "http://127.0.0.1:8080/x", allow_private_network=True,
          allow_http=True)


@pytest.mark.parametrize("url", ["ftp://example.com/x", "https:///nohost", "file:///etc/passwd",
                                 "https://user:pw@example.com/x", "https://example.com:99999/"])
def test_malformed_or_credential_bearing_urls_are_refused(
    sqlite_db: Database, master_key: MasterKey, url: str
) -> None:
    with pytest.raises(ValidationFailedError) as refused:
        _hook(sqlite_db, master_key, url)
    assert refused.value.field == "url"


def test_an_ipv4_address_inside_ipv6_is_judged_as_itself() -> None:
    assert never_reason(ipaddress.ip_address("::ffff:169.254.169.254")) is not None
    assert never_reason(ipaddress.ip_address("2002:a9fe:a9fe::1")) is not None  # 6to4
    assert never_reason(ipaddress.ip_address("64:ff9b::a9fe:a9fe")) is not None  # NAT64
    with pytest.raises(AddressRefusedError):
        check_address(ipaddress.ip_address("::ffff:127.0.0.1"), allow_private=False,
                      field="url")


def test_the_secret_is_sealed_and_opens_only_for_its_destination(
    sqlite_db: Database, master_key: MasterKey
) -> None:
    with sqlite_db.session() as session:
        created = create_destination(
            session, master_key, actor="test", name="hook", min_severity=Severity.LOW,
            webhook=WebhookSettings("https://soc.example.com/x"))
        sealed = session.execute(select(SecretRow.sealed)).scalars().all()
    assert created.secret is not None and created.secret.startswith("whsec_")
    assert len(sealed) == 1 and created.secret.encode() not in sealed[0]
    with sqlite_db.read_session() as session:
        assert webhook_secret(session, master_key, created.destination.id) == created.secret
        # Nothing of what a destination lists is the secret.
        assert created.secret not in repr(list_destinations(session))


def test_rotating_the_secret_signs_with_the_new_one(
    sqlite_db: Database, master_key: MasterKey, receiver: HttpsReceiver, receiver_ca: TestCA,
) -> None:
    with sqlite_db.session() as session:
        created = create_destination(
            session, master_key, actor="test", name="hook", min_severity=Severity.LOW,
            webhook=WebhookSettings(receiver.url, allow_private_network=True,
                                    ca_pem=receiver_ca.pem.decode()))
        new = rotate_webhook_secret(session, master_key, created.destination.id, actor="alice")
        assert len(session.execute(select(SecretRow)).scalars().all()) == 1
    with sqlite_db.read_session() as session:
        secret = webhook_secret(session, master_key, created.destination.id)
    assert secret == new != created.secret
    destination = created.destination
    assert destination.webhook is not None
    assert send_webhook(destination.webhook, new, _probe()).delivered
    (request,) = receiver.wait_for(1)
    assert verify_signature(new, request.headers, request.body)
    assert created.secret is not None
    assert not verify_signature(created.secret, request.headers, request.body)


def test_a_syslog_destination_has_no_secret_to_rotate(
    sqlite_db: Database, master_key: MasterKey
) -> None:
    with sqlite_db.session() as session:
        created = create_destination(
            session, master_key, actor="t", name="siem", min_severity=Severity.LOW,
            syslog=SyslogSettings("10.0.0.5", 6514, SyslogTransport.TCP))
        with pytest.raises(NotAWebhookError):
            rotate_webhook_secret(session, master_key, created.destination.id, actor="t")
    assert created.secret is None


@pytest.mark.parametrize(("settings", "field"), [
    (SyslogSettings("10.0.0.5", 0, SyslogTransport.UDP), "port"),
    (SyslogSettings("10.0.0.5", 514, SyslogTransport.UDP, facility="nope"), "facility"),
    (SyslogSettings("10.0.0.5", 514, SyslogTransport.UDP, app_name="has space"), "app_name"),
    (SyslogSettings("10.0.0.5", 514, SyslogTransport.TCP, ca_pem="x"), "ca_pem"),
    (SyslogSettings("10.0.0.5", 6514, SyslogTransport.TLS, ca_pem="/etc/ssl/ca.pem"), "ca_pem"),
    (SyslogSettings("169.254.169.254", 514, SyslogTransport.UDP), "host"),
    (SyslogSettings("a b", 514, SyslogTransport.UDP), "host"),
])
def test_bad_syslog_settings_are_refused_naming_the_field(
    sqlite_db: Database, master_key: MasterKey, settings: SyslogSettings, field: str
) -> None:
    with sqlite_db.session() as session, pytest.raises(ValidationFailedError) as refused:
        create_destination(session, master_key, actor="t", name="siem",
                           min_severity=Severity.LOW, syslog=settings)
    assert refused.value.field == field


def test_names_are_unique(sqlite_db: Database, master_key: MasterKey) -> None:
    _hook(sqlite_db, master_key, "https://soc.example.com/x")
    with pytest.raises(DestinationExistsError):
        _hook(sqlite_db, master_key, "https://soc2.example.com/x")


def test_every_change_is_audited_without_the_secret_or_the_query(
    sqlite_db: Database, master_key: MasterKey
) -> None:
    with sqlite_db.session() as session:
        created = create_destination(
            session, master_key, actor="alice", name="hook", min_severity=Severity.LOW,
            webhook=WebhookSettings("https://soc.example.com/x?token=abc123"))
        ident = created.destination.id
        update_destination(session, ident, DestinationChanges(min_severity=Severity.HIGH,
                                                              enabled=False), actor="alice")
        rotate_webhook_secret(session, master_key, ident, actor="alice")
        delete_destination(session, ident, actor="alice")
        entries = list_audit_entries(session)
    mine = [e for e in entries if e.target == f"notification_destination:{ident}"]
    assert [e.action for e in mine] == [
        "notification_destination.create", "notification_destination.update",
        "notification_destination.rotate_secret", "notification_destination.delete"]
    assert all(e.actor == "alice" for e in mine)
    assert mine[1].details["changed"] == {"enabled": [True, False],
                                          "min_severity": ["low", "high"]}
    text = repr([e.details for e in mine])
    assert "abc123" not in text and (created.secret or "?") not in text
    assert shown_url("https://h/x?token=abc123") == "https://h/x?REDACTED"


def test_a_deleted_destination_gets_nothing_more(
    db: Database, master_key: MasterKey, make_notifier: Callable[..., Notifier],
) -> None:
    with db.session() as session:
        created = create_destination(
            session, master_key, actor="t", name="hook", min_severity=Severity.LOW,
            webhook=WebhookSettings("https://soc.example.com/x"))
    notifier = make_notifier()
    notifier.publish(_probe())
    notifier.stop()  # stored as pending
    with db.read_session() as session:
        assert [d.state for d in list_deliveries(session).deliveries] == [DeliveryState.PENDING]
    with db.session() as session:
        delete_destination(session, created.destination.id, actor="t")
    with db.read_session() as session:
        assert list_deliveries(session).deliveries == []


def _probe() -> NotificationEvent:
    return NotificationEvent(kind="alarm.opened", severity=Severity.HIGH, title="probe",
                             signature_id="probe", occurred_at=utcnow())


def test_a_redirect_is_not_followed(
    receiver: HttpsReceiver, receiver_ca: TestCA,
) -> None:
    receiver.script.answers = [(302, {"Location": "https://169.254.169.254/latest/"})]
    settings = WebhookSettings(receiver.url, allow_private_network=True,
                               ca_pem=receiver_ca.pem.decode())
    attempt = send_webhook(settings, "whsec_x", _probe())
    assert (attempt.delivered, attempt.retry, attempt.status) == (False, False, 302)
    assert len(receiver.requests) == 1


def test_a_receiver_with_an_untrusted_certificate_is_not_delivered_to(
    receiver: HttpsReceiver,
) -> None:
    settings = WebhookSettings(receiver.url, allow_private_network=True,
                               ca_pem=TestCA.create("not the receiver's").pem.decode())
    attempt = send_webhook(settings, "whsec_x", _probe())
    assert not attempt.delivered and attempt.retry and "TLS" in (attempt.error or "")
    assert receiver.requests == []
