"""Strict reading of PKCS#10 certificate requests from untrusted devices.

Only two things are taken from a request: its public key and the proof that the
sender holds the private half (the request's own signature). Everything else the
request asks for (subject, SANs, CA:true, any extension) is ignored by the issuer.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from fleetguard.pki.errors import (
    CsrSignatureError,
    CsrTooLargeError,
    MalformedCsrError,
    TruncatedCsrError,
    UnsupportedKeyError,
    WeakKeyError,
    WeakSignatureAlgorithmError,
)

#: Largest request accepted, PEM or DER. An RSA-4096 request with a few extensions is
#: about 2 KiB of PEM; anything near this bound is not a device's honest request.
MAX_CSR_BYTES = 8 * 1024

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
_ACCEPTED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
_ACCEPTED_HASHES = {"sha256", "sha384", "sha512"}

_PEM_RE = re.compile(
    rb"\A\s*-----BEGIN (?P<label>[A-Z0-9 ]+)-----\r?\n(?P<body>.*?)"
    rb"(?:-----END (?P<end>[A-Z0-9 ]+)-----\s*)?\Z",
    re.DOTALL,
)
_CSR_LABELS = {b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"}

PublicKeyTypes = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey


def load_csr(data: bytes | str) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER request within strict bounds; no signature check yet."""
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError as exc:
            raise MalformedCsrError("certificate request: PEM text must be ASCII") from exc
    if len(data) > MAX_CSR_BYTES:
        raise CsrTooLargeError(
            f"certificate request is {len(data)} bytes; the limit is {MAX_CSR_BYTES}"
        )
    if not data.strip():
        raise MalformedCsrError("certificate request is empty")
    der = _pem_to_der(data) if data.lstrip().startswith(b"-----BEGIN") else data
    _check_der_envelope(der)
    try:
        return x509.load_der_x509_csr(der)
    except ValueError as exc:
        raise MalformedCsrError(f"not a PKCS#10 certificate request ({exc})") from exc


def _pem_to_der(data: bytes) -> bytes:
    match = _PEM_RE.match(data)
    if match is None:
        raise MalformedCsrError("certificate request: unreadable PEM header")
    label = match["label"]
    if label not in _CSR_LABELS:
        shown = label.decode("ascii")[:40]
        raise MalformedCsrError(f"expected a CERTIFICATE REQUEST PEM block, got {shown!r}")
    if match["end"] is None:
        raise TruncatedCsrError("certificate request is truncated: the PEM END line is missing")
    if match["end"] != label:
        raise MalformedCsrError("certificate request: PEM BEGIN and END labels differ")
    body = match["body"]
    if b"-----" in body:
        raise MalformedCsrError("certificate request: more than one PEM block")
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedCsrError("certificate request: PEM body is not valid base64") from exc


def _check_der_envelope(der: bytes) -> None:
    """Tell a truncated request from garbage by the outer SEQUENCE header alone."""
    if der[:1] != b"\x30":
        raise MalformedCsrError("not a certificate request: it does not start with a DER SEQUENCE")
    if len(der) < 2:
        raise TruncatedCsrError("certificate request is truncated: 1 byte")
    first = der[1]
    if first < 0x80:
        header, length = 2, first
    elif first == 0x80 or first > 0x83:
        raise MalformedCsrError("not a certificate request: bad DER length encoding")
    else:
        count = first & 0x7F
        if len(der) < 2 + count:
            raise TruncatedCsrError("certificate request is truncated inside its header")
        header, length = 2 + count, int.from_bytes(der[2 : 2 + count], "big")
    total = header + length
    if len(der) < total:
        raise TruncatedCsrError(f"certificate request is truncated: {len(der)} of {total} bytes")
    if len(der) > total:
        raise MalformedCsrError(f"certificate request has {len(der) - total} bytes after its end")


def check_public_key(key: CertificatePublicKeyTypes) -> PublicKeyTypes:
    """Accept EC P-256/P-384, Ed25519 and RSA 2048..8192 with e >= 65537; refuse the rest."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _ACCEPTED_CURVES:
            raise UnsupportedKeyError(
                f"EC curve {key.curve.name} is not accepted; use P-256 or P-384"
            )
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise WeakKeyError(
                f"RSA key of {key.key_size} bits is too weak; at least {MIN_RSA_BITS} are required"
            )
        if key.key_size > MAX_RSA_BITS:
            raise UnsupportedKeyError(
                f"RSA key of {key.key_size} bits is larger than the {MAX_RSA_BITS}-bit limit"
            )
        exponent = key.public_numbers().e
        if exponent < 65537 or exponent % 2 == 0:
            raise WeakKeyError(f"RSA public exponent {exponent} is not accepted")
        return key
    kind = type(key).__name__.removeprefix("_").replace("PublicKey", "")
    raise UnsupportedKeyError(
        f"{kind} keys are not accepted; use EC P-256, EC P-384, Ed25519 or RSA >= 2048"
    )


def verified_public_key(csr: x509.CertificateSigningRequest) -> PublicKeyTypes:
    """The request's key, after the key policy and the proof-of-possession check."""
    try:
        key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise UnsupportedKeyError(
            f"the request's public key type is not supported ({exc})"
        ) from exc
    accepted = check_public_key(key)
    if not isinstance(accepted, ed25519.Ed25519PublicKey):
        try:
            algorithm = csr.signature_hash_algorithm
        except UnsupportedAlgorithm as exc:
            raise WeakSignatureAlgorithmError(
                f"the request's signature algorithm {csr.signature_algorithm_oid.dotted_string} "
                "is not supported"
            ) from exc
        if algorithm is None or algorithm.name not in _ACCEPTED_HASHES:
            shown = algorithm.name if algorithm is not None else "none"
            raise WeakSignatureAlgorithmError(
                f"the request is signed with {shown}; use SHA-256, SHA-384 or SHA-512"
            )
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CsrSignatureError(f"the request's signature cannot be checked ({exc})") from exc
    if not valid:
        raise CsrSignatureError(
            "the request's signature does not match its public key (no proof of possession)"
        )
    return accepted
