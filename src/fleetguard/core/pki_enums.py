"""The PKI's choice lists (key types, revocation reasons), with no crypto library behind them.

They live here so that a command line can offer them as choices without loading
``cryptography``; ``fleetguard.pki`` re-exports them, and callers keep importing them there.
"""

from __future__ import annotations

from enum import StrEnum


class KeyAlgorithm(StrEnum):
    """Key types a fleet CA can have. The signature hash follows the key size."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_3072 = "rsa-3072"


class RevocationReason(StrEnum):
    """RFC 5280 CRLReason values, in the names fleetguard shows people."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "key_compromise"
    CA_COMPROMISE = "ca_compromise"
    AFFILIATION_CHANGED = "affiliation_changed"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessation_of_operation"
    CERTIFICATE_HOLD = "certificate_hold"
    PRIVILEGE_WITHDRAWN = "privilege_withdrawn"


__all__ = ["KeyAlgorithm", "RevocationReason"]
