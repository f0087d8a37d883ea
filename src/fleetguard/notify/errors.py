"""Errors of the notify domain.

    FleetError
    ├── ValidationFailedError
    │   ├── (code invalid_destination)          a destination's settings are not usable
    │   ├── (code destination_address_refused)  a URL or host names an address we never send to
    │   └── (code invalid_notification_event)   a publisher's event is malformed
    ├── NotFoundError
    │   └── DestinationNotFoundError
    └── ConflictError
        ├── DestinationExistsError
        └── NotAWebhookError                   a secret rotated on a syslog destination
"""

from __future__ import annotations

from fleetguard.core.errors import ConflictError, NotFoundError, ValidationFailedError


class DestinationNotFoundError(NotFoundError):
    code = "notification_destination_not_found"


class DestinationExistsError(ConflictError):
    code = "notification_destination_exists"


class NotAWebhookError(ConflictError):
    code = "not_a_webhook"


def invalid_destination(message: str, field: str) -> ValidationFailedError:
    return ValidationFailedError(message, field=field, code="invalid_destination")


class AddressRefusedError(ValidationFailedError):
    """A destination names (or resolves to) an address fleetguard never sends to."""

    code = "destination_address_refused"


__all__ = [
    "AddressRefusedError",
    "DestinationExistsError",
    "DestinationNotFoundError",
    "NotAWebhookError",
    "invalid_destination",
]
