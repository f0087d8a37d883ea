"""Fleet simulator and attack injectors: virtual devices with real identities, for the
demo, tests and benchmarks.

>>> from fleetguard.sim import Profile, Scenario
>>> sorted(p.value for p in Profile)
['camera', 'gateway', 'sensor']
"""

import typing as _typing

from fleetguard.core.lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from fleetguard.sim.evaluation import EvalSettings, EvaluationResult, run_evaluation
    from fleetguard.sim.fleet import (
        FleetSimulator,
        GroundTruth,
        SimSettings,
        SimStats,
        pick_profile,
    )
    from fleetguard.sim.identity import (
        ContextFactory,
        ProvisioningError,
        SimIdentity,
        provision_fleet,
    )
    from fleetguard.sim.profiles import ActiveScenario, DeviceModel, Profile, Scenario
    from fleetguard.sim.transports import SimTransport
    from fleetguard.sim.variation import BenignDevice, Variation

# Loaded on first use: `fleetguard --help` imports this package's cli and nothing heavy.
__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "FleetSimulator": "fleetguard.sim.fleet",
        "GroundTruth": "fleetguard.sim.fleet",
        "SimSettings": "fleetguard.sim.fleet",
        "SimStats": "fleetguard.sim.fleet",
        "pick_profile": "fleetguard.sim.fleet",
        "SimTransport": "fleetguard.sim.transports",
        "ContextFactory": "fleetguard.sim.identity",
        "ProvisioningError": "fleetguard.sim.identity",
        "SimIdentity": "fleetguard.sim.identity",
        "provision_fleet": "fleetguard.sim.identity",
        "ActiveScenario": "fleetguard.sim.profiles",
        "DeviceModel": "fleetguard.sim.profiles",
        "Profile": "fleetguard.sim.profiles",
        "Scenario": "fleetguard.sim.profiles",
        "BenignDevice": "fleetguard.sim.variation",
        "Variation": "fleetguard.sim.variation",
        "EvalSettings": "fleetguard.sim.evaluation",
        "EvaluationResult": "fleetguard.sim.evaluation",
        "run_evaluation": "fleetguard.sim.evaluation",
    },
)

__all__ = [
    "ActiveScenario",
    "BenignDevice",
    "ContextFactory",
    "DeviceModel",
    "EvalSettings",
    "EvaluationResult",
    "FleetSimulator",
    "GroundTruth",
    "Profile",
    "ProvisioningError",
    "Scenario",
    "SimIdentity",
    "SimSettings",
    "SimStats",
    "SimTransport",
    "Variation",
    "pick_profile",
    "provision_fleet",
    "run_evaluation",
]
