"""Fixtures of the attack tests: the operator API over a fresh installation (from
tests/api), and a running broker fleet of each test module's own."""

from collections.abc import Iterator

import pytest

from tests.api.conftest import (
    add_operator,
    app,
    client,
    device_app,
    fleet_ca,
    login_as,
    scan_jobs,
    sqlite_device_app,
)
from tests.broker.conftest import (
    Client,
    Fleet,
    platform_reader,
    reachable_directory,
    running_fleet,
)

__all__ = [
    "add_operator", "app", "client", "device_app", "fleet_ca", "login_as", "scan_jobs",
    "sqlite_device_app",
]


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Mosquitto started by `fleetguard broker`'s machinery, with a fleet of devices."""
    with reachable_directory("fg-security-") as tmp, running_fleet(tmp) as fleet:
        yield fleet


@pytest.fixture
def platform(fleet: Fleet) -> Iterator[Client]:
    """The platform's own identity, reading every device topic."""
    with platform_reader(fleet) as client:
        yield client
