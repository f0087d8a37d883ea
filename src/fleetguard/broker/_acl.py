"""The broker permissions fleetguard manages, as dynamic-security roles and ACLs.

Mosquitto 2.0.x has no ``%u``/``%c`` substitution in dynsec ACLs, so every device gets a
role of its own, ``fg-device-<uuid>``, naming its topics literally. Every default access
is ``deny``: what a role does not allow, nobody may do.
"""

from __future__ import annotations

import uuid
from typing import Any

from fleetguard.protocol.topics import TOPIC_PREFIX, TopicKind, device_topic

ADMIN_ROLE = "fg-admin"
SERVICE_ROLE = "fg-service"
DEVICE_ROLE_PREFIX = "fg-device-"

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"

#: What nobody may do unless a role says so (publishClientReceive too: a client whose
#: role was removed receives nothing on subscriptions it made before).
DEFAULT_ACL_ACCESS: dict[str, bool] = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": False,
}

_DEVICE_SENDS = (TopicKind.TELEMETRY, TopicKind.HEARTBEAT, TopicKind.COMMAND_RESULT)

Acl = dict[str, Any]


def _acl(acltype: str, topic: str, priority: int = 0) -> Acl:
    return {"acltype": acltype, "topic": topic, "priority": priority, "allow": True}


def admin_acls() -> list[Acl]:
    """The dynsec admin: its control topic and ``$SYS``, nothing of the devices."""
    return [
        _acl("publishClientSend", "$CONTROL/dynamic-security/#"),
        _acl("publishClientReceive", "$CONTROL/dynamic-security/#"),
        _acl("subscribePattern", "$CONTROL/dynamic-security/#"),
        _acl("unsubscribePattern", "$CONTROL/dynamic-security/#"),
        _acl("publishClientReceive", "$SYS/#"),
        _acl("subscribePattern", "$SYS/#"),
        _acl("unsubscribePattern", "$SYS/#"),
    ]


def service_acls() -> list[Acl]:
    """The platform: reads every device topic, sends commands to any device."""
    every = f"{TOPIC_PREFIX}+/#"
    return [
        _acl("subscribePattern", every),
        _acl("unsubscribePattern", every),
        _acl("publishClientReceive", every),
        _acl("publishClientSend", f"{TOPIC_PREFIX}+/{TopicKind.COMMAND.value}"),
    ]


def device_role(device_id: str) -> str:
    return f"{DEVICE_ROLE_PREFIX}{device_id}"


def device_acls(device_id: str) -> list[Acl]:
    """Publish telemetry, heartbeats and command results; subscribe to its commands."""
    ident = uuid.UUID(device_id)
    commands = device_topic(ident, TopicKind.COMMAND)
    acls = [_acl("publishClientSend", device_topic(ident, kind)) for kind in _DEVICE_SENDS]
    acls += [
        _acl("subscribeLiteral", commands),
        _acl("unsubscribeLiteral", commands),
        _acl("publishClientReceive", commands),
    ]
    return acls


def canonical_device_id(username: str) -> str | None:
    """The device id a dynsec username stands for, or None when it is not a device's."""
    try:
        parsed = uuid.UUID(username)
    except ValueError:
        return None
    return username if str(parsed) == username else None


def device_of_role(rolename: str) -> str | None:
    if not rolename.startswith(DEVICE_ROLE_PREFIX):
        return None
    return canonical_device_id(rolename[len(DEVICE_ROLE_PREFIX) :])


def acl_key(acls: list[Acl]) -> frozenset[tuple[str, str, bool]]:
    """Compare ACL lists as the broker lists them (order and priority aside)."""
    return frozenset((str(a["acltype"]), str(a["topic"]), bool(a.get("allow"))) for a in acls)
