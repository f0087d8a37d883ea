"""Indexes for the device list's orders: each is keyset-paginated on its columns plus id."""

from __future__ import annotations

from sqlalchemy import Index

from fleetguard.store.tables.registry import DeviceRow

Index("ix_devices_name_id", DeviceRow.name, DeviceRow.id)
Index("ix_devices_state_name_id", DeviceRow.state, DeviceRow.name, DeviceRow.id)
Index("ix_devices_created_at_id", DeviceRow.created_at, DeviceRow.id)
