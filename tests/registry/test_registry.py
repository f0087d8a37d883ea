"""The device registry on SQLite and PostgreSQL: lifecycle, search, groups, CSV."""

from __future__ import annotations

import pytest

from fleetguard.core.errors import ValidationFailedError
from fleetguard.registry import (
    DeviceChanges,
    DeviceFilter,
    DeviceState,
    GroupKind,
    csv_exchange,
    groups,
)
from fleetguard.registry import service as registry
from fleetguard.registry.errors import (
    DeviceExistsError,
    InvalidLabelQueryError,
    InvalidTransitionError,
)
from fleetguard.store import Database


def _add(db: Database, name: str, **kw):  # type: ignore[no-untyped-def]
    with db.session() as s:
        return registry.register_device(s, name=name, actor="test", **kw)


def test_new_device_is_registered_with_its_labels(db: Database) -> None:
    d = _add(db, "cam-1", serial="SN1", vendor="Acme", labels={"site": "berlin"})
    assert d.state is DeviceState.REGISTERED and d.labels == {"site": "berlin"}


def test_serial_is_unique(db: Database) -> None:
    _add(db, "a", serial="SN1")
    with pytest.raises(DeviceExistsError):
        _add(db, "b", serial="SN1")


def test_lifecycle_follows_the_allowed_transitions(db: Database) -> None:
    d = _add(db, "cam")
    with db.session() as s:
        with pytest.raises(InvalidTransitionError):
            registry.set_device_state(s, d.id, DeviceState.QUARANTINED, actor="t")
        registry.set_device_state(s, d.id, DeviceState.ACTIVE, actor="t")
        registry.set_device_state(s, d.id, DeviceState.QUARANTINED, actor="t")
        registry.set_device_state(s, d.id, DeviceState.DECOMMISSIONED, actor="t")
        with pytest.raises(InvalidTransitionError):
            registry.set_device_state(s, d.id, DeviceState.ACTIVE, actor="t")


def test_every_change_is_audited(db: Database) -> None:
    from fleetguard.auditlog import list_audit_entries

    d = _add(db, "cam")
    with db.session() as s:
        registry.update_device(s, d.id, DeviceChanges(vendor="Acme"), actor="operator:alice")
        actions = [e.action for e in list_audit_entries(s)]
    assert actions == ["device.register", "device.update"]


def test_cursor_pagination_visits_every_device_once(db: Database) -> None:
    ids = {_add(db, f"d{i}").id for i in range(23)}
    seen: list[str] = []
    cursor = None
    with db.session() as s:
        while True:
            page = registry.list_devices(s, cursor=cursor, limit=5)
            seen += [d.id for d in page.devices]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert len(seen) == 23 and set(seen) == ids


def test_filter_by_state_vendor_search_and_labels(db: Database) -> None:
    _add(db, "berlin-cam", vendor="Acme", labels={"site": "berlin", "kind": "camera"})
    _add(db, "paris-cam", vendor="Acme", labels={"site": "paris", "kind": "camera"})
    _add(db, "berlin-meter", vendor="Other", labels={"site": "berlin"})
    with db.session() as s:
        def names(flt: DeviceFilter) -> set[str]:
            return {d.name for d in registry.list_devices(s, flt).devices}

        assert names(DeviceFilter(vendor="Acme")) == {"berlin-cam", "paris-cam"}
        assert names(DeviceFilter(search="BERLIN")) == {"berlin-cam", "berlin-meter"}
        assert names(DeviceFilter(label_query="site=berlin,kind=camera")) == {"berlin-cam"}
        assert names(DeviceFilter(label_query="kind,site!=berlin")) == {"paris-cam"}
        assert names(DeviceFilter(state=DeviceState.ACTIVE)) == set()


def test_bad_label_query_is_refused(db: Database) -> None:
    with db.session() as s, pytest.raises(InvalidLabelQueryError):
        registry.list_devices(s, DeviceFilter(label_query="site==x=y,"))


def test_static_and_dynamic_groups(db: Database) -> None:
    a = _add(db, "a", labels={"tier": "prod"})
    _add(db, "b", labels={"tier": "test"})
    with db.session() as s:
        groups.create_group(s, name="pinned", kind=GroupKind.STATIC, label_query=None, actor="t")
        groups.create_group(s, name="prod", kind=GroupKind.DYNAMIC, label_query="tier=prod",
                              actor="t")
        groups.set_group_membership(s, group="pinned", device_id=a.id, member=True, actor="t")
    with db.session() as s:
        assert [d.name for d in registry.list_devices(s, DeviceFilter(group="pinned")).devices] == ["a"]
        assert [d.name for d in registry.list_devices(s, DeviceFilter(group="prod")).devices] == ["a"]
        assert registry.get_device(s, a.id).groups == ["pinned"]


def test_csv_export_then_import_round_trips(db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _add(db, "cam, with comma", serial="S1", vendor="Acme", labels={"site": "berlin"})
    with db.session() as s:
        text = "".join(csv_exchange.export_devices_csv(s))
    assert text.splitlines()[0].startswith("id,name,serial")
    other = text.replace("S1", "S2").replace(text.splitlines()[1].split(",")[0], "")
    with db.session() as s:
        assert csv_exchange.import_devices_csv(s, other, actor="t") == 1
        assert registry.find_device_by_serial(s, "S2").labels == {"site": "berlin"}  # type: ignore[union-attr]


def test_csv_import_is_all_or_nothing_and_names_the_line(db: Database) -> None:
    text = "name,serial,labels\nok-1,A1,site=x\nbad,A2,not-a-label\n"
    with pytest.raises(ValidationFailedError, match="line 3"), db.session() as s:
        csv_exchange.import_devices_csv(s, text, actor="t")
    with db.session() as s:
        assert registry.list_devices(s).devices == []


def test_registered_device_ids_names_only_devices_the_registry_holds(db: Database) -> None:
    with db.session() as session:
        known = [registry.register_device(session, name=f"d{i}", actor="t").id for i in range(3)]
    stranger = "00000000-0000-4000-8000-000000000001"
    with db.read_session() as session:
        found = registry.registered_device_ids(session, [*known, stranger, known[0]])
    assert found == set(known)


def test_devices_seen_gain_each_new_address_once(db: Database) -> None:
    with db.session() as session:
        cam = registry.register_device(session, name="cam", actor="t")
        registry.update_device(session, cam.id, DeviceChanges(addresses=["10.0.0.5"]), actor="t")
    stranger = "00000000-0000-4000-8000-000000000001"
    heard = {cam.id: "10.0.0.7", stranger: "10.0.0.8"}
    for _ in range(2):
        with db.session() as session:
            registry.record_devices_seen(session, [], addresses=heard)
    with db.read_session() as session:
        seen = registry.get_device(session, cam.id)
    assert seen.addresses == ["10.0.0.5", "10.0.0.7"]
    assert seen.last_seen_at is not None


def test_devices_seen_from_something_not_an_ip_keep_their_addresses(db: Database) -> None:
    with db.session() as session:
        cam = registry.register_device(session, name="cam", actor="t")
        registry.record_devices_seen(session, [], addresses={cam.id: "testclient"})
    with db.read_session() as session:
        assert registry.get_device(session, cam.id).addresses == []


def test_a_csv_row_with_more_fields_than_the_header_is_refused_by_line(db: Database) -> None:
    text = "name,vendor,labels\nok,Acme,site=a\ncam,Acme, Inc,site=b\n"
    with pytest.raises(ValidationFailedError) as caught, db.session() as session:
        csv_exchange.import_devices_csv(session, text, actor="t")
    assert caught.value.message.startswith("line 3: more fields than the header's 3")
    with db.read_session() as session:  # all rows or none
        assert registry.list_devices(session, DeviceFilter(search="ok")).devices == []


def test_a_bad_label_in_a_csv_row_is_named_once_with_its_line(db: Database) -> None:
    with pytest.raises(ValidationFailedError) as caught, db.session() as session:
        csv_exchange.import_devices_csv(session, "name,labels\ncam,site\n", actor="t")
    assert caught.value.message == "line 2: label 'site' is not key=value"
