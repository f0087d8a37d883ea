"""Signed heads of the audit chain, exported off the box.

The keyed chain stops anyone without the master key from rewriting entries, but nothing
inside the database stops its newest entries from being deleted, and an auditor cannot
check an HMAC without holding the key (and then could forge one). So the head (seq, entry
hash, time) is exported periodically, signed with the installation's head signing key:
an Ed25519 key derived from the master key (see ``keyring``), whose public key an auditor
pins once and can then check every head with, off the box, without being able to sign
one. A head exported before a deletion or rewrite no longer matches the chain
(``fleetguard audit-log verify --expect-head FILE``).

A record, one JSON object::

    {"format": "fleetguard-audit-head/1", "seq": 42, "entry_hash": "<64 hex>",
     "exported_at": "2026-11-27T10:00:00.000000Z", "key_id": "<16 hex>",
     "public_key": "<base64 of the raw 32-byte Ed25519 key>",
     "signature": "<base64>", "endorsements": [...]}

``signature`` is Ed25519 over the UTF-8 JSON of the other fields above it (keys sorted,
separators ``,`` and ``:``, no spaces; ``endorsements`` excluded). After master key
rotations, ``endorsements`` carries, oldest first, ``{"public_key": K_i, "signature": S_i}``
where S_i is K_i's signature over ``b"fleetguard-audit-head-key/1|" + K_(i+1)`` (the last
one endorses ``public_key``): an auditor who pinned an older key follows the chain to the
new one. Each is self-checking, so the syslog copy leaves them out to stay small.

Where the record goes: ``audit-head.json`` in the data dir (atomic replace, 0644: it holds
nothing secret), and syslog as RFC 5424 (facility auth, APP-NAME ``fleetguard``, MSGID
``audit-head``, the record as MSG) through ``logging.handlers.SysLogHandler``, to
``/dev/log`` or a configured UDP address, where it leaves the box for a log host.
The data dir copy is also what ``fleetguard audit-log verify`` checks by default and
what stops a stripped chain from being re-keyed (``attach_audit_keys``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import logging.handlers
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from fleetguard.auditlog.errors import SignedHeadInvalidError
from fleetguard.auditlog.keyring import AuditKeyring, session_keyring
from fleetguard.auditlog.models import ChainHead
from fleetguard.auditlog.service import chain_head
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import DependencyError, ValidationFailedError
from fleetguard.core.files import write_atomic
from fleetguard.store import Database

HEAD_FORMAT = "fleetguard-audit-head/1"
HEAD_FILE_NAME = "audit-head.json"
HEAD_EXPORT_EVERY_S = 300
SYSLOG_ADDRESS_ENV = "FLEETGUARD_SYSLOG_ADDRESS"
DEFAULT_SYSLOG_SOCKET = "/dev/log"
_ENDORSEMENT_PREFIX = b"fleetguard-audit-head-key/1|"
_SIGNED_FIELDS = ("entry_hash", "exported_at", "format", "key_id", "public_key", "seq")
log = logging.getLogger("fleetguard.auditlog")

SyslogAddress = str | tuple[str, int]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise SignedHeadInvalidError(f"the head's {what} is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise SignedHeadInvalidError(f"the head's {what} is not base64") from exc


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _timestamp(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Endorsement:
    """``public_key`` (an older head key) vouches for the next one with ``signature``."""

    public_key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class SignedHead:
    seq: int
    entry_hash: str
    exported_at: str
    key_id: str
    public_key: bytes
    signature: bytes
    endorsements: tuple[Endorsement, ...] = ()

    @property
    def head(self) -> ChainHead:
        return ChainHead(self.seq, self.entry_hash)

    def body(self) -> dict[str, Any]:
        return {"format": HEAD_FORMAT, "seq": self.seq, "entry_hash": self.entry_hash,
                "exported_at": self.exported_at, "key_id": self.key_id,
                "public_key": _b64(self.public_key)}

    def record(self, *, with_endorsements: bool = True) -> dict[str, Any]:
        record = {**self.body(), "signature": _b64(self.signature)}
        if with_endorsements:
            record["endorsements"] = [
                {"public_key": _b64(e.public_key), "signature": _b64(e.signature)}
                for e in self.endorsements
            ]
        return record

    def to_json(self, *, with_endorsements: bool = True) -> str:
        return json.dumps(self.record(with_endorsements=with_endorsements),
                          separators=(",", ":"))


def exported_head_path(data_dir: Path) -> Path:
    return data_dir / HEAD_FILE_NAME


def _endorsements(keyring: AuditKeyring) -> tuple[Endorsement, ...]:
    keys = keyring.keys
    return tuple(
        Endorsement(older.public_key, older.sign(_ENDORSEMENT_PREFIX + newer.public_key))
        for older, newer in itertools.pairwise(keys)
    )


def sign_head(session: Session) -> SignedHead:
    """The chain's current head, signed with the current head key of the session's keyring."""
    keyring = session_keyring(session)
    head = chain_head(session)
    key = keyring.current
    unsigned = SignedHead(head.seq, head.entry_hash, _timestamp(utcnow()), key.key_id,
                          key.public_key, b"")
    return SignedHead(
        unsigned.seq, unsigned.entry_hash, unsigned.exported_at, unsigned.key_id,
        unsigned.public_key, key.sign(_canonical(unsigned.body())), _endorsements(keyring),
    )


def parse_signed_head(text: str | bytes) -> SignedHead:
    """Read a record and check its own signature and endorsements (not yet whom to trust)."""
    try:
        record = json.loads(text)
    except ValueError as exc:
        raise SignedHeadInvalidError("the head is not JSON") from exc
    if not isinstance(record, dict) or record.get("format") != HEAD_FORMAT:
        raise SignedHeadInvalidError(f"the head is not a {HEAD_FORMAT} record")
    seq, entry_hash, key_id = record.get("seq"), record.get("entry_hash"), record.get("key_id")
    exported_at = record.get("exported_at")
    if (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0
            or not isinstance(entry_hash, str) or len(entry_hash) != 64
            or not isinstance(key_id, str) or not isinstance(exported_at, str)):
        raise SignedHeadInvalidError("the head's seq, entry_hash, key_id or exported_at is "
                                     "missing or malformed")
    raw_endorsements = record.get("endorsements", [])
    if not isinstance(raw_endorsements, list) or not all(
        isinstance(e, dict) for e in raw_endorsements
    ):
        raise SignedHeadInvalidError("the head's endorsements are not a list of objects")
    signed = SignedHead(
        seq, entry_hash, exported_at, key_id, _unb64(record.get("public_key"), "public key"),
        _unb64(record.get("signature"), "signature"),
        tuple(Endorsement(_unb64(e.get("public_key"), "endorsing key"),
                          _unb64(e.get("signature"), "endorsement"))
              for e in raw_endorsements),
    )
    _check(signed.public_key, signed.signature, _canonical(signed.body()), "head signature")
    chain = [e.public_key for e in signed.endorsements] + [signed.public_key]
    for endorsement, newer in zip(signed.endorsements, chain[1:], strict=True):
        _check(endorsement.public_key, endorsement.signature, _ENDORSEMENT_PREFIX + newer,
               "endorsement")
    return signed


def _check(public_key: bytes, signature: bytes, message: bytes, what: str) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise SignedHeadInvalidError(f"the {what} does not verify") from exc


def verify_signed_head(text: str | bytes, trusted_public_keys: Iterable[bytes]) -> SignedHead:
    """A head whose signature holds and whose key is trusted, directly or by endorsement.

    What an auditor runs off the box, with the public key pinned earlier (for example
    from the first export): ``fleetguard audit-log check-head FILE --public-key KEY``.
    """
    signed = parse_signed_head(text)
    trusted = set(trusted_public_keys)
    if signed.public_key in trusted or any(
        e.public_key in trusted for e in signed.endorsements
    ):
        return signed
    raise SignedHeadInvalidError(
        f"the head is signed by {_b64(signed.public_key)}, which is not a trusted key nor "
        "endorsed by one"
    )


def export_signed_head(
    db: Database, path: Path, *, syslog_address: SyslogAddress | None = None
) -> SignedHead:
    """Sign the current head; write it to ``path`` (atomically), then send it to syslog.

    The file is written first, so a syslog that is down does not lose the local anchor;
    a failure to send raises ``DependencyError`` after the file is in place.
    """
    with db.read_session() as session:
        signed = sign_head(session)
    write_atomic(path, (signed.to_json() + "\n").encode(), mode=0o644)
    if syslog_address is not None:
        send_to_syslog(signed, syslog_address)
    return signed


class _Rfc5424Formatter(logging.Formatter):
    """``VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG``; the handler adds ``<PRI>``."""

    def __init__(self) -> None:
        super().__init__()
        host = socket.gethostname().split(".")[0]
        self._host = "".join(c for c in host if 33 <= ord(c) <= 126)[:255] or "-"

    def format(self, record: logging.LogRecord) -> str:
        at = _timestamp(datetime.fromtimestamp(record.created, UTC))
        return (f"1 {at} {self._host} fleetguard {record.process or '-'} audit-head - "
                f"{record.getMessage()}")


class _RaisingSysLogHandler(logging.handlers.SysLogHandler):
    def handleError(self, record: logging.LogRecord) -> None:
        raise  # called from emit's except block: the caller learns the send failed


def send_to_syslog(signed: SignedHead, address: SyslogAddress) -> None:
    """One RFC 5424 message carrying the signed head (without endorsements)."""
    handler = _RaisingSysLogHandler(address=address,
                                    facility=logging.handlers.SysLogHandler.LOG_AUTH)
    handler.append_nul = False
    handler.setFormatter(_Rfc5424Formatter())
    try:
        if getattr(handler, "socket", None) is None:
            raise DependencyError(f"syslog at {address} is not reachable")
        record = logging.LogRecord(
            "fleetguard.audit-head", logging.INFO, __file__, 0,
            signed.to_json(with_endorsements=False), None, None,
        )
        try:
            handler.emit(record)
        except OSError as exc:
            raise DependencyError(f"syslog at {address}: {exc}") from exc
    finally:
        handler.close()


def parse_syslog_address(value: str | None) -> SyslogAddress | None:
    """``/path`` (a Unix socket), ``HOST:PORT`` or ``[V6]:PORT`` (UDP), or ``none``.

    ``None`` or empty means ``/dev/log`` when it exists, else no syslog.
    """
    if value is None or value == "":
        return DEFAULT_SYSLOG_SOCKET if Path(DEFAULT_SYSLOG_SOCKET).exists() else None
    if value.lower() == "none":
        return None
    if value.startswith("/"):
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationFailedError("a syslog address is /path, HOST:PORT or [V6]:PORT",
                                    field="syslog")
    return host.strip("[]"), int(port)


def syslog_address_from_env() -> SyslogAddress | None:
    """For entry points: ``FLEETGUARD_SYSLOG_ADDRESS``, else ``/dev/log`` when present."""
    return parse_syslog_address(os.environ.get(SYSLOG_ADDRESS_ENV))


async def run_head_exporter(
    db: Database, path: Path, *, every_s: float = HEAD_EXPORT_EVERY_S,
    stop: Callable[[], bool], syslog_address: SyslogAddress | None = None,
) -> None:
    """Export at once, then every ``every_s`` seconds, and a last time once ``stop()``.

    A failed export is logged and retried next round; it never ends the loop.
    """
    loop = asyncio.get_running_loop()
    stopping = False
    while True:
        try:
            signed = await asyncio.to_thread(
                export_signed_head, db, path, syslog_address=syslog_address
            )
            log.debug("exported audit head %d:%s", signed.seq, signed.entry_hash)
        except Exception:  # retried next round; it must not stop the server
            log.exception("could not export the audit log's signed head")
        if stopping:
            return
        deadline = loop.time() + every_s
        while not (stopping := stop()) and (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(1.0, left))
