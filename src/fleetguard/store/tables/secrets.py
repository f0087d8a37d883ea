from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from fleetguard.store.base import Base, UTCDateTime


class SecretRow(Base):
    """A secret sealed under the master key (see fleetguard.keys.envelope)."""

    __tablename__ = "secrets"

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(64))
    # The associated data the secret was sealed with, e.g. "totp:17": it binds the blob
    # to its owner, and lets a master key rotation rewrap without knowing every owner.
    context: Mapped[str] = mapped_column(String(128))
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
