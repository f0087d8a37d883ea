"""The tamper-evident audit log: every state change, in a chain keyed from the master key.

Entries are chained by HMAC-SHA256 under an audit key derived from the master key
(``service``, ``keyring``), so a database writer without the master key cannot rewrite
them; heads are exported signed with an Ed25519 key derived the same way, for anchors off
the box that auditors can check with the public key alone (``anchor``).
"""

from fleetguard.auditlog.anchor import (
    HEAD_EXPORT_EVERY_S,
    SignedHead,
    export_signed_head,
    exported_head_path,
    parse_signed_head,
    parse_syslog_address,
    run_head_exporter,
    sign_head,
    syslog_address_from_env,
    verify_signed_head,
)
from fleetguard.auditlog.errors import AuditKeyMissingError, SignedHeadInvalidError
from fleetguard.auditlog.keyring import (
    AuditKey,
    AuditKeyring,
    audit_key_for,
    load_audit_keyring,
    retire_audit_key,
    session_keyring,
)
from fleetguard.auditlog.models import AuditEntry, ChainHead, ChainVerification
from fleetguard.auditlog.service import (
    CHECKPOINT_ACTION,
    GENESIS_HASH,
    ROTATION_ACTION,
    append_audit_entry,
    attach_audit_keys,
    audit_keys_attached,
    chain_head,
    checkpoint_unkeyed_prefix,
    list_audit_entries,
    verify_chain,
)

__all__ = [
    "CHECKPOINT_ACTION",
    "GENESIS_HASH",
    "HEAD_EXPORT_EVERY_S",
    "ROTATION_ACTION",
    "AuditEntry",
    "AuditKey",
    "AuditKeyMissingError",
    "AuditKeyring",
    "ChainHead",
    "ChainVerification",
    "SignedHead",
    "SignedHeadInvalidError",
    "append_audit_entry",
    "attach_audit_keys",
    "audit_key_for",
    "audit_keys_attached",
    "chain_head",
    "checkpoint_unkeyed_prefix",
    "export_signed_head",
    "exported_head_path",
    "list_audit_entries",
    "load_audit_keyring",
    "parse_signed_head",
    "parse_syslog_address",
    "retire_audit_key",
    "run_head_exporter",
    "session_keyring",
    "sign_head",
    "syslog_address_from_env",
    "verify_chain",
    "verify_signed_head",
]
