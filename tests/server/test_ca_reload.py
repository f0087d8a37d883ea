"""The running server picks up a CA rotation made by another process."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization

from fleetguard.core.config import Settings
from fleetguard.identity.ca import init_installation_ca, open_installation_ca
from fleetguard.keys import MasterKey
from fleetguard.pki import FleetCA
from fleetguard.server.ca_reload import CaReloader


@pytest.fixture
def server_ca(settings: Settings, master_key: MasterKey) -> Iterator[FleetCA]:
    init_installation_ca(settings, master_key).close()
    with open_installation_ca(settings, master_key) as ca:
        yield ca


@pytest.fixture
def device_trust(server_ca: FleetCA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_verify_locations(cadata=server_ca.bundle_pem().decode())
    return context


def _rotate_elsewhere(settings: Settings, master_key: MasterKey) -> FleetCA:
    """``fleetguard ca rotate`` in another process: its own view of the CA directory."""
    other = open_installation_ca(settings, master_key)
    other.rotate_issuing_ca()
    return other


def test_nothing_is_reloaded_while_the_ca_is_unchanged(
    server_ca: FleetCA, device_trust: ssl.SSLContext
) -> None:
    assert CaReloader(server_ca, [device_trust]).reload_if_rotated() is False


def test_a_rotation_elsewhere_makes_the_new_issuing_ca_active_here(
    server_ca: FleetCA, device_trust: ssl.SSLContext, settings: Settings, master_key: MasterKey
) -> None:
    reloader = CaReloader(server_ca, [device_trust])
    with _rotate_elsewhere(settings, master_key) as other:
        assert reloader.reload_if_rotated() is True
        assert server_ca.active_issuing_ca.ca_id == other.active_issuing_ca.ca_id
    assert reloader.reload_if_rotated() is False  # once per rotation


def test_the_device_trust_store_gains_the_new_issuing_ca(
    server_ca: FleetCA, device_trust: ssl.SSLContext, settings: Settings, master_key: MasterKey
) -> None:
    old = server_ca.active_issuing_ca.certificate.public_bytes(serialization.Encoding.DER)
    reloader = CaReloader(server_ca, [device_trust])
    with _rotate_elsewhere(settings, master_key) as other:
        new = other.active_issuing_ca.certificate.public_bytes(serialization.Encoding.DER)
    reloader.reload_if_rotated()
    trusted = device_trust.get_ca_certs(binary_form=True)
    assert new in trusted and old in trusted
