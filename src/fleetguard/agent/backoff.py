"""Reconnect delays: exponential, capped, and jittered so a fleet does not reconnect in step.

After a broker restart every device sees the disconnect at once; without jitter they
would all come back in the same second, again and again ("thundering herd"). Each delay
is drawn uniformly between ``base`` and the current exponential ceiling (capped).
"""

from __future__ import annotations

import random

from fleetguard.core.errors import ConfigurationError


class Backoff:
    """``next_delay()`` after each failed attempt; ``reset()`` after a success."""

    def __init__(
        self,
        *,
        base_s: float = 1.0,
        cap_s: float = 300.0,
        factor: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < base_s <= cap_s:
            raise ConfigurationError("backoff needs 0 < base_s <= cap_s")
        if factor < 1:
            raise ConfigurationError("backoff factor must be at least 1")
        self._base = base_s
        self._cap = cap_s
        self._factor = factor
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._attempts = 0

    @property
    def attempts(self) -> int:
        return self._attempts

    def ceiling(self) -> float:
        """The largest delay the next attempt can get."""
        exponent = min(self._attempts, 64)  # past this the cap has long been reached
        return min(self._cap, self._base * self._factor**exponent)

    def next_delay(self) -> float:
        ceiling = self.ceiling()
        self._attempts += 1
        return self._rng.uniform(self._base, ceiling)

    def reset(self) -> None:
        self._attempts = 0
