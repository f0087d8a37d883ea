"""The generated mosquitto.conf and dynsec baseline (no broker process needed)."""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from fleetguard.broker import (
    ADMIN_ROLE,
    SERVICE_ROLE,
    BrokerConfig,
    BrokerFiles,
    device_acls,
    initial_dynsec,
    prepare_broker,
)
from fleetguard.broker._identities import TLS_CERT_VALIDITY, renew_tls_identity
from fleetguard.broker.errors import BrokerConfigError
from fleetguard.core.clock import utcnow
from fleetguard.core.config import Settings, load_settings
from fleetguard.identity.ca import open_installation_ca
from fleetguard.install import init_installation
from fleetguard.keys import load_master_key
from fleetguard.pki import FleetCA
from fleetguard.protocol import MAX_MESSAGE_BYTES

DEVICE = "0b7e8d2c-3f4a-4b5c-8d6e-7f8091a2b3c4"


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, FleetCA]]:
    settings = load_settings(tmp_path_factory.mktemp("cfg") / "data")
    init_installation(settings)
    with open_installation_ca(settings, load_master_key(settings)) as ca:
        yield settings, ca


@pytest.fixture(scope="module")
def files(installation: tuple[Settings, FleetCA]) -> BrokerFiles:
    settings, ca = installation
    return prepare_broker(settings, ca, BrokerConfig(host="0.0.0.0", port=18883))


def _directives(files: BrokerFiles) -> list[tuple[str, str]]:
    lines = files.config_file.read_text().splitlines()
    pairs = [ln.split(" ", 1) for ln in lines if ln.strip() and not ln.startswith("#")]
    return [(p[0], p[1] if len(p) > 1 else "") for p in pairs]


def test_one_mutual_tls_listener_and_no_plaintext(files: BrokerFiles) -> None:
    d = _directives(files)
    assert [v for k, v in d if k == "listener"] == ["18883 0.0.0.0"]
    assert ("port", "1883") not in d and all(k != "port" for k, _ in d)
    conf = dict(d)
    assert conf["require_certificate"] == "true"
    assert conf["use_identity_as_username"] == "true"
    assert conf["use_username_as_clientid"] == "true"  # the client id is the identity too
    assert conf["tls_version"] == "tlsv1.2"
    assert conf["allow_anonymous"] == "false"
    assert conf["cafile"].endswith("/ca/bundle.pem")
    assert conf["crlfile"].endswith("/ca/crl/crls.pem")
    assert conf["certfile"] == str(files.tls_cert)
    assert conf["certfile"].endswith("/broker/tls/broker.crt")
    assert conf["keyfile"].endswith("/broker/tls/broker.key")
    assert conf["plugin"].endswith("mosquitto_dynamic_security.so")
    assert conf["plugin_opt_config_file"] == str(files.dynsec_file)
    assert Path(conf["crlfile"]).exists() and Path(conf["cafile"]).exists()


def test_sessions_queue_enough_for_ingestion_that_acknowledges_after_commit(
    files: BrokerFiles,
) -> None:
    # Mosquitto's default (1000 per session) would drop messages while ingestion catches up.
    assert int(dict(_directives(files))["max_queued_messages"]) >= 100_000


def _roles_of(state: dict[str, Any]) -> dict[str, set[str]]:
    return {c["username"]: {r["rolename"] for r in c["roles"]} for c in state["clients"]}


def test_dynsec_baseline_has_an_admin_a_service_that_is_no_admin_and_denies_all_else(
    files: BrokerFiles,
) -> None:
    state = json.loads(files.dynsec_file.read_text())
    assert set(state["defaultACLAccess"].values()) == {False}
    assert _roles_of(state) == {"fleetguard-dynsec-admin": {ADMIN_ROLE},
                                "fleetguard-platform": {SERVICE_ROLE}}
    assert all("password" not in c and "clientid" not in c for c in state["clients"])
    admin = next(r for r in state["roles"] if r["rolename"] == ADMIN_ROLE)
    assert {"acltype": "publishClientSend", "topic": "$CONTROL/dynamic-security/#",
            "priority": 0, "allow": True} in admin["acls"]


def test_device_role_names_only_its_own_topics() -> None:
    acls = {(a["acltype"], a["topic"]) for a in device_acls(DEVICE)}
    assert acls == {
        ("publishClientSend", f"fg/d/{DEVICE}/telemetry"),
        ("publishClientSend", f"fg/d/{DEVICE}/heartbeat"),
        ("publishClientSend", f"fg/d/{DEVICE}/cmd/result"),
        ("subscribeLiteral", f"fg/d/{DEVICE}/cmd"),
        ("unsubscribeLiteral", f"fg/d/{DEVICE}/cmd"),
        ("publishClientReceive", f"fg/d/{DEVICE}/cmd"),
    }


def test_private_files_stay_private(files: BrokerFiles) -> None:
    for path in (files.directory, files.state_dir, files.service_key.parent,
                 files.admin_key.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for path in (files.service_key, files.admin_key, files.dynsec_file, files.config_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _cn(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_each_platform_identity_has_a_certificate_of_its_own(files: BrokerFiles) -> None:
    for cert_file, key_file in ((files.service_cert, files.service_key),
                                (files.admin_cert, files.admin_key)):
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        assert key.public_key() == cert.public_key()
    assert (_cn(files.service_cert), _cn(files.admin_cert)) == (
        files.service_name, files.admin_name) == ("fleetguard-platform", "fleetguard-dynsec-admin")
    assert files.admin_cert.parent == files.directory / "admin"
    assert files.service_cert.parent == files.directory / "service"


def test_preparing_again_keeps_device_state_and_the_service_identity(
    installation: tuple[Settings, FleetCA], files: BrokerFiles
) -> None:
    state = json.loads(files.dynsec_file.read_text())
    state["clients"].append({"username": DEVICE, "roles": []})
    state["defaultACLAccess"]["subscribe"] = True
    files.dynsec_file.write_text(json.dumps(state))
    certs = files.service_cert.read_bytes(), files.admin_cert.read_bytes()
    settings, ca = installation
    again = prepare_broker(settings, ca, BrokerConfig(host="0.0.0.0", port=18883))
    merged = json.loads(again.dynsec_file.read_text())
    assert DEVICE in {c["username"] for c in merged["clients"]}
    assert merged["defaultACLAccess"]["subscribe"] is False
    # still fresh: not reissued
    assert (again.service_cert.read_bytes(), again.admin_cert.read_bytes()) == certs


def test_an_older_installations_identity_stays_the_service_and_is_no_longer_the_admin(
    installation: tuple[Settings, FleetCA], files: BrokerFiles
) -> None:
    """Before, one identity (broker/service/, CN fleetguard-platform) was both the admin
    and the service: it keeps its certificate (`fleetguard serve` holds it) and the service
    role only, the admin gets an identity of its own, and no other client or group keeps
    a role of the platform's."""
    shutil.rmtree(files.admin_cert.parent)
    cert = files.service_cert.read_bytes()
    both = [{"rolename": ADMIN_ROLE, "priority": 10}, {"rolename": SERVICE_ROLE, "priority": 5}]
    state = {
        "defaultACLAccess": {}, "roles": [],
        "clients": [{"username": "fleetguard-platform", "roles": both},
                    {"username": "operator-made", "roles": [*both, {"rolename": "theirs"}]}],
        "groups": [{"groupname": "everyone", "roles": both}],
    }
    files.dynsec_file.write_text(json.dumps(state))
    settings, ca = installation
    again = prepare_broker(settings, ca, BrokerConfig(host="0.0.0.0", port=18883))
    merged = json.loads(again.dynsec_file.read_text())
    assert _roles_of(merged) == {
        "fleetguard-platform": {SERVICE_ROLE}, "fleetguard-dynsec-admin": {ADMIN_ROLE},
        "operator-made": {"theirs"},
    }
    assert merged["groups"] == [{"groupname": "everyone", "roles": []}]
    assert again.service_cert.read_bytes() == cert
    assert _cn(again.admin_cert) == "fleetguard-dynsec-admin"


def test_initial_state_is_the_documented_one() -> None:
    state = initial_dynsec("svc", "adm")
    assert _roles_of(state) == {"svc": {SERVICE_ROLE}, "adm": {ADMIN_ROLE}}


def test_the_admin_and_the_service_cannot_share_a_name(
    installation: tuple[Settings, FleetCA],
) -> None:
    settings, ca = installation
    with pytest.raises(BrokerConfigError, match="name of its own"):
        prepare_broker(settings, ca, BrokerConfig(port=18883, admin_name="fleetguard-platform"))


@pytest.mark.parametrize("config", [BrokerConfig(port=0), BrokerConfig(port=70000),
                                    BrokerConfig(host="bad host")])
def test_bad_listener_settings_are_refused(
    installation: tuple[Settings, FleetCA], config: BrokerConfig
) -> None:
    settings, ca = installation
    with pytest.raises(BrokerConfigError):
        prepare_broker(settings, ca, config)


def test_packet_and_queue_limits_leave_room_for_the_largest_valid_message(
    files: BrokerFiles,
) -> None:
    conf = dict(_directives(files))
    packet = int(conf["max_packet_size"])
    # The largest valid message, on the longest device topic, with MQTT 5 properties.
    topic = f"fg/d/{DEVICE}/cmd/result"
    headers = 5 + 2 + len(topic) + 2 + 64
    assert MAX_MESSAGE_BYTES + headers <= packet <= 2 * MAX_MESSAGE_BYTES
    assert 0 < int(conf["max_queued_bytes"]) <= 1024**3
    assert 0 < int(conf["max_inflight_bytes"]) <= int(conf["max_queued_bytes"])
    assert "message_size_limit" not in conf  # deprecated: refuses without disconnecting


@pytest.mark.parametrize("config", [
    BrokerConfig(max_packet_bytes=MAX_MESSAGE_BYTES),  # would cut off valid devices
    BrokerConfig(max_queued_bytes=0),  # Mosquitto's "no limit"
    BrokerConfig(max_queued_messages=0),
    BrokerConfig(max_inflight_bytes=0),
])
def test_limits_that_refuse_valid_messages_or_lift_a_bound_are_refused(
    installation: tuple[Settings, FleetCA], config: BrokerConfig
) -> None:
    settings, ca = installation
    with pytest.raises(BrokerConfigError):
        prepare_broker(settings, ca, config)


def _names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*san.get_values_for_type(x509.DNSName),
            *map(str, san.get_values_for_type(x509.IPAddress))}


def test_the_broker_has_a_tls_identity_of_its_own_for_the_servers_names(
    installation: tuple[Settings, FleetCA], files: BrokerFiles
) -> None:
    settings, ca = installation
    broker = x509.load_pem_x509_certificate(files.tls_cert.read_bytes())
    server = x509.load_pem_x509_certificate(settings.server_cert_file.read_bytes())
    key = serialization.load_pem_private_key(files.tls_key.read_bytes(), password=None)
    assert key.public_key() == broker.public_key() != server.public_key()
    assert _names(broker) == _names(server) == {"localhost", "127.0.0.1", "::1"}
    assert broker.issuer in {c.certificate.subject for c in ca.issuing_cas}
    assert files.tls_key.parent == files.directory / "tls"
    assert stat.S_IMODE(files.tls_key.stat().st_mode) in (0o600, 0o640)
    assert stat.S_IMODE(settings.server_key_file.stat().st_mode) == 0o600


def test_a_listen_address_is_named_by_the_certificate_too(
    installation: tuple[Settings, FleetCA],
) -> None:
    settings, ca = installation
    try:
        files = prepare_broker(settings, ca, BrokerConfig(host="192.0.2.10", port=18883))
        cert = x509.load_pem_x509_certificate(files.tls_cert.read_bytes())
        assert _names(cert) == {"localhost", "127.0.0.1", "::1", "192.0.2.10"}
    finally:
        prepare_broker(settings, ca, BrokerConfig(host="0.0.0.0", port=18883))


def test_the_broker_certificate_is_kept_while_fresh_and_renewed_when_due(
    installation: tuple[Settings, FleetCA], files: BrokerFiles
) -> None:
    _, ca = installation
    before = files.tls_cert.read_bytes()
    assert not renew_tls_identity(files, ca)
    assert files.tls_cert.read_bytes() == before
    assert renew_tls_identity(files, ca, now=utcnow() + TLS_CERT_VALIDITY - timedelta(days=29))
    renewed = x509.load_pem_x509_certificate(files.tls_cert.read_bytes())
    assert renewed.serial_number != x509.load_pem_x509_certificate(before).serial_number
    assert not renew_tls_identity(files, ca)


def test_an_account_less_uid_is_a_clear_broker_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from fleetguard.broker import _account

    def no_entry(uid: int) -> object:
        raise KeyError(uid)

    monkeypatch.setattr(_account.pwd, "getpwuid", no_entry)
    with pytest.raises(BrokerConfigError, match="has no account entry"):
        _account.choose_broker_account(None)
