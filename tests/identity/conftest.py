"""The fleet CA every identity test enrolls against."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleetguard.core.config import Settings
from fleetguard.identity.ca import init_installation_ca
from fleetguard.keys import MasterKey
from fleetguard.pki import FleetCA


@pytest.fixture
def ca(settings: Settings, master_key: MasterKey) -> Iterator[FleetCA]:
    with init_installation_ca(settings, master_key) as fleet_ca:
        yield fleet_ca
