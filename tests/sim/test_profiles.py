"""Profiles and scenarios change the generated telemetry the way the attacks would."""

from __future__ import annotations

import random

from fleetguard.protocol import ContentType, decode_message, encode_message
from fleetguard.sim import ActiveScenario, DeviceModel, Profile, Scenario
from fleetguard.sim.profiles import scenario_target

T0 = 1_800_000_000_000
STEP = 60_000


def _model(profile: Profile, index: int = 7) -> DeviceModel:
    return DeviceModel(index=index, profile=profile, rng=random.Random(index), now_ms=T0)


def _series(model: DeviceModel, steps: int) -> list:
    return [model.report(T0 + STEP * (i + 1)) for i in range(steps)]


def _rate(reports: list, field: str) -> float:
    a, b = reports[-2], reports[-1]
    if field in ("bytes_out", "bytes_in", "packets_out"):
        return (getattr(b.interfaces[0], field) - getattr(a.interfaces[0], field)) / 60
    return (getattr(b.net, field) - getattr(a.net, field)) / 60


def test_profiles_look_like_their_devices_and_are_valid_messages() -> None:
    camera, sensor, gateway = (_series(_model(p), 3) for p in Profile)
    assert 200_000 < _rate(camera, "bytes_out") < 300_000
    assert {c.remote_address for c in camera[-1].connections} == {camera[-1].connections[0].remote_address}
    assert _rate(sensor, "bytes_out") < 100
    assert len({c.remote_address for c in gateway[-1].connections}) >= 20
    for report in camera + sensor + gateway:
        assert decode_message(encode_message(report, ContentType.JSON), ContentType.JSON) == report
    assert [r.seq for r in camera] == [0, 1, 2]


def _attacked(scenario: Scenario, profile: Profile = Profile.SENSOR) -> tuple[list, list]:
    clean, bad = _model(profile), _model(profile)
    target, port = scenario_target(scenario, bad)
    bad.add_scenario(ActiveScenario(scenario, T0 + 2 * STEP, T0 + 10 * STEP, target, port))
    return _series(clean, 5), _series(bad, 5)


def test_each_scenario_leaves_its_mark() -> None:
    clean, scan = _attacked(Scenario.PORT_SCAN)
    assert _rate(scan, "tcp_active_opens") > 100 > _rate(clean, "tcp_active_opens") + 99
    assert _rate(scan, "tcp_attempt_fails") > 100
    _, brute = _attacked(Scenario.TELNET_BRUTEFORCE)
    assert sum(c.remote_port == 23 for c in brute[-1].connections) >= 3
    _, exfil = _attacked(Scenario.EXFILTRATION, Profile.CAMERA)
    assert _rate(exfil, "bytes_out") > 1_500_000
    assert len({c.remote_address for c in exfil[-1].connections}) == 2  # video + the new one
    _, listener = _attacked(Scenario.NEW_LISTENER)
    assert {s.port for s in listener[-1].listening} - {s.port for s in clean[-1].listening}
    assert sum(len(r.new_executables) for r in listener) == 1  # reported once
    _, miner = _attacked(Scenario.CRYPTOMINER)
    assert miner[-1].cpu_percent >= 97 and any(c.remote_port == 3333 for c in miner[-1].connections)
    _, flood = _attacked(Scenario.FLOOD)
    assert _rate(flood, "udp_out_datagrams") > 30_000
    _, beacon = _attacked(Scenario.C2_BEACON)
    assert beacon[-1].net.tcp_active_opens > clean[-1].net.tcp_active_opens
    # Before the start the compromised device looked normal.
    assert scan[0].net == clean[0].net
