from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str
    key_id: str | None = None  # None: written before the chain was keyed


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    entry_hash: str


@dataclass(frozen=True, slots=True)
class ChainVerification:
    """The outcome of walking the chain; ``first_bad_seq`` names where it broke.

    ``unkeyed_through`` is the last of the entries written before the chain was keyed
    (0 if there are none): they carry plain SHA-256 hashes, and a verified chain covers
    them only as they were when the keyed checkpoint at ``unkeyed_through + 1`` was made.
    ``key_ids`` are the audit keys the entries were keyed with, oldest first.
    """

    ok: bool
    entries_checked: int
    head: ChainHead
    first_bad_seq: int | None = None
    problems: list[str] = field(default_factory=list)
    unkeyed_through: int = 0
    key_ids: list[str] = field(default_factory=list)
    anchored: ChainHead | None = None  # the anchored head this chain was checked against
