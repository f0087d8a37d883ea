"""Browsing the fleet on SQLite and PostgreSQL: every order pages through every device once,
restrictions to a set of ids, and exact counts of expiring certificates."""

from __future__ import annotations

import pytest

from fleetguard.core.errors import ValidationFailedError
from fleetguard.registry import DeviceFilter, DeviceSort, DeviceState, listing
from fleetguard.registry import service as registry
from fleetguard.store import Database

NAMES = ["delta", "alpha", "charlie", "bravo", "alpha", "echo", "bravo"]


def _fleet(db: Database) -> list[str]:
    ids = []
    with db.session() as s:
        for i, name in enumerate(NAMES):
            d = registry.register_device(s, name=name, actor="t")
            if i % 2:
                registry.set_device_state(s, d.id, DeviceState.ACTIVE, actor="t")
            ids.append(d.id)
    return ids


def _all_pages(db: Database, sort: DeviceSort, flt: DeviceFilter | None = None,
               limit: int = 2) -> list[tuple[str, str, str]]:
    out, cursor = [], None
    while True:
        with db.read_session() as s:
            page = listing.browse_devices(s, flt, sort=sort, cursor=cursor, limit=limit)
        out += [(d.name, d.state.value, d.id) for d in page.devices]
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


@pytest.mark.parametrize("sort", list(DeviceSort))
def test_every_order_pages_through_each_device_exactly_once_in_order(
    db: Database, sort: DeviceSort
) -> None:
    _fleet(db)
    seen = _all_pages(db, sort)
    assert len(seen) == len(NAMES) and len({d for _, _, d in seen}) == len(NAMES)
    if sort in (DeviceSort.NAME, DeviceSort.NAME_DESC):
        names = [n for n, _, _ in seen]
        assert names == sorted(names, reverse=sort is DeviceSort.NAME_DESC)
    if sort in (DeviceSort.STATE, DeviceSort.STATE_DESC):
        keys = [(st, n) for n, st, _ in seen]
        assert keys == sorted(keys, reverse=sort is DeviceSort.STATE_DESC)


def test_name_order_breaks_ties_by_id(db: Database) -> None:
    _fleet(db)
    alphas = [d for n, _, d in _all_pages(db, DeviceSort.NAME, limit=1) if n == "alpha"]
    assert alphas == sorted(alphas)


def test_a_cursor_of_another_order_or_a_forged_one_is_refused(db: Database) -> None:
    _fleet(db)
    with db.read_session() as s:
        cursor = listing.browse_devices(s, sort=DeviceSort.NAME, limit=2).next_cursor
        assert cursor
        with pytest.raises(ValidationFailedError):
            listing.browse_devices(s, sort=DeviceSort.STATE, cursor=cursor)
        for forged in ("not-base64!", "W10", "WyJuYW1lIiwgMSwgMl0"):
            with pytest.raises(ValidationFailedError):
                listing.browse_devices(s, sort=DeviceSort.NAME, cursor=forged)


def test_a_set_of_ids_restricts_the_list_and_combines_with_other_filters(db: Database) -> None:
    ids = _fleet(db)
    wanted = frozenset(ids[:4])
    seen = _all_pages(db, DeviceSort.NAME, DeviceFilter(device_ids=wanted))
    assert {d for _, _, d in seen} == wanted
    active = _all_pages(db, DeviceSort.NAME,
                        DeviceFilter(device_ids=wanted, state=DeviceState.ACTIVE))
    assert {d for _, _, d in active} == {ids[1], ids[3]}
    assert _all_pages(db, DeviceSort.NAME, DeviceFilter(device_ids=frozenset())) == []


def test_a_large_set_of_ids_is_one_parameter(db: Database) -> None:
    ids = _fleet(db)
    many = frozenset([*ids[:2], *(f"00000000-0000-4000-8000-{i:012d}" for i in range(40_000))])
    seen = _all_pages(db, DeviceSort.NAME, DeviceFilter(device_ids=many), limit=50)
    assert {d for _, _, d in seen} == set(ids[:2])


def test_the_registry_list_honours_a_set_of_ids_too(db: Database) -> None:
    ids = _fleet(db)
    with db.read_session() as s:
        page = registry.list_devices(s, DeviceFilter(device_ids=frozenset(ids[2:4])))
    assert [d.id for d in page.devices] == ids[2:4]  # registration order
