"""Errors of the registry.

    FleetError
    ├── NotFoundError
    │   ├── DeviceNotFoundError
    │   └── GroupNotFoundError
    ├── ConflictError
    │   ├── DeviceExistsError          a serial or id already registered
    │   └── InvalidTransitionError     e.g. reactivating a decommissioned device
    └── ValidationFailedError
        └── InvalidLabelQueryError
"""

from fleetguard.core.errors import ConflictError, NotFoundError, ValidationFailedError


class DeviceNotFoundError(NotFoundError):
    code = "device_not_found"


class GroupNotFoundError(NotFoundError):
    code = "group_not_found"


class DeviceExistsError(ConflictError):
    code = "device_exists"


class InvalidTransitionError(ConflictError):
    code = "invalid_state_transition"


class InvalidLabelQueryError(ValidationFailedError):
    code = "invalid_label_query"
