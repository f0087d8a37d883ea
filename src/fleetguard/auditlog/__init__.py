"""The tamper-evident audit log: every state change, chained by SHA-256."""

from fleetguard.auditlog.models import AuditEntry, ChainHead, ChainVerification
from fleetguard.auditlog.service import (
    GENESIS_HASH,
    append_audit_entry,
    chain_head,
    list_audit_entries,
    verify_chain,
)

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "ChainHead",
    "ChainVerification",
    "append_audit_entry",
    "chain_head",
    "list_audit_entries",
    "verify_chain",
]
