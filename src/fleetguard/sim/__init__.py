"""Fleet simulator and attack injectors: virtual devices with real identities, for the
demo, tests and benchmarks.

>>> from fleetguard.sim import Profile, Scenario
>>> sorted(p.value for p in Profile)
['camera', 'gateway', 'sensor']
"""

from fleetguard.sim.fleet import FleetSimulator, GroundTruth, SimSettings, SimStats, SimTransport
from fleetguard.sim.identity import (
    ContextFactory,
    ProvisioningError,
    SimIdentity,
    new_key_and_csr,
    provision_fleet,
)
from fleetguard.sim.profiles import ActiveScenario, DeviceModel, Profile, Scenario

__all__ = [
    "ActiveScenario",
    "ContextFactory",
    "DeviceModel",
    "FleetSimulator",
    "GroundTruth",
    "Profile",
    "ProvisioningError",
    "Scenario",
    "SimIdentity",
    "SimSettings",
    "SimStats",
    "SimTransport",
    "new_key_and_csr",
    "provision_fleet",
]
