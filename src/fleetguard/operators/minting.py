"""What a credential may mint: at most its own scope, and no longer than it lives.

Every service that hands out a credential (an API token, an operator account, an enabled
account, a second-factor reset, a device enrollment token, a claim certificate) calls
``ensure_may_mint`` with the principal of the request, so that a narrow or short-lived
credential can neither widen itself nor leave behind one that outlives it.
"""

from __future__ import annotations

from datetime import datetime

from fleetguard.operators.errors import CredentialTooWideError
from fleetguard.operators.models import ROLE_RANK, Principal, Role


def ensure_may_mint(
    issuer: Principal | None, *, what: str, role: Role | None = None,
    expires_at: datetime | None = None,
) -> None:
    """A credential mints only credentials of at most its own scope and lifetime.

    ``issuer`` is the principal of the request (its role is already the lesser of the
    operator's role and the token's scope); None is local administration (the CLI, run by
    whoever owns the installation). ``role`` is the rights the new credential carries,
    ``expires_at`` when it stops working (None: never, as an operator account). Every
    route that hands out a token, an account, an enrollment token, a claim certificate or
    a second-factor reset goes through here.
    """
    if issuer is None:
        return
    if role is not None and ROLE_RANK[role] > ROLE_RANK[issuer.role]:
        raise CredentialTooWideError(
            f"a credential with role {issuer.role.value} cannot create {what} with role "
            f"{role.value}"
        )
    limit = issuer.credential_expires_at
    if limit is not None and (expires_at is None or expires_at > limit):
        lasting = "that never expires" if expires_at is None else "that outlives it"
        raise CredentialTooWideError(
            f"an API token (expires {limit.isoformat(timespec='seconds')}) cannot create "
            f"{what} {lasting}; use a shorter lifetime, or log in",
        )
