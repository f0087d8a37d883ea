"""The sync loop makes a full pass (listing every dynsec client and role) only when needed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from fleetguard.broker import BrokerSync, DynsecAdmin
from fleetguard.broker.errors import BrokerUnavailableError, DynsecTimeoutError
from tests.broker.conftest import Fleet


class CountingAdmin:
    """The real admin, counting the listings (the costly part at 10,000 devices)."""

    def __init__(self, admin: DynsecAdmin) -> None:
        self.admin = admin
        self.listings = 0

    def list_clients(self) -> list[dict[str, Any]]:
        self.listings += 1
        return self.admin.list_clients()

    def list_roles(self) -> list[dict[str, Any]]:
        self.listings += 1
        return self.admin.list_roles()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.admin, name)


@pytest.fixture
def admin(fleet: Fleet) -> Iterator[CountingAdmin]:
    # The broker's one admin connection (the sync loop's): a second one would take its
    # place. On a fresh broker its first session may be dropped once; wait until the
    # control channel answers.
    deadline = time.monotonic() + 15
    while True:
        try:
            fleet.admin.list_roles()
            break
        except (DynsecTimeoutError, BrokerUnavailableError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield CountingAdmin(fleet.admin)


def _sync(fleet: Fleet, admin: CountingAdmin) -> BrokerSync:
    sync = BrokerSync(fleet.db, admin, crl_file=fleet.files.crl_file,  # type: ignore[arg-type]
                      full_interval=3600)
    assert sync.reconcile() is not None  # the first pass is always full
    return sync


def test_a_pass_with_nothing_changed_lists_nothing(fleet: Fleet, admin: CountingAdmin) -> None:
    sync = _sync(fleet, admin)
    before = admin.listings
    assert sync.reconcile(force=False) is None
    assert sync.reconcile(force=False) is None
    assert admin.listings == before and sync.skipped == 2


def test_a_newly_entitled_device_makes_the_next_pass_full(
    fleet: Fleet, admin: CountingAdmin
) -> None:
    sync = _sync(fleet, admin)
    before = admin.listings
    fleet.enroll("sync-newcomer")
    assert sync.reconcile(force=False) is not None
    assert admin.listings > before


def test_a_large_request_gets_time_in_proportion_to_its_commands(
    fleet: Fleet, admin: CountingAdmin
) -> None:
    # A timeout no broker meets for 200 role creations: only the per-command allowance
    # lets the request finish (the plugin's cost per command grows with the fleet).
    names = [f"test-bulk-{i:03d}" for i in range(200)]
    fleet.admin.execute([{"command": "createRole", "rolename": n} for n in names],
                        timeout=0.001)
    listed = {str(r.get("rolename")) for r in admin.list_roles()}
    assert set(names) <= listed
