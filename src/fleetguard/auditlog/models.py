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


@dataclass(frozen=True, slots=True)
class ChainHead:
    seq: int
    entry_hash: str


@dataclass(frozen=True, slots=True)
class ChainVerification:
    """The outcome of walking the chain; ``first_bad_seq`` names where it broke."""

    ok: bool
    entries_checked: int
    head: ChainHead
    first_bad_seq: int | None = None
    problems: list[str] = field(default_factory=list)
