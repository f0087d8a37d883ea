"""CA keys inside a PKCS#11 token (a real HSM in production, SoftHSM2 in tests).

Keys are generated in the token, sensitive and never extractable; every signature is
made by the token. The mechanisms used are the subset every token has: ``CKM_ECDSA``
over a digest computed here, and ``CKM_RSA_PKCS`` over a DigestInfo computed here
(SoftHSM 2.6 has no ``CKM_ECDSA_SHA256``).

The PIN is read from a file or an environment variable when a session is opened; it
is never stored on the backend object, shown in ``repr`` or logged.

``python-pkcs11`` is imported lazily, so ``fleetguard.pki`` imports without it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, Self, TypeVar

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    NoDigestInfo,
    Prehashed,
    encode_dss_signature,
)

from fleetguard.pki._backends import CaPublicKey, CaSigningKey, KeyBackend
from fleetguard.pki.errors import KeyBackendConfigError, KeyBackendError
from fleetguard.pki.models import KeyAlgorithm, KeyReference

if TYPE_CHECKING:
    from fleetguard.core.errors import FleetError

_CURVE_OIDS = {KeyAlgorithm.EC_P256: "secp256r1", KeyAlgorithm.EC_P384: "secp384r1"}

# DER DigestInfo prefixes (RFC 8017 section 9.2, note 1) for CKM_RSA_PKCS.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}

_LIBS: dict[str, tuple[int, Any]] = {}
_LIBS_LOCK = threading.Lock()


def _import_pkcs11() -> Any:
    try:
        import pkcs11
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise KeyBackendConfigError(
            "the PKCS#11 key backend needs python-pkcs11 (pip install python-pkcs11)"
        ) from exc
    return pkcs11


def _load_library(module_path: Path) -> Any:
    """One initialised library per module file and process (C_Initialize runs once)."""
    pkcs11 = _import_pkcs11()
    key = str(module_path.resolve())
    with _LIBS_LOCK:
        cached = _LIBS.get(key)
        if cached is not None:
            pid, lib = cached
            if pid != os.getpid():  # forked: the child must initialise the module again
                lib.reinitialize()
                _LIBS[key] = (os.getpid(), lib)
            return lib
        if not module_path.is_file():
            raise KeyBackendConfigError(f"PKCS#11 module {module_path} does not exist")
        try:
            lib = pkcs11.lib(key)
        except Exception as exc:
            raise KeyBackendConfigError(
                f"PKCS#11 module {module_path} could not be loaded: {type(exc).__name__}"
            ) from exc
        _LIBS[key] = (os.getpid(), lib)
        return lib


def _digest(data: bytes, algorithm: hashes.HashAlgorithm | Prehashed) -> tuple[str, bytes]:
    if isinstance(algorithm, Prehashed):
        return algorithm._algorithm.name, bytes(data)
    h = hashes.Hash(algorithm)
    h.update(data)
    return algorithm.name, h.finalize()


_Public = TypeVar("_Public", ec.EllipticCurvePublicKey, rsa.RSAPublicKey)


def _no_export() -> NoReturn:
    raise TypeError("this CA key lives in a PKCS#11 token and cannot be exported")


class _InToken(Generic[_Public]):
    """What a token key is whatever its algorithm: a label in a backend's token beside its
    public key, never exported, and (holding no key material) its own copy."""

    _kind: ClassVar[str]
    _public: _Public

    def __init__(self, backend: Pkcs11KeyBackend, label: str, public: _Public):
        self._backend = backend
        self._label = label
        self._public = public

    def __repr__(self) -> str:
        return f"<PKCS#11 {self._kind} key {self._label!r} in {self._backend.token_label!r}>"

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        _no_export()

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[Any, Any]) -> Self:
        return self


class _TokenEcKey(_InToken[ec.EllipticCurvePublicKey], ec.EllipticCurvePrivateKey):
    """An EC CA key in a token, shaped as a ``cryptography`` private key for the builders."""

    _kind = "EC"

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: Any, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError("only ECDSA signatures are supported")
        _, digest = _digest(bytes(data), signature_algorithm.algorithm)
        raw = self._backend._sign(self._label, "ECDSA", digest)
        half = len(raw) // 2
        if len(raw) % 2 or half != (self.key_size + 7) // 8:
            raise KeyBackendError(f"token returned a {len(raw)}-byte ECDSA signature")
        return encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise TypeError("a fleet CA key signs only")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        _no_export()


class _TokenRsaKey(_InToken[rsa.RSAPublicKey], rsa.RSAPrivateKey):
    """An RSA CA key in a token; PKCS#1 v1.5 signatures only."""

    _kind = "RSA"

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def sign(
        self,
        data: bytes,
        padding: padding.AsymmetricPadding,
        algorithm: Prehashed | hashes.HashAlgorithm | NoDigestInfo,
    ) -> bytes:
        if padding.name != "EMSA-PKCS1-v1_5" or isinstance(algorithm, NoDigestInfo):
            raise TypeError("only PKCS#1 v1.5 signatures with a DigestInfo are supported")
        name, digest = _digest(bytes(data), algorithm)
        prefix = _DIGEST_INFO.get(name)
        if prefix is None:
            raise TypeError(f"hash {name} is not supported for token RSA signatures")
        return self._backend._sign(self._label, "RSA_PKCS", prefix + digest)

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        raise TypeError("a fleet CA key signs only")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        _no_export()


class Pkcs11KeyBackend(KeyBackend):
    """CA keys generated and used inside a PKCS#11 token, found by token and key label.

    Give the PIN as ``pin_file`` (its first line) or ``pin_env`` (the name of an
    environment variable), exactly one of them. One logged-in session is kept per
    backend and guarded by a lock, so signers may be used from several threads.
    """

    kind = "pkcs11"

    def __init__(
        self,
        module_path: str | Path,
        token_label: str,
        *,
        pin_file: str | Path | None = None,
        pin_env: str | None = None,
        key_label_prefix: str = "fleetguard-ca",
    ) -> None:
        if (pin_file is None) == (pin_env is None):
            raise KeyBackendConfigError("give the PKCS#11 PIN as a file or an environment variable")
        self.module_path = Path(module_path)
        self.token_label = token_label
        self.key_label_prefix = key_label_prefix
        self._pin_file = Path(pin_file) if pin_file is not None else None
        self._pin_env = pin_env
        self._lock = threading.RLock()
        self._session: Any = None
        self._session_pid = 0
        self._keys: dict[str, Any] = {}

    def __repr__(self) -> str:
        if self._pin_file is not None:
            pin = f"pin_file={str(self._pin_file)!r}"
        else:
            pin = f"pin_env={self._pin_env!r}"
        return (
            f"Pkcs11KeyBackend(module_path={str(self.module_path)!r}, "
            f"token_label={self.token_label!r}, {pin})"
        )

    # -- KeyBackend ----------------------------------------------------------------------

    def generate(self, ca_dir: Path, ca_id: str, algorithm: KeyAlgorithm) -> KeyReference:
        p11 = _import_pkcs11()
        attr, key_type = p11.Attribute, p11.KeyType
        label = f"{self.key_label_prefix}-{ca_id}"
        private_template = {
            attr.TOKEN: True,
            attr.PRIVATE: True,
            attr.SENSITIVE: True,
            attr.EXTRACTABLE: False,
            attr.SIGN: True,
            attr.DECRYPT: False,
            attr.UNWRAP: False,
            attr.DERIVE: False,
        }
        public_template = {
            attr.TOKEN: True,
            attr.VERIFY: True,
            attr.ENCRYPT: False,
            attr.WRAP: False,
        }
        caps = p11.MechanismFlag.SIGN | p11.MechanismFlag.VERIFY
        with self._lock:
            session = self._open()
            if any(True for _ in session.get_objects({attr.LABEL: label})):
                raise KeyBackendConfigError(
                    f"token {self.token_label!r} already holds an object labelled {label!r}"
                )
            try:
                if algorithm in _CURVE_OIDS:
                    from pkcs11.util.ec import encode_named_curve_parameters

                    params = session.create_domain_parameters(
                        key_type.EC,
                        {attr.EC_PARAMS: encode_named_curve_parameters(_CURVE_OIDS[algorithm])},
                        local=True,
                    )
                    _, private = params.generate_keypair(
                        store=True,
                        label=label,
                        id=bytes.fromhex(ca_id),
                        capabilities=caps,
                        public_template=public_template,
                        private_template=private_template,
                    )
                elif algorithm is KeyAlgorithm.RSA_3072:
                    _, private = session.generate_keypair(
                        key_type.RSA,
                        3072,
                        store=True,
                        label=label,
                        id=bytes.fromhex(ca_id),
                        capabilities=caps,
                        public_template={**public_template, attr.PUBLIC_EXPONENT: b"\x01\x00\x01"},
                        private_template=private_template,
                    )
                else:
                    raise KeyBackendConfigError(f"unknown key algorithm {algorithm!r}")
            except p11.exceptions.PKCS11Error as exc:
                raise self._error("generate a key in", exc) from exc
            if private[attr.EXTRACTABLE] or not private[attr.SENSITIVE]:
                self._destroy_label(session, label)
                raise KeyBackendError(
                    f"token {self.token_label!r} made an extractable key; refusing to use it"
                )
        return KeyReference(backend=self.kind, locator=label)

    def public_key(self, ca_dir: Path, ref: KeyReference) -> CaPublicKey:
        p11 = _import_pkcs11()
        label = self._label(ref)
        with self._lock:
            pub = self._key_labelled(self._open(), label, private=False)
            if pub.key_type == p11.KeyType.EC:
                from pkcs11.util.ec import encode_ec_public_key

                loaded = serialization.load_der_public_key(encode_ec_public_key(pub))
            else:
                attr = p11.Attribute
                loaded = rsa.RSAPublicNumbers(
                    e=int.from_bytes(pub[attr.PUBLIC_EXPONENT], "big"),
                    n=int.from_bytes(pub[attr.MODULUS], "big"),
                ).public_key()
        if not isinstance(loaded, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise KeyBackendError(f"key {label!r} has an unsupported type")
        return loaded

    def signer(self, ca_dir: Path, ref: KeyReference) -> CaSigningKey:
        public = self.public_key(ca_dir, ref)
        label = self._label(ref)
        with self._lock:
            self._private(self._open(), label)  # fail now, not at the first signature
        if isinstance(public, ec.EllipticCurvePublicKey):
            return _TokenEcKey(self, label, public)
        return _TokenRsaKey(self, label, public)

    def close(self) -> None:
        with self._lock:
            session, self._session = self._session, None
            self._keys.clear()
            if session is not None and self._session_pid == os.getpid():
                with contextlib.suppress(Exception):  # a dead session needs no closing
                    session.close()

    def discard(self, ca_dir: Path, ref: KeyReference) -> None:
        with self._lock:
            self._destroy_label(self._open(), self._label(ref))

    # -- internals -----------------------------------------------------------------------

    def _label(self, ref: KeyReference) -> str:
        if ref.backend != self.kind:
            raise KeyBackendConfigError(
                f"this CA key lives in a {ref.backend!r} backend, not in a PKCS#11 token"
            )
        return ref.locator

    def _read_pin(self) -> str:
        if self._pin_file is not None:
            try:
                text = self._pin_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise KeyBackendConfigError(
                    f"PKCS#11 PIN file {self._pin_file} is not readable: {exc.strerror}"
                ) from exc
            pin = text.splitlines()[0] if text else ""
            source = f"PIN file {self._pin_file}"
        else:
            assert self._pin_env is not None
            pin = os.environ.get(self._pin_env, "")
            source = f"environment variable {self._pin_env}"
        if not pin:
            raise KeyBackendConfigError(f"the PKCS#11 PIN is empty or missing ({source})")
        return pin

    def _open(self) -> Any:
        """The logged-in session (call with the lock held)."""
        if self._session is not None and self._session_pid == os.getpid():
            return self._session
        p11 = _import_pkcs11()
        lib = _load_library(self.module_path)
        try:
            token = lib.get_token(token_label=self.token_label)
        except p11.exceptions.NoSuchToken as exc:
            raise KeyBackendConfigError(
                f"no PKCS#11 token labelled {self.token_label!r} in {self.module_path}"
            ) from exc
        except p11.exceptions.MultipleTokensReturned as exc:
            raise KeyBackendConfigError(
                f"more than one PKCS#11 token is labelled {self.token_label!r}"
            ) from exc
        try:
            session = token.open(rw=True, user_pin=self._read_pin())
        except p11.exceptions.UserAlreadyLoggedIn:
            session = token.open(rw=True)  # another session of this process logged in
        except (p11.exceptions.PinIncorrect, p11.exceptions.PinLenRange) as exc:
            raise KeyBackendConfigError(
                f"PKCS#11 login to token {self.token_label!r} failed: the PIN is wrong"
            ) from exc
        except p11.exceptions.PinLocked as exc:
            raise KeyBackendConfigError(
                f"the user PIN of token {self.token_label!r} is locked"
            ) from exc
        except p11.exceptions.PKCS11Error as exc:
            raise self._error("open a session on", exc) from exc
        self._session, self._session_pid = session, os.getpid()
        self._keys.clear()
        return session

    def _private(self, session: Any, label: str) -> Any:
        key = self._keys.get(label)
        if key is None:
            key = self._keys[label] = self._key_labelled(session, label, private=True)
        return key

    def _key_labelled(self, session: Any, label: str, *, private: bool) -> Any:
        """The one private (or public) key labelled ``label``; none or several is a
        configuration error naming the token."""
        p11 = _import_pkcs11()
        what = "private" if private else "public"
        object_class = p11.ObjectClass.PRIVATE_KEY if private else p11.ObjectClass.PUBLIC_KEY
        try:
            return session.get_key(object_class=object_class, label=label)
        except p11.exceptions.NoSuchKey as exc:
            raise KeyBackendConfigError(
                f"token {self.token_label!r} has no {what} key labelled {label!r}"
            ) from exc
        except p11.exceptions.MultipleObjectsReturned as exc:
            raise KeyBackendConfigError(
                f"token {self.token_label!r} has several {what} keys labelled {label!r}"
            ) from exc

    def _sign(self, label: str, mechanism: str, data: bytes) -> bytes:
        p11 = _import_pkcs11()
        mech = getattr(p11.Mechanism, mechanism)
        retry_on = (
            p11.exceptions.SessionHandleInvalid,
            p11.exceptions.SessionClosed,
            p11.exceptions.UserNotLoggedIn,
            p11.exceptions.KeyHandleInvalid,
            p11.exceptions.ObjectHandleInvalid,
        )
        with self._lock:
            for attempt in (1, 2):
                try:
                    signature: bytes = self._private(self._open(), label).sign(data, mechanism=mech)
                    return signature
                except retry_on as exc:
                    self._session = None  # reopen and log in again, once
                    if attempt == 2:
                        raise self._error("sign with", exc) from exc
                except p11.exceptions.PKCS11Error as exc:
                    raise self._error("sign with", exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _destroy_label(self, session: Any, label: str) -> None:
        p11 = _import_pkcs11()
        for obj in list(session.get_objects({p11.Attribute.LABEL: label})):
            obj.destroy()
        self._keys.pop(label, None)

    def _error(self, what: str, exc: Exception) -> FleetError:
        return KeyBackendError(
            f"PKCS#11 token {self.token_label!r}: could not {what} the token ({type(exc).__name__})"
        )
