"""Errors of the broker package, all rooted in :mod:`fleetguard.core.errors`.

    FleetError
    ├── ConfigurationError
    │   └── BrokerConfigError            the broker cannot be configured as asked
    │       └── MosquittoNotFoundError   no mosquitto executable or dynamic security plugin
    └── DependencyError
        └── BrokerError                  the broker failed us at run time
            ├── BrokerStartError         mosquitto exited, or never opened its TLS port
            ├── BrokerUnavailableError   the service identity cannot connect or lost the link
            ├── DynsecTimeoutError       no answer to a ``$CONTROL`` request in time
            └── DynsecCommandError       the dynamic security plugin refused a command
"""

from __future__ import annotations

from fleetguard.core.errors import ConfigurationError, DependencyError


class BrokerConfigError(ConfigurationError):
    code = "broker_config_invalid"


class MosquittoNotFoundError(BrokerConfigError):
    code = "mosquitto_not_installed"


class BrokerError(DependencyError):
    code = "broker_failed"


class BrokerStartError(BrokerError):
    code = "broker_start_failed"


class BrokerUnavailableError(BrokerError):
    code = "broker_unavailable"


class DynsecTimeoutError(BrokerError):
    code = "broker_control_timeout"


class DynsecCommandError(BrokerError):
    """One command of a ``$CONTROL/dynamic-security/v1`` request came back with an error."""

    code = "broker_control_refused"

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"broker refused {command}: {error}")
        self.command = command
        self.error = error
