"""Errors of the detect domain.

    FleetError
    └── InvalidRequestError
        └── ValidationFailedError
            └── RuleSetInvalidError     a rule set document refused before activation
"""

from __future__ import annotations

from fleetguard.core.errors import ValidationFailedError


class RuleSetInvalidError(ValidationFailedError):
    """A rule set that cannot be activated; names the rule and the field at fault."""

    code = "ruleset_invalid"

    def __init__(self, message: str, *, rule_id: str | None, field: str | None) -> None:
        super().__init__(message, field=field)
        self.rule_id = rule_id


__all__ = ["RuleSetInvalidError"]
