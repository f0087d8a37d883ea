"""Control requests stay well under the broker's packet limit, which applies to us too."""

from __future__ import annotations

import json
import uuid

from fleetguard.broker import device_acls, device_role
from fleetguard.broker._dynsec import MAX_COMMANDS_PER_REQUEST, MAX_REQUEST_BYTES, _batches
from fleetguard.broker.models import MAX_PACKET_BYTES


def _create_role() -> dict[str, object]:
    device = str(uuid.uuid4())
    return {"command": "createRole", "rolename": device_role(device), "acls": device_acls(device)}


def _request_bytes(batch: list[dict[str, object]]) -> int:
    tagged = [{**c, "correlationData": f"{'f' * 16}.{i}"} for i, c in enumerate(batch)]
    return len(json.dumps({"commands": tagged}))


def test_a_large_batch_is_split_by_bytes_as_well_as_by_count() -> None:
    commands = [_create_role() for _ in range(450)]
    batches = [list(b) for b in _batches(commands)]
    assert [c for b in batches for c in b] == commands
    assert all(len(b) <= MAX_COMMANDS_PER_REQUEST for b in batches)
    assert max(_request_bytes(b) for b in batches) <= MAX_REQUEST_BYTES < MAX_PACKET_BYTES
    # 200 of these were 175 KiB in one request; they now go in more, smaller ones.
    assert len(batches) > 450 // MAX_COMMANDS_PER_REQUEST + 1


def test_small_commands_still_go_two_hundred_at_a_time() -> None:
    commands = [{"command": "getClient", "username": str(uuid.uuid4())} for _ in range(401)]
    assert [len(b) for b in _batches(commands)] == [200, 200, 1]
    assert list(_batches([])) == []
