"""Errors of the device agent.

    FleetError                      (fleetguard.core.errors)
    ├── ConfigurationError          a bad AgentConfig or Backoff setting
    └── DependencyError
        └── OutboxError             the on-disk report buffer could not be read or written

A command the agent refuses is not an error: it becomes a ``CommandResult`` with status
``rejected``. Collectors never raise for a metric they cannot read: the field is left
empty (None) and the rest of the report goes out.
"""

from __future__ import annotations

from fleetguard.core.errors import DependencyError


class OutboxError(DependencyError):
    code = "agent_outbox_failed"
