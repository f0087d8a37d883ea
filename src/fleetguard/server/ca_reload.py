"""Picking up a CA rotation made by another process (``fleetguard ca rotate``).

The running server holds the fleet CA open. When the CA directory's manifest is replaced,
the server re-reads it: new certificates come from the new issuing CA, and the new CA
joins the trust store of every live TLS context that verifies devices (old CAs stay, so
devices holding their certificates still connect). A background job of the running
process does this, a stat every few seconds, rather than every request.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path

from fleetguard.pki import FleetCA
from fleetguard.server.background import run_periodically

CA_RELOAD_EVERY_S = 2
_MANIFEST = "manifest.json"
log = logging.getLogger("fleetguard.server")


def _stamp(path: Path) -> tuple[int, int]:
    # The manifest is replaced whole (a new inode), so the pair changes on every rotation.
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


class CaReloader:
    """Re-reads ``ca`` when its manifest changed since the last look, and adds its bundle
    to ``trust_stores`` (the TLS contexts that verify device certificates)."""

    def __init__(self, ca: FleetCA, trust_stores: Sequence[ssl.SSLContext] = ()) -> None:
        self._ca = ca
        self._trust_stores = list(trust_stores)
        self._manifest = Path(ca.directory) / _MANIFEST
        self._seen = _stamp(self._manifest)

    def reload_if_rotated(self) -> bool:
        """True when the CA was re-read."""
        stamp = _stamp(self._manifest)
        if stamp == self._seen:
            return False
        self._ca.reload()
        bundle = self._ca.bundle_pem().decode()
        for context in self._trust_stores:
            context.load_verify_locations(cadata=bundle)
        self._seen = stamp
        log.info("reloaded the fleet CA: %s issues now", self._ca.active_issuing_ca.ca_id)
        return True


async def keep_ca_current(reloader: CaReloader, stopping: Callable[[], bool]) -> None:
    """The background job: :meth:`CaReloader.reload_if_rotated` every few seconds until
    ``stopping()``; a failed look is logged and retried."""
    await run_periodically(reloader.reload_if_rotated, every_s=CA_RELOAD_EVERY_S,
                           stopping=stopping, failed="could not reload the fleet CA")
