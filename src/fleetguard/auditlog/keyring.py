"""The audit log's keys: derived from the master key, kept across master key rotations.

Each master key K gives an *audit root* ``HKDF(K, "fleetguard/audit/v1")``, and the root
gives two keys, each for one use:

- the chain key ``HKDF(root, "fleetguard/audit/chain-hmac/v1")``: every entry's hash is an
  HMAC-SHA256 under it, so whoever can write the database but does not hold the master
  key cannot make an entry, or a recomputed chain, that verifies;
- the head signing key, an Ed25519 key whose seed is
  ``HKDF(root, "fleetguard/audit/head-ed25519/v1")``: it signs the heads exported off the
  box (``fleetguard.auditlog.anchor``), which anyone with the public key can check and
  nobody without the master key can forge.

Keys are named by the id of the master key they come from (``MasterKey.key_id``, 16 hex
digits); every keyed entry records that id. The raw master key is never a MAC or signing
key, and the current root is never stored: it is derived when the installation is opened.

Rotation (``fleetguard keys rotate-master``) retires the current root: it is sealed under
the new master key as a secret like any other (purpose ``audit-key``, associated data
``audit-key:<id>``, so a blob moved onto another id does not open), in the same
transaction that rewraps every other secret; later rotations rewrap it with the rest.
The keyring of an opened installation is therefore the current key plus every retired
one, oldest first, and old entries stay verifiable for ever. A database writer cannot
add a key: a sealed secret opens only under the master key.

The keyring reaches ``append_audit_entry`` through the session: the installation's
``Database`` shares it with every session it opens (``attach_audit_keys``), so callers
pass nothing, the key is derived once per process rather than per entry, and a session
without it refuses to write an entry instead of writing an unkeyed one.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from fleetguard.auditlog.errors import AuditKeyMissingError
from fleetguard.keys import MasterKey, derive_key, hkdf_expand
from fleetguard.keys.stored import open_stored_secrets, store_sealed_secret

KEYRING_INFO = "fleetguard.audit_keyring"
_ROOT_LABEL = "fleetguard/audit/v1"
_CHAIN_LABEL = "fleetguard/audit/chain-hmac/v1"
_HEAD_LABEL = "fleetguard/audit/head-ed25519/v1"
SECRET_PURPOSE = "audit-key"  # noqa: S105 - a label, not a secret
_CONTEXT_PREFIX = "audit-key:"


class AuditKey:
    """One master key's audit keys; ``repr`` never shows material."""

    __slots__ = ("_keyed", "key_id", "public_key", "signing_key")

    def __init__(self, key_id: str, root: bytes) -> None:
        self.key_id = key_id
        # Keyed once: each MAC copies the keyed state (about half the cost of hmac.digest,
        # which pads the key again every call). Copying only reads this object.
        self._keyed = hmac.new(hkdf_expand(root, _CHAIN_LABEL), digestmod=hashlib.sha256)
        self.signing_key = Ed25519PrivateKey.from_private_bytes(hkdf_expand(root, _HEAD_LABEL))
        self.public_key = self.signing_key.public_key().public_bytes_raw()

    def mac(self, material: bytes) -> str:
        """HMAC-SHA256 of ``material`` as 64 hex digits."""
        mac = self._keyed.copy()
        mac.update(material)
        return mac.hexdigest()

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message)

    def __repr__(self) -> str:
        return f"AuditKey(id={self.key_id})"


@dataclass(frozen=True, slots=True)
class AuditKeyring:
    """The current audit key and the retired ones, oldest first."""

    current: AuditKey
    retired: tuple[AuditKey, ...] = ()

    def get(self, key_id: str) -> AuditKey | None:
        if key_id == self.current.key_id:
            return self.current
        for key in self.retired:
            if key.key_id == key_id:
                return key
        return None

    @property
    def keys(self) -> tuple[AuditKey, ...]:
        """Every key, oldest first, the current one last."""
        return (*self.retired, self.current)


def audit_root(master: MasterKey) -> bytes:
    return derive_key(master, _ROOT_LABEL)


def audit_key_for(master: MasterKey) -> AuditKey:
    return AuditKey(master.key_id.hex(), audit_root(master))


def load_audit_keyring(session: Session, master: MasterKey) -> AuditKeyring:
    """The current key from ``master``; the retired ones opened from their sealed secrets."""
    retired = tuple(
        AuditKey(context.removeprefix(_CONTEXT_PREFIX), root)
        for context, root in open_stored_secrets(session, master, purpose=SECRET_PURPOSE)
    )
    return AuditKeyring(audit_key_for(master), retired)


def retire_audit_key(session: Session, old: MasterKey, new: MasterKey) -> None:
    """At a master key rotation: keep ``old``'s audit root, sealed under ``new``.

    Call it in the rotation's transaction after the stored secrets were rewrapped to
    ``new`` (this one is sealed under ``new`` already).
    """
    store_sealed_secret(session, new, purpose=SECRET_PURPOSE,
                        context=_CONTEXT_PREFIX + old.key_id.hex(), secret=audit_root(old))


def session_keyring(session: Session) -> AuditKeyring:
    keyring = session.info.get(KEYRING_INFO)
    if keyring is None:
        raise AuditKeyMissingError(
            "the audit log's key is not available: this database was opened without the "
            "installation's master key (open it with open_installation_database, or call "
            "fleetguard.auditlog.attach_audit_keys), and an unkeyed entry is never written"
        )
    if not isinstance(keyring, AuditKeyring):
        raise TypeError(f"session.info[{KEYRING_INFO!r}] is not an AuditKeyring")
    return keyring
