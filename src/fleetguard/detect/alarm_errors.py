"""Errors of stored detection: alarms, rule set versions, feedback.

    FleetError
    ├── NotFoundError
    │   ├── AlarmNotFoundError
    │   ├── RuleSetVersionNotFoundError
    │   └── FeedbackNotFoundError
    └── ConflictError
        ├── AlarmStateConflictError       e.g. acknowledging a resolved alarm
        └── RuleSetVersionConflictError   activating over a version another operator made
"""

from __future__ import annotations

from fleetguard.core.errors import ConflictError, NotFoundError


class AlarmNotFoundError(NotFoundError):
    code = "alarm_not_found"


class RuleSetVersionNotFoundError(NotFoundError):
    code = "ruleset_version_not_found"


class FeedbackNotFoundError(NotFoundError):
    code = "feedback_not_found"


class AlarmStateConflictError(ConflictError):
    code = "alarm_state_conflict"


class RuleSetVersionConflictError(ConflictError):
    code = "ruleset_version_conflict"


__all__ = [
    "AlarmNotFoundError",
    "AlarmStateConflictError",
    "FeedbackNotFoundError",
    "RuleSetVersionConflictError",
    "RuleSetVersionNotFoundError",
]
