"""Bad certificate requests: each is refused with its own error, and nothing is issued."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, rsa

from fleetguard.core.errors import InvalidRequestError, PayloadTooLargeError, UntrustedInputError
from fleetguard.pki import MAX_CSR_BYTES, FleetCA
from fleetguard.pki.errors import (
    CsrSignatureError,
    CsrTooLargeError,
    MalformedCsrError,
    TruncatedCsrError,
    UnsupportedKeyError,
    WeakKeyError,
    WeakSignatureAlgorithmError,
)

MakeCsr = Callable[..., bytes]
OPENSSL = shutil.which("openssl")


def _issue(ca: FleetCA, csr: bytes | str) -> None:
    ca.issue_device_certificate(csr, uuid.uuid4())


class _MismatchedKey(ec.EllipticCurvePrivateKey):
    """Signs with one key while claiming another's public key: a CSR without possession."""

    def __init__(self, signing: ec.EllipticCurvePrivateKey, claimed: ec.EllipticCurvePublicKey):
        self._signing, self._claimed = signing, claimed

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._claimed.curve

    @property
    def key_size(self) -> int:
        return self._claimed.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._claimed

    def sign(self, data, signature_algorithm):  # type: ignore[no-untyped-def]
        return self._signing.sign(data, signature_algorithm)

    def exchange(self, algorithm, peer_public_key):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def private_numbers(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def private_bytes(self, encoding, format, encryption_algorithm):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def __copy__(self) -> _MismatchedKey:
        return self

    def __deepcopy__(self, memo: dict) -> _MismatchedKey:  # type: ignore[type-arg]
        return self


def test_garbage_bytes_are_a_malformed_request(ca: FleetCA) -> None:
    with pytest.raises(MalformedCsrError, match="DER SEQUENCE") as info:
        _issue(ca, b"\x00\x01hello, I am not a CSR")
    assert not isinstance(info.value, TruncatedCsrError)
    assert isinstance(info.value, InvalidRequestError)


def test_empty_request_is_malformed(ca: FleetCA) -> None:
    with pytest.raises(MalformedCsrError, match="empty"):
        _issue(ca, b"   \n")


def test_der_sequence_with_garbage_inside_is_malformed(ca: FleetCA) -> None:
    with pytest.raises(MalformedCsrError, match="not a PKCS#10"):
        _issue(ca, b"\x30\x03\x02\x01\x05")


def test_truncated_der_request_is_reported_as_truncated(ca: FleetCA, make_key, make_csr) -> None:
    der = make_csr(make_key(), pem=False)
    with pytest.raises(TruncatedCsrError, match=f"{len(der) // 2} of {len(der)} bytes"):
        _issue(ca, der[: len(der) // 2])


def test_truncated_pem_request_is_reported_as_truncated(ca: FleetCA, make_key, make_csr) -> None:
    pem = make_csr(make_key())
    with pytest.raises(TruncatedCsrError, match="END line is missing"):
        _issue(ca, pem[: len(pem) // 2])


def test_pem_of_another_kind_is_refused_without_echoing_it(ca: FleetCA, make_key) -> None:
    key_pem = make_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(MalformedCsrError, match="got 'PRIVATE KEY'") as info:
        _issue(ca, key_pem)
    assert "MII" not in str(info.value)


def test_bytes_after_the_request_are_refused(ca: FleetCA, make_key, make_csr) -> None:
    der = make_csr(make_key(), pem=False)
    with pytest.raises(MalformedCsrError, match="3 bytes after its end"):
        _issue(ca, der + b"abc")


def test_oversized_request_is_payload_too_large(ca: FleetCA) -> None:
    with pytest.raises(CsrTooLargeError) as info:
        _issue(ca, b"0" * (MAX_CSR_BYTES + 1))
    assert isinstance(info.value, PayloadTooLargeError)


def test_non_ascii_pem_text_is_malformed(ca: FleetCA) -> None:
    with pytest.raises(MalformedCsrError, match="ASCII"):
        _issue(ca, "-----BEGIN CERTIFICATE REQUEST-----\nÄÖÜ\n")


def test_request_signed_by_another_key_fails_proof_of_possession(ca: FleetCA) -> None:
    claimed = ec.generate_private_key(ec.SECP256R1()).public_key()
    forger = _MismatchedKey(ec.generate_private_key(ec.SECP256R1()), claimed)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(forger, hashes.SHA256())
    )
    assert csr.public_key() == claimed
    with pytest.raises(CsrSignatureError, match="proof of possession") as info:
        _issue(ca, csr.public_bytes(serialization.Encoding.PEM))
    assert isinstance(info.value, UntrustedInputError)


def test_request_altered_after_signing_fails_proof_of_possession(
    ca: FleetCA, make_key, make_csr
) -> None:
    der = make_csr(make_key(), common_name="device-aaaa", pem=False)
    tampered = der.replace(b"device-aaaa", b"device-bbbb")
    with pytest.raises(CsrSignatureError):
        _issue(ca, tampered)


def test_rsa_1024_key_is_refused_as_weak(ca: FleetCA, make_csr) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(WeakKeyError, match="1024 bits is too weak"):
        _issue(ca, make_csr(key))


def test_dsa_key_is_refused_as_unsupported(ca: FleetCA, make_csr) -> None:
    key = dsa.generate_private_key(key_size=2048)
    with pytest.raises(UnsupportedKeyError, match="DSA keys are not accepted"):
        _issue(ca, make_csr(key))


@pytest.mark.parametrize("curve", [ec.SECP192R1(), ec.SECP256K1(), ec.SECP521R1()])
def test_ec_curves_other_than_p256_and_p384_are_refused(
    ca: FleetCA, make_csr, curve: ec.EllipticCurve
) -> None:
    key = ec.generate_private_key(curve)
    with pytest.raises(UnsupportedKeyError, match=f"curve {curve.name} is not accepted"):
        _issue(ca, make_csr(key))


def test_ed448_key_is_refused_as_unsupported(ca: FleetCA, make_csr) -> None:
    key = ed448.Ed448PrivateKey.generate()
    with pytest.raises(UnsupportedKeyError, match="Ed448"):
        _issue(ca, make_csr(key))


def test_request_signed_with_sha1_is_refused(ca: FleetCA, make_key, tmp_path: Path) -> None:
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    key_file = tmp_path / "device.key"
    key_file.write_bytes(
        make_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    proc = subprocess.run(
        [OPENSSL, "req", "-new", "-sha1", "-subj", "/CN=old", "-key", str(key_file)],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:  # pragma: no cover - an OpenSSL built without SHA-1 signing
        pytest.skip("this openssl refuses to make SHA-1 requests")
    with pytest.raises(WeakSignatureAlgorithmError, match="signed with sha1"):
        _issue(ca, proc.stdout)
