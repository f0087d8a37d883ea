"""The broker side of access: dynsec's baseline (default deny, the platform's roles) and
each device's client and role, made equal to identity's verdict.

Private to the broker package; its public names are exported by ``fleetguard.broker``.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from fleetguard.broker import _acl
from fleetguard.broker._dynsec import DynsecAdmin
from fleetguard.broker.models import BrokerFiles, ReconcileReport
from fleetguard.identity.admission import devices_entitled_to_connect

_TOLERATED = ("already exists", "not found")


def ensure_broker_baseline(admin: DynsecAdmin, files: BrokerFiles) -> None:
    """Default deny for everything; the admin and service roles as fleetguard defines them,
    each held by its own identity and by no other client or group (before, the service
    identity held both)."""
    roles = {str(r.get("rolename")): r for r in admin.list_roles()}
    commands: list[dict[str, Any]] = [
        {"command": "setDefaultACLAccess",
         "acls": [{"acltype": k, "allow": v} for k, v in _acl.DEFAULT_ACL_ACCESS.items()]},
    ]
    for name, acls in ((_acl.ADMIN_ROLE, _acl.admin_acls()),
                       (_acl.SERVICE_ROLE, _acl.service_acls())):
        commands += _role_commands(name, acls, roles.get(name))
    admin.execute(commands, tolerate=_TOLERATED)
    platform = {files.service_name: _acl.SERVICE_ROLE, files.admin_name: _acl.ADMIN_ROLE}
    fixes: list[dict[str, Any]] = [
        {"command": "createClient", "username": name, "roles": [{"rolename": role}]}
        for name, role in platform.items()
    ]
    for client in admin.list_clients():
        name = str(client.get("username"))
        want = {platform[name]} if name in platform else set()
        have = _role_names(client) & {_acl.ADMIN_ROLE, _acl.SERVICE_ROLE}
        fixes += [{"command": "removeClientRole", "username": name, "rolename": r}
                  for r in sorted(have - want)]
        fixes += [{"command": "addClientRole", "username": name, "rolename": r}
                  for r in sorted(want - have)]
    groups = admin.one("listGroups", verbose=True, count=-1).get("groups", [])
    for group in (g for g in groups if isinstance(g, dict)):
        fixes += [{"command": "removeGroupRole", "groupname": group.get("groupname"),
                   "rolename": r}
                  for r in sorted(_role_names(group) & {_acl.ADMIN_ROLE, _acl.SERVICE_ROLE})]
    # A change to the admin's own client kicks this session (it comes back by itself).
    admin.execute(fixes, tolerate=_TOLERATED)


def _role_names(entry: dict[str, Any]) -> set[str]:
    return {str(r.get("rolename")) for r in entry.get("roles", []) if isinstance(r, dict)}


def _role_commands(
    name: str, want: list[_acl.Acl], role: dict[str, Any] | None
) -> list[dict[str, Any]]:
    if role is None:
        return [{"command": "createRole", "rolename": name, "acls": want}]
    have = _acl.acl_key([a for a in role.get("acls", []) if isinstance(a, dict)])
    target = _acl.acl_key(want)
    commands: list[dict[str, Any]] = [
        {"command": "removeRoleACL", "rolename": name, "acltype": t, "topic": topic}
        for t, topic, _ in sorted(have - target)
    ]
    commands += [
        {"command": "addRoleACL", "rolename": name, **a}
        for a in want if (a["acltype"], a["topic"], True) not in have
    ]
    return commands


def _client_fixes(device: str, rolename: str, client: dict[str, Any]) -> list[dict[str, Any]]:
    """Commands that leave an entitled device's client holding its own role only, enabled."""
    have = _role_names(client)
    fixes: list[dict[str, Any]] = [
        {"command": "removeClientRole", "username": device, "rolename": r}
        for r in sorted(have - {rolename})
    ]
    if rolename not in have:
        fixes.append({"command": "addClientRole", "username": device, "rolename": rolename})
    if client.get("disabled"):
        fixes.append({"command": "enableClient", "username": device})
    return fixes


def reconcile_broker_access(
    session: Session,
    admin: DynsecAdmin,
    *,
    kick: Collection[str] = (),
    now: datetime | None = None,
    entitled: set[str] | None = None,
) -> ReconcileReport:
    """Make the broker's device clients equal to identity's
    :func:`~fleetguard.identity.admission.devices_entitled_to_connect`.

    Entitled devices get a dynsec client (username = device id = certificate CN) with
    the role ``fg-device-<id>``; every other UUID-named client is kicked
    (``disableClient``) and deleted with its role. Devices in ``kick`` that stay
    entitled are kicked (disable + enable) so that a session opened with a certificate
    revoked since is dropped; the SIGHUP that reloaded the CRL keeps it from coming
    back. Clients whose username is not a UUID (the platform's identities, anything an
    operator made) are left alone. ``entitled``: the set, when the caller has just read it.
    """
    if entitled is None:
        entitled = devices_entitled_to_connect(session, now=now)
    clients = {str(c.get("username")): c for c in admin.list_clients()}
    roles = {str(r.get("rolename")): r for r in admin.list_roles()}
    create_roles: list[dict[str, Any]] = []
    commands: list[dict[str, Any]] = []
    granted: list[str] = []
    repaired: list[str] = []
    kicked: list[str] = []
    for device in sorted(entitled):
        rolename = _acl.device_role(device)
        role_fix = _role_commands(rolename, _acl.device_acls(device), roles.get(rolename))
        create_roles += role_fix
        client = clients.get(device)
        if client is None:
            commands.append({
                "command": "createClient", "username": device, "textname": "fleetguard device",
                "roles": [{"rolename": rolename, "priority": 0}],
            })
            granted.append(device)
            continue
        fixes = _client_fixes(device, rolename, client)
        if fixes or role_fix:
            repaired.append(device)
        commands += fixes
        if device in kick:
            commands += [{"command": "disableClient", "username": device},
                         {"command": "enableClient", "username": device}]
            kicked.append(device)
    removed = [d for d in map(_acl.canonical_device_id, sorted(clients))
               if d is not None and d not in entitled]
    for stale in removed:
        # disableClient kicks in every 2.0.x; deleteClient leaves no permission at all.
        commands += [{"command": "disableClient", "username": stale},
                     {"command": "deleteClient", "username": stale}]
    commands += [{"command": "deleteRole", "rolename": rolename} for rolename in sorted(roles)
                 if (owner := _acl.device_of_role(rolename)) is not None
                 and owner not in entitled]
    admin.execute(create_roles + commands, tolerate=_TOLERATED)
    return ReconcileReport(
        entitled=len(entitled), granted=tuple(granted), removed=tuple(removed),
        repaired=tuple(repaired), kicked=tuple(kicked),
    )
