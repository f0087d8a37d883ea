"""Rotating the issuing CA: old certificates stay valid, new ones come from the new CA."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from cryptography import x509

from fleetguard.pki import FleetCA, IssuingCaStatus, KeyAlgorithm, Revocation, open_fleet_ca


def test_certificate_of_the_old_issuing_ca_still_verifies_after_rotation(
    ca: FleetCA, device_csr, openssl_verify
) -> None:
    old = ca.issue_device_certificate(device_csr, uuid.uuid4())
    ca.rotate_issuing_ca()
    crls = ca.publish_crls([])
    result = openssl_verify(old.certificate_pem, ca.bundle_pem(), crls=crls, check_all=True)
    assert result.ok, result.output


def test_new_certificates_come_from_the_new_issuing_ca(
    ca: FleetCA, device_csr, openssl_verify
) -> None:
    old_id = ca.active_issuing_ca.ca_id
    new = ca.rotate_issuing_ca()
    issued = ca.issue_device_certificate(device_csr, uuid.uuid4())
    assert new.ca_id != old_id
    assert issued.issuer_ca_id == new.ca_id
    assert issued.certificate.issuer == new.certificate.subject
    crls = ca.publish_crls([])
    result = openssl_verify(issued.certificate_pem, ca.bundle_pem(), crls=crls, check_all=True)
    assert result.ok, result.output


def test_rotation_keeps_the_old_ca_as_retired_in_manifest_and_bundle(ca: FleetCA) -> None:
    old = ca.active_issuing_ca
    new = ca.rotate_issuing_ca()
    manifest = json.loads((ca.directory / "manifest.json").read_text())
    assert [(e["ca_id"], e["status"]) for e in manifest["issuing"]] == [
        (old.ca_id, "retired"),
        (new.ca_id, "active"),
    ]
    bundle = x509.load_pem_x509_certificates(ca.bundle_path.read_bytes())
    assert bundle == [ca.root.certificate, old.certificate, new.certificate]
    assert [c.status for c in ca.issuing_cas] == [IssuingCaStatus.RETIRED, IssuingCaStatus.ACTIVE]


def test_rotation_keeps_the_root(ca: FleetCA) -> None:
    fingerprint = ca.root_fingerprint
    new = ca.rotate_issuing_ca()
    new.certificate.verify_directly_issued_by(ca.root.certificate)
    assert ca.root_fingerprint == fingerprint


def test_revoking_a_certificate_of_the_retired_ca_puts_it_on_that_ca_crl_only(
    ca: FleetCA, device_csr, openssl_verify
) -> None:
    old = ca.issue_device_certificate(device_csr, uuid.uuid4())
    ca.rotate_issuing_ca()
    revocation = Revocation(old.serial_number, datetime.now(UTC), issuer_key_id=old.issuer_key_id)
    crls = ca.publish_crls([revocation])
    listed = [
        c.issuer_ca_id
        for c in crls.crls
        if c.crl.get_revoked_certificate_by_serial_number(old.serial_number) is not None
    ]
    assert listed == [old.issuer_ca_id]
    assert (
        "certificate revoked"
        in openssl_verify(old.certificate_pem, ca.bundle_pem(), crls=crls).output
    )


def test_rotation_may_change_the_key_algorithm(ca: FleetCA, device_csr, openssl_verify) -> None:
    new = ca.rotate_issuing_ca(key_algorithm=KeyAlgorithm.EC_P384)
    issued = ca.issue_device_certificate(device_csr, uuid.uuid4())
    assert new.key_algorithm is KeyAlgorithm.EC_P384
    assert issued.certificate.signature_hash_algorithm is not None
    assert issued.certificate.signature_hash_algorithm.name == "sha384"
    assert openssl_verify(issued.certificate_pem, ca.bundle_pem()).ok


def test_another_process_sees_the_rotation_after_reload(ca: FleetCA, file_backend) -> None:
    server_view = open_fleet_ca(ca.directory, file_backend)
    new = ca.rotate_issuing_ca()
    assert server_view.active_issuing_ca.ca_id != new.ca_id
    server_view.reload()
    assert server_view.active_issuing_ca.ca_id == new.ca_id


def test_expired_retired_ca_leaves_the_bundle_and_the_crls(ca: FleetCA) -> None:
    old = ca.active_issuing_ca
    ca.rotate_issuing_ca(validity=timedelta(days=3000))
    later = old.not_after + timedelta(days=1)
    bundle = x509.load_pem_x509_certificates(ca.bundle_pem(now=later))
    assert old.certificate not in bundle
    assert old.ca_id not in {c.issuer_ca_id for c in ca.build_crls([], now=later)}
