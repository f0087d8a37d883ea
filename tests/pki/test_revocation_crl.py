"""CRLs: openssl verify -crl_check passes before revocation and fails after it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from cryptography import x509

from fleetguard.pki import FleetCA, Revocation, RevocationReason


def _revoke(issued, reason=RevocationReason.KEY_COMPROMISE) -> Revocation:  # type: ignore[no-untyped-def]
    return Revocation(issued.serial_number, datetime.now(UTC), reason, issued.issuer_key_id)


def test_certificate_verifies_with_crl_check_before_revocation(
    ca: FleetCA, device_csr, openssl_verify
) -> None:
    issued = ca.issue_device_certificate(device_csr, uuid.uuid4())
    crls = ca.publish_crls([])
    result = openssl_verify(issued.certificate_pem, ca.bundle_pem(), crls=crls)
    assert result.ok, result.output


def test_revoked_certificate_fails_openssl_crl_check(
    ca: FleetCA, device_csr, openssl_verify
) -> None:
    issued = ca.issue_device_certificate(device_csr, uuid.uuid4())
    crls = ca.publish_crls([_revoke(issued)])
    result = openssl_verify(issued.certificate_pem, ca.bundle_pem(), crls=crls)
    assert not result.ok
    assert "certificate revoked" in result.output


def test_full_chain_crl_check_passes_with_the_root_crl(
    ca: FleetCA, device_csr, openssl_verify
) -> None:
    issued = ca.issue_device_certificate(device_csr, uuid.uuid4())
    crls = ca.publish_crls([])
    result = openssl_verify(issued.certificate_pem, ca.bundle_pem(), crls=crls, check_all=True)
    assert result.ok, result.output


def test_full_chain_crl_check_fails_for_a_revoked_certificate(
    ca: FleetCA, device_csr, openssl_verify
) -> None:
    issued = ca.issue_device_certificate(device_csr, uuid.uuid4())
    crls = ca.publish_crls([_revoke(issued)])
    result = openssl_verify(issued.certificate_pem, ca.bundle_pem(), crls=crls, check_all=True)
    assert "certificate revoked" in result.output


def test_revoking_one_device_leaves_the_others_valid(
    ca: FleetCA, device_csr, openssl_verify
) -> None:
    revoked = ca.issue_device_certificate(device_csr, uuid.uuid4())
    kept = ca.issue_device_certificate(device_csr, uuid.uuid4())
    crls = ca.publish_crls([_revoke(revoked)])
    result = openssl_verify(kept.certificate_pem, ca.bundle_pem(), crls=crls, check_all=True)
    assert result.ok, result.output


def test_crl_entry_carries_the_revocation_reason(ca: FleetCA, device_csr) -> None:
    issued = ca.issue_device_certificate(device_csr, uuid.uuid4())
    crl = ca.build_crls([_revoke(issued, RevocationReason.CESSATION_OF_OPERATION)])[-1].crl
    entry = crl.get_revoked_certificate_by_serial_number(issued.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.cessation_of_operation


def test_unspecified_reason_is_left_out_of_the_entry(ca: FleetCA, device_csr) -> None:
    issued = ca.issue_device_certificate(device_csr, uuid.uuid4())
    crl = ca.build_crls([_revoke(issued, RevocationReason.UNSPECIFIED)])[-1].crl
    entry = crl.get_revoked_certificate_by_serial_number(issued.serial_number)
    assert entry is not None
    assert len(entry.extensions) == 0


def test_crl_numbers_increase_with_every_build(ca: FleetCA) -> None:
    first = ca.build_crls([])
    second = ca.publish_crls([])
    (n,) = {c.crl_number for c in first}
    assert {c.crl_number for c in second.crls} == {n + 1}
    number = second.crls[0].crl.extensions.get_extension_for_class(x509.CRLNumber)
    assert number.value.crl_number == n + 1


def test_new_ca_has_published_crls_from_the_start(ca: FleetCA, device_csr, openssl_verify) -> None:
    issued = ca.issue_device_certificate(device_csr, uuid.uuid4())
    crl_file = ca.crl_directory / "crls.pem"
    result = openssl_verify(
        issued.certificate_pem, ca.bundle_path.read_bytes(), crls=crl_file, check_all=True
    )
    assert result.ok, result.output


def test_there_is_one_crl_for_the_root_and_one_per_issuing_ca(ca: FleetCA) -> None:
    crls = ca.build_crls([])
    assert [c.issuer_ca_id for c in crls] == [ca.root.ca_id, ca.active_issuing_ca.ca_id]
    for signed in crls:
        issuer = ca.root if signed.issuer_ca_id == ca.root.ca_id else ca.active_issuing_ca
        assert signed.crl.is_signature_valid(issuer.certificate.public_key())  # type: ignore[arg-type]
        aki = signed.crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        assert aki.value.key_identifier is not None
        assert aki.value.key_identifier.hex() == issuer.key_id


def test_next_update_follows_the_lifetime(ca: FleetCA) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    crls = ca.build_crls([], lifetime=timedelta(hours=6), now=now)
    assert all(c.next_update == now + timedelta(hours=6) for c in crls)


def test_published_crls_are_written_as_pem_der_and_one_combined_file(ca: FleetCA, tmp_path) -> None:
    published = ca.publish_crls([], directory=tmp_path / "public")
    names = sorted(p.name for p in (tmp_path / "public").iterdir())
    ids = sorted([ca.root.ca_id, ca.active_issuing_ca.ca_id])
    expected = sorted([f"{i}.crl.der" for i in ids] + [f"{i}.crl.pem" for i in ids] + ["crls.pem"])
    assert names == expected
    for signed in published.crls:
        der = (tmp_path / "public" / f"{signed.issuer_ca_id}.crl.der").read_bytes()
        assert x509.load_der_x509_crl(der) == signed.crl
    combined = published.combined_pem.read_bytes()
    assert combined == b"".join(c.pem for c in published.crls)


def test_revocation_without_issuer_goes_on_every_issuing_crl_but_not_the_root(
    ca: FleetCA,
) -> None:
    crls = ca.build_crls([Revocation(12345, datetime.now(UTC))])
    root, issuing = crls[0].crl, crls[1].crl
    assert root.get_revoked_certificate_by_serial_number(12345) is None
    assert issuing.get_revoked_certificate_by_serial_number(12345) is not None


def test_duplicate_revocations_are_listed_once(ca: FleetCA, device_csr) -> None:
    issued = ca.issue_device_certificate(device_csr, uuid.uuid4())
    crl = ca.build_crls([_revoke(issued), _revoke(issued)])[-1].crl
    assert len(crl) == 1
