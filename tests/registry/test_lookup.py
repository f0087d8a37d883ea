"""registry.lookup finds the devices a scan names, by serial and by address, from indexed
rows that every way of changing a device's addresses keeps (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text

from fleetguard.registry import DeviceChanges, DeviceState, lookup
from fleetguard.registry import service as registry
from fleetguard.store import Database, open_database, upgrade_database
from tests.findings.support import device_at


def _ids_at(db: Database, *addresses: str) -> dict[str, list[str]]:
    with db.read_session() as session:
        found = lookup.devices_at_addresses(session, addresses)
    return {a: [d.id for d in ds] for a, ds in found.items()}


def test_a_device_is_found_at_each_address_it_lists_and_nowhere_else(db: Database) -> None:
    cam = device_at(db, "cam", "10.0.0.5")
    with db.session() as session:
        registry.update_device(session, cam, DeviceChanges(addresses=["10.0.0.5", "fd00::5"]),
                               actor="test")

    assert _ids_at(db, "fd00::5", "10.0.0.5", "10.0.0.6") == {"10.0.0.5": [cam], "fd00::5": [cam]}


def test_an_address_a_device_no_longer_lists_finds_it_no_more(db: Database) -> None:
    cam = device_at(db, "cam", "10.0.0.5")
    with db.session() as session:
        registry.update_device(session, cam, DeviceChanges(addresses=["10.0.0.9"]), actor="test")

    assert _ids_at(db, "10.0.0.5", "10.0.0.9") == {"10.0.0.9": [cam]}


def test_a_device_heard_from_a_new_address_is_found_there(db: Database) -> None:
    cam = device_at(db, "cam", "10.0.0.5")
    with db.session() as session:
        registry.record_devices_seen(session, [cam], addresses={cam: "10.0.0.77"})

    assert _ids_at(db, "10.0.0.5", "10.0.0.77") == {"10.0.0.5": [cam], "10.0.0.77": [cam]}


def test_devices_sharing_an_address_are_all_found_oldest_first(db: Database) -> None:
    first = device_at(db, "a", "10.0.0.30")
    second = device_at(db, "b", "10.0.0.30")

    assert _ids_at(db, "10.0.0.30") == {"10.0.0.30": [first, second]}


def test_a_decommissioned_device_is_found_by_neither_address_nor_serial(db: Database) -> None:
    gone = device_at(db, "gone", "10.0.0.5", serial="SN-GONE")
    with db.session() as session:
        registry.set_device_state(session, gone, DeviceState.DECOMMISSIONED, actor="test")

    with db.read_session() as session:
        assert lookup.devices_at_addresses(session, ["10.0.0.5"]) == {}
        assert lookup.devices_by_serial(session, ["SN-GONE"]) == {}


def test_a_serial_finds_its_device(db: Database) -> None:
    gw = device_at(db, "gw", "10.0.0.1", serial="SN-1")

    with db.read_session() as session:
        found = lookup.devices_by_serial(session, ["SN-1", "SN-UNKNOWN"])

    assert {s: d.id for s, d in found.items()} == {"SN-1": gw}


def test_the_migration_indexes_the_addresses_devices_already_list(database_url: str) -> None:
    database = open_database(database_url)
    try:
        upgrade_database(database, "0007")
        now = datetime.now(UTC)
        with database.engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO devices (id, name, labels, state, addresses, created_at, updated_at)"
                " VALUES (:id, 'cam', '{}', 'active', :addresses, :now, :now)"
            ), {"id": "0b6c7a4e-0000-4000-8000-000000000001",
                "addresses": '["10.0.0.5", "fd00::5"]', "now": now})  # fmt: skip

        upgrade_database(database)

        assert _ids_at(database, "10.0.0.5", "fd00::5") == {
            "10.0.0.5": ["0b6c7a4e-0000-4000-8000-000000000001"],
            "fd00::5": ["0b6c7a4e-0000-4000-8000-000000000001"],
        }
    finally:
        database.dispose()
