"""`fleetguard init` and `fleetguard keys rotate-master` as plain functions."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fleetguard.auditlog import (
    ROTATION_ACTION,
    append_audit_entry,
    attach_audit_keys,
    export_signed_head,
    exported_head_path,
    retire_audit_key,
)
from fleetguard.core.config import Settings
from fleetguard.core.errors import ConflictError
from fleetguard.core.files import write_new_private
from fleetguard.identity.ca import Pkcs11Options, ca_dir, init_installation_ca
from fleetguard.keys import (
    MasterKey,
    create_master_key_file,
    load_master_key,
    write_master_key_file,
)
from fleetguard.keys.stored import rewrap_stored_secrets
from fleetguard.operators import Role
from fleetguard.operators import service as operators
from fleetguard.operators.errors import WeakPasswordError
from fleetguard.operators.passwords import check_password_policy
from fleetguard.pki import FleetCA, KeyAlgorithm, rewrap_sealed_ca_keys
from fleetguard.store import Database, open_database, upgrade_database

SERVER_CERT_VALIDITY = timedelta(days=397)


class AlreadyInitializedError(ConflictError):
    code = "already_initialized"


@dataclass(frozen=True, slots=True)
class InitResult:
    data_dir: Path
    admin_username: str
    admin_password: str | None  # only when generated: shown once, then forgotten
    master_key_source: str
    server_certificate: Path
    root_fingerprint: str


def generate_admin_password() -> str:
    # 144 random bits, URL-safe; long enough to pass the policy on its own merits.
    while True:
        candidate = secrets.token_urlsafe(18)
        try:
            check_password_policy(candidate, "admin")
        except WeakPasswordError:  # e.g. a draw that happens to contain "admin"
            continue
        return candidate


def _existing_artifacts(settings: Settings) -> list[Path]:
    candidates = [
        settings.master_key_file, settings.server_cert_file, settings.server_key_file,
        ca_dir(settings) / "manifest.json",
    ]
    if settings.uses_sqlite:
        candidates.append(settings.data_dir / "fleetguard.db")
    return [p for p in candidates if p.exists()]


def open_installation_database(
    settings: Settings, *, migrate: bool = True, master_key: MasterKey | None = None
) -> Database:
    """The installation's database, migrated, with its audit keys attached.

    The audit keys come from the master key (``master_key``, else loaded from the
    settings): every session of the database can append keyed audit entries, and the
    first keyed start over a log written before 0007 checkpoints its unkeyed entries.
    Without the master key this fails (``MasterKeyMissingError``) rather than opening a
    database whose audit entries could not be keyed.
    """
    master = master_key or load_master_key(settings)
    db = open_database(settings.database_url)
    try:
        if migrate:
            upgrade_database(db)
        attach_audit_keys(db, master, exported_head=exported_head_path(settings.data_dir))
    except BaseException:
        db.dispose()
        raise
    return db


def init_installation(
    settings: Settings,
    *,
    admin_username: str = "admin",
    admin_password: str | None = None,
    hostnames: list[str] | None = None,
    addresses: list[str] | None = None,
    ca_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
    pkcs11: Pkcs11Options | None = None,
) -> InitResult:
    """Create everything once. Checks first, so a second run refuses and changes nothing."""
    found = _existing_artifacts(settings)
    if found:
        raise AlreadyInitializedError(
            f"already initialized: {', '.join(str(p) for p in found)} exist(s); nothing changed"
        )
    if admin_password is not None:
        check_password_policy(admin_password, admin_username)
    if not settings.uses_sqlite:
        probe = open_database(settings.database_url)
        try:
            if operators.database_has_operators(probe):
                raise AlreadyInitializedError(
                    "already initialized: the database already has operators; nothing changed"
                )
        finally:
            probe.dispose()

    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(settings.data_dir, 0o700)
    settings.tls_dir.mkdir(mode=0o700, exist_ok=True)
    if settings.master_key_b64:
        master = load_master_key(settings)
        source = "FLEETGUARD_MASTER_KEY"
    else:
        master = create_master_key_file(settings.master_key_file)
        source = str(settings.master_key_file)

    with init_installation_ca(settings, master, algorithm=ca_algorithm, pkcs11=pkcs11) as ca:
        root_fingerprint = ca.root_fingerprint
        issue_server_identity(
            settings, ca, hostnames=hostnames or ["localhost"],
            addresses=addresses or ["127.0.0.1", "::1"],
        )
    db = open_installation_database(settings, master_key=master)
    generated = admin_password is None
    password = admin_password or generate_admin_password()
    try:
        with db.session() as session:
            append_audit_entry(
                session, actor="system", action="installation.init",
                target=f"installation:{settings.data_dir}",
                details={"master_key_id": master.key_id.hex(), "database": db.dialect},
            )
            operators.create_operator(
                session, username=admin_username, password=password, role=Role.ADMIN,
                actor="system", issuer=None,
            )
        # The first signed head, in the data dir from the start: the chain is keyed, and
        # an unkeyed chain found here later was stripped, not new (attach_audit_keys).
        export_signed_head(db, exported_head_path(settings.data_dir))
    finally:
        db.dispose()
    return InitResult(
        data_dir=settings.data_dir, admin_username=admin_username,
        admin_password=password if generated else None, master_key_source=source,
        server_certificate=settings.server_cert_file, root_fingerprint=root_fingerprint,
    )


def issue_server_identity(
    settings: Settings, ca: FleetCA, *, hostnames: list[str], addresses: list[str]
) -> None:
    """The server's TLS key (0600, made here, never leaves the data dir) and a certificate
    from the fleet CA, so devices that pin the fleet root trust the platform."""
    key = ec.generate_private_key(ec.SECP256R1())
    issued = ca.issue_server_certificate(
        key.public_key(), dns_names=hostnames, ip_addresses=addresses,
        validity=SERVER_CERT_VALIDITY,
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_new_private(settings.server_key_file, pem)
    settings.server_cert_file.write_bytes(issued.chain_pem)


def rotate_master_key(
    settings: Settings, db: Database, new_key: MasterKey | None = None
) -> tuple[MasterKey, int]:
    """Rewrap every stored secret under a new key, then replace the key file.

    The database changes commit before the file is replaced; the new key is first
    written beside the old one so that a crash in between loses neither. The old audit
    key is kept sealed under the new master key (old entries stay verifiable), the
    rotation's entry, still under the old audit key, names both keys, and ``db`` goes on
    with the new audit key. Other processes holding the old master key must restart.
    """
    old = load_master_key(settings)
    new = new_key or MasterKey(os.urandom(32))
    pending = settings.master_key_file.with_name("master.key.new")
    if not settings.master_key_b64:
        write_master_key_file(pending, new)
    with db.session() as session:
        count = rewrap_stored_secrets(session, old, new)
        count += rewrap_sealed_ca_keys(ca_dir(settings), old, new)
        retire_audit_key(session, old, new)
        append_audit_entry(
            session, actor="system", action=ROTATION_ACTION, target="master-key",
            details={"old_key_id": old.key_id.hex(), "new_key_id": new.key_id.hex(),
                     "secrets": count},
        )
    if not settings.master_key_b64:
        os.replace(pending, settings.master_key_file)
    attach_audit_keys(db, new, exported_head=exported_head_path(settings.data_dir))
    return new, count
