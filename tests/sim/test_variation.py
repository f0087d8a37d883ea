"""Benign variation changes the simulated reports the way the normal event would."""

from __future__ import annotations

import itertools
import random

import pytest

from fleetguard.detect import Feature, extract_features
from fleetguard.protocol import TelemetryReport
from fleetguard.sim import DeviceModel, Profile
from fleetguard.sim.variation import (
    DAY_MS,
    HOUR_MS,
    IMAGE_BYTES,
    UPDATE_PORT,
    UPDATE_RATE,
    BenignDevice,
    Variation,
)

T0 = 1_800_000_000_000 - 1_800_000_000_000 % DAY_MS  # midnight UTC
MINUTE_MS = 60_000


def _device(variation: Variation, profile: Profile = Profile.CAMERA, hours: int = 24,
            seed: int = 4) -> BenignDevice:
    return BenignDevice.create(variation, profile, index=9, seed=seed, start_ms=T0,
                               until_ms=T0 + hours * HOUR_MS)


def _reports(device: BenignDevice | DeviceModel, minutes: int) -> list[TelemetryReport]:
    return [device.report(T0 + n * MINUTE_MS) for n in range(1, minutes + 1)]


def _rates(reports: list[TelemetryReport], feature: Feature) -> list[float | None]:
    state, rates = None, []
    for report in reports:
        features, state = extract_features(state, report)
        rates.append(features.get(feature))
    return rates


@pytest.mark.parametrize("feature", [Feature.BYTES_OUT_PER_S, Feature.PACKETS_IN_PER_S,
                                     Feature.CPU_PERCENT, Feature.TOP_PROCESS_CPU_PERCENT])
def test_diurnal_load_peaks_in_the_afternoon_and_falls_at_night(feature: Feature) -> None:
    diurnal = _rates(_reports(_device(Variation.DIURNAL), 24 * 60), feature)
    plain = _rates(_reports(DeviceModel(index=9, profile=Profile.CAMERA,
                                        rng=random.Random(4), now_ms=T0), 24 * 60), feature)
    at = {hour: hour * 60 - 1 for hour in (2, 14)}  # the report at that hour
    night, afternoon = ((diurnal[at[h]] or 0) / (plain[at[h]] or 1) for h in (2, 14))
    assert night == pytest.approx(0.4, abs=0.05)
    assert afternoon == pytest.approx(1.6, abs=0.05)


def test_a_firmware_update_downloads_the_image_from_the_usual_host_then_reboots() -> None:
    device = _device(Variation.FIRMWARE_UPDATE, Profile.GATEWAY)
    (download,) = device.downloads
    assert (download.end_ms - download.start_ms) / 1000 == pytest.approx(
        IMAGE_BYTES[Profile.GATEWAY] / UPDATE_RATE, abs=0.001)
    reports = _reports(device, 24 * 60)
    rates = _rates(reports, Feature.BYTES_IN_PER_S)
    # The reports whose minute overlaps the download carry the image besides the usual.
    first, last = ((at - T0) // MINUTE_MS for at in (download.start_ms, download.end_ms))
    window = range(first, last + 1)
    gateway_normal = 30_000 * 60
    received = sum((rates[i] or 0.0) * 60 - gateway_normal for i in window)
    assert received == pytest.approx(IMAGE_BYTES[Profile.GATEWAY], rel=0.05)
    update_host = (device.model.upstream[0], UPDATE_PORT)
    shown = [i for i, r in enumerate(reports)
             if update_host in {(c.remote_address, c.remote_port) for c in r.connections}]
    assert shown and set(shown) <= set(window)
    assert len({r.boot_id for r in reports}) == 2  # it came up on the new image


def test_a_device_that_reboots_starts_its_counters_anew_each_time() -> None:
    device = _device(Variation.REBOOTS)
    reports = _reports(device, 24 * 60)
    boots = [i for i in range(1, len(reports)) if reports[i].boot_id != reports[i - 1].boot_id]
    assert 2 <= len(boots) <= 8
    for i in boots:
        assert reports[i].interfaces[0].bytes_out < reports[i - 1].interfaces[0].bytes_out
        assert reports[i].uptime_s < 2 * 60  # booted within the last minute or so


@pytest.mark.parametrize("variation", list(Variation))
def test_no_variation_makes_a_counter_go_backwards_within_a_boot(variation: Variation) -> None:
    reports = _reports(_device(variation, Profile.GATEWAY), 24 * 60)
    for before, after in itertools.pairwise(reports):
        if before.boot_id == after.boot_id:
            assert after.interfaces[0].bytes_in >= before.interfaces[0].bytes_in
            assert after.interfaces[0].packets_out >= before.interfaces[0].packets_out


def test_a_moved_gateway_comes_up_in_another_network_with_its_field_devices() -> None:
    device = _device(Variation.MOVED_NETWORK, Profile.GATEWAY)
    old_address, old_peers = device.model.address, list(device.model.peers)
    reports = _reports(device, 24 * 60)
    last = reports[-1]
    assert last.boot_id != reports[0].boot_id
    new_network = last.connections[0].local_address.rsplit(".", 1)[0]
    assert new_network != old_address.rsplit(".", 1)[0]
    # Its field devices at their new addresses; where it bridges upstream is unchanged.
    assert {c.remote_address for c in last.connections} == {
        f"{new_network}.{p.rsplit('.', 1)[1]}" for p in old_peers} | {device.model.upstream[0]}
