"""Certificates about to expire, counted exactly across the fleet."""

from __future__ import annotations

from datetime import timedelta

from fleetguard.core.clock import utcnow
from fleetguard.identity import service as identity
from fleetguard.registry import service as registry
from fleetguard.store import Database
from fleetguard.store.tables import DeviceCertificateRow


def test_expiring_certificates_are_counted_exactly_and_soonest_first(db: Database) -> None:
    now = utcnow()
    with db.session() as s:
        ids = [registry.register_device(s, name=f"cam-{i}", actor="t").id for i in range(4)]
        for i in range(30):
            s.add(DeviceCertificateRow(
                serial_hex=f"{i:02x}", device_id=ids[i % len(ids)], issuer_key_id="k",
                spki_sha256=f"{i:064x}", fingerprint_sha256=f"{i:064x}",
                not_before=now - timedelta(days=80), not_after=now + timedelta(days=i),
                certificate_pem="-", enrolled_via="token", created_at=now,
                revoked_at=now if i == 3 else None,
            ))
    with db.read_session() as s:
        soon = identity.expiring_certificates(s, within=timedelta(days=7, hours=1), now=now,
                                              soonest=3)
    # days 0..7 expire within the window, minus the revoked one
    assert soon.count == 7
    assert [c.serial_hex for c in soon.soonest] == ["00", "01", "02"]
