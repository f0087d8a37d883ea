"""The CA hierarchy on disk: certificates, extensions, sealed keys and the manifest."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from fleetguard.keys import MasterKey
from fleetguard.keys.errors import SecretDecryptionError
from fleetguard.pki import (
    EncryptedFileKeyBackend,
    FleetCA,
    KeyAlgorithm,
    Pkcs11KeyBackend,
    init_fleet_ca,
    open_fleet_ca,
)
from fleetguard.pki.errors import (
    CaAlreadyExistsError,
    CaNotFoundError,
    CaStateCorruptError,
    InvalidCertificateParametersError,
    KeyBackendConfigError,
)


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension:  # type: ignore[type-arg]
    return cert.extensions.get_extension_for_class(kind)


def test_root_is_self_signed_ca_with_path_length_one(ca: FleetCA) -> None:
    root = ca.root.certificate
    root.verify_directly_issued_by(root)
    basic = _ext(root, x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 1


def test_issuing_ca_is_signed_by_root_with_path_length_zero(ca: FleetCA) -> None:
    issuing = ca.active_issuing_ca.certificate
    issuing.verify_directly_issued_by(ca.root.certificate)
    basic = _ext(issuing, x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0


def test_ca_certificates_may_only_sign_certificates_and_crls(ca: FleetCA) -> None:
    for cert in (ca.root.certificate, ca.active_issuing_ca.certificate):
        usage = _ext(cert, x509.KeyUsage)
        assert usage.critical
        assert usage.value.key_cert_sign and usage.value.crl_sign
        assert not usage.value.digital_signature


def test_issuing_ca_authority_key_id_is_the_root_subject_key_id(ca: FleetCA) -> None:
    aki = _ext(ca.active_issuing_ca.certificate, x509.AuthorityKeyIdentifier).value
    ski = _ext(ca.root.certificate, x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


_EXPECTED = {
    KeyAlgorithm.EC_P256: (256, "sha256"),
    KeyAlgorithm.EC_P384: (384, "sha384"),
    KeyAlgorithm.RSA_3072: (3072, "sha256"),
}


def test_key_algorithm_sets_key_size_and_signature_hash(ca_of_each_algorithm: FleetCA) -> None:
    size, digest = _EXPECTED[ca_of_each_algorithm.root.key_algorithm]
    for cert in (
        ca_of_each_algorithm.root.certificate,
        ca_of_each_algorithm.active_issuing_ca.certificate,
    ):
        assert cert.public_key().key_size == size  # type: ignore[union-attr]
        assert cert.signature_hash_algorithm is not None
        assert cert.signature_hash_algorithm.name == digest


def test_ca_keys_are_sealed_files_with_mode_0600(ca: FleetCA) -> None:
    key_files = sorted((ca.directory / "keys").iterdir())
    assert len(key_files) == 2
    for path in key_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().startswith(b"FGE1")
        assert b"PRIVATE KEY" not in path.read_bytes()


def test_sealed_keys_do_not_open_under_another_master_key(ca: FleetCA, device_csr) -> None:
    other = open_fleet_ca(ca.directory, EncryptedFileKeyBackend(MasterKey(os.urandom(32))))
    with pytest.raises(SecretDecryptionError):
        other.issue_device_certificate(device_csr, uuid.uuid4())


def test_a_sealed_key_copied_over_another_ca_key_does_not_open(
    ca: FleetCA, file_backend, device_csr
) -> None:
    root_file = ca.directory / ca.root.key.locator
    issuing_file = ca.directory / ca.active_issuing_ca.key.locator
    issuing_file.write_bytes(root_file.read_bytes())
    reopened = open_fleet_ca(ca.directory, file_backend)
    with pytest.raises(SecretDecryptionError):
        reopened.issue_device_certificate(device_csr, uuid.uuid4())


def test_manifest_names_the_active_issuing_ca_and_key_locations(ca: FleetCA) -> None:
    manifest = json.loads((ca.directory / "manifest.json").read_text())
    assert manifest["active_issuing"] == ca.active_issuing_ca.ca_id
    assert manifest["key_backend"] == "file"
    assert manifest["issuing"][0]["status"] == "active"
    assert manifest["root"]["key"]["locator"].startswith("keys/")


def test_bundle_file_holds_root_then_issuing_ca(ca: FleetCA) -> None:
    certs = x509.load_pem_x509_certificates(ca.bundle_path.read_bytes())
    assert certs == [ca.root.certificate, ca.active_issuing_ca.certificate]
    assert ca.bundle_pem() == ca.bundle_path.read_bytes()


def test_root_fingerprint_is_sha256_of_the_root_der(ca: FleetCA) -> None:
    der = ca.root.certificate.public_bytes(serialization.Encoding.DER)
    assert ca.root_fingerprint == hashlib.sha256(der).hexdigest()
    assert ca.root_fingerprint == ca.root.certificate.fingerprint(hashes.SHA256()).hex()
    spki = ca.root.certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert ca.root_spki_sha256 == hashlib.sha256(spki).hexdigest()


def test_second_init_in_the_same_directory_is_refused(ca: FleetCA, file_backend) -> None:
    with pytest.raises(CaAlreadyExistsError):
        init_fleet_ca(ca.directory, file_backend)


def test_reopened_ca_has_the_same_state(ca: FleetCA, file_backend) -> None:
    reopened = open_fleet_ca(ca.directory, file_backend)
    assert reopened.root.certificate == ca.root.certificate
    assert reopened.active_issuing_ca.ca_id == ca.active_issuing_ca.ca_id


def test_opening_a_directory_without_ca_says_to_run_init(tmp_path: Path, file_backend) -> None:
    with pytest.raises(CaNotFoundError, match="fleetguard ca init"):
        open_fleet_ca(tmp_path, file_backend)


def test_opening_with_the_wrong_kind_of_backend_is_refused(ca: FleetCA) -> None:
    hsm = Pkcs11KeyBackend("/nonexistent.so", "t", pin_env="UNUSED")
    with pytest.raises(KeyBackendConfigError, match="'file' backend"):
        open_fleet_ca(ca.directory, hsm)


def test_corrupt_manifest_is_an_integrity_error(ca: FleetCA, file_backend) -> None:
    (ca.directory / "manifest.json").write_text("{not json")
    with pytest.raises(CaStateCorruptError, match="unreadable"):
        open_fleet_ca(ca.directory, file_backend)


def test_issuing_certificate_not_signed_by_root_is_an_integrity_error(
    ca: FleetCA, file_backend, tmp_path: Path
) -> None:
    with init_fleet_ca(tmp_path / "other", file_backend) as other:
        foreign = other.active_issuing_ca.pem
    (ca.directory / f"issuing-{ca.active_issuing_ca.ca_id}.pem").write_bytes(foreign)
    with pytest.raises(CaStateCorruptError, match="do not chain"):
        open_fleet_ca(ca.directory, file_backend)


def test_manifest_key_path_outside_the_ca_directory_is_refused(
    ca: FleetCA, file_backend, device_csr
) -> None:
    path = ca.directory / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["issuing"][0]["key"]["locator"] = "../../etc/passwd"
    path.write_text(json.dumps(manifest))
    reopened = open_fleet_ca(ca.directory, file_backend)
    with pytest.raises(CaStateCorruptError, match="outside"):
        reopened.issue_device_certificate(device_csr, uuid.uuid4())


@pytest.mark.parametrize("name", ["", "x" * 41, "bad/name", "ünïcode"])
def test_fleet_name_must_be_short_and_plain(tmp_path: Path, file_backend, name: str) -> None:
    with pytest.raises(InvalidCertificateParametersError):
        init_fleet_ca(tmp_path / "ca", file_backend, fleet_name=name)


def test_backend_repr_never_shows_key_material(file_backend, master_key) -> None:
    assert master_key.material.hex() not in repr(file_backend)
