"""The files the broker runs on: ``mosquitto.conf``, the dynsec JSON, its identities.

Layout of ``<data_dir>/broker`` (0700; 0710 with the group of the broker's account when
it runs as its own, see ``_account``)::

    mosquitto.conf       regenerated on every start; do not edit
    mosquitto.log        the broker's log (its stderr)
    tls/                 the broker's own TLS server identity: broker.crt (+ chain), broker.key
    service/             the platform's MQTT identity (ingestion): service.crt (+ chain), .key
    admin/               the dynsec admin's MQTT identity (the sync loop): admin.crt, admin.key
    state/               the broker account's own, when it runs as its own
    state/dynsec.json    dynamic security state: written by us once, then by the plugin
    state/mosquitto.db   persistence (when on)

The broker's server certificate is its own, issued by the fleet CA for the names of the
installation's server certificate (the names devices reach the platform by) and the
listen address; the installation's ``tls/server.key`` stays the platform's alone. Its
trust anchors are the fleet CA bundle, its CRL file the fleet CA's ``crl/crls.pem``.

Privileges: started by root, the broker runs as ``mosquitto`` and gets only the access to
the data dir it needs (see ``_account``); run by another account, it runs as that one.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import pwd
import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Any

from fleetguard.broker import _acl
from fleetguard.broker._account import choose_broker_account, grant_broker_access
from fleetguard.broker._identities import (
    ensure_platform_identities,
    renew_tls_identity,
    tls_names,
)
from fleetguard.broker.errors import BrokerConfigError, MosquittoNotFoundError
from fleetguard.broker.models import (
    DEFAULT_ADMIN_NAME,
    MAX_PACKET_BYTES,
    BrokerConfig,
    BrokerFiles,
)
from fleetguard.core.config import Settings
from fleetguard.core.files import write_atomic
from fleetguard.pki import FleetCA

log = logging.getLogger(__name__)

_MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
_PLUGIN_GLOBS = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/*/mosquitto_dynamic_security.so",
)


def find_mosquitto(explicit: Path | None = None) -> Path:
    if explicit is not None:
        if not os.access(explicit, os.X_OK):
            raise MosquittoNotFoundError(f"{explicit} is not an executable mosquitto")
        return explicit
    found = shutil.which("mosquitto")
    for candidate in (found, *_MOSQUITTO_CANDIDATES):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise MosquittoNotFoundError(
        "mosquitto is not installed (Debian/Ubuntu: `apt-get install mosquitto`)"
    )


def find_dynsec_plugin(explicit: Path | None = None) -> Path:
    if explicit is not None:
        if not explicit.is_file():
            raise MosquittoNotFoundError(f"no dynamic security plugin at {explicit}")
        return explicit
    for pattern in _PLUGIN_GLOBS:
        for match in sorted(glob.glob(pattern)):
            return Path(match)
    raise MosquittoNotFoundError(
        "the mosquitto dynamic security plugin (mosquitto_dynamic_security.so) is missing; "
        "it ships with mosquitto 2.0 or newer"
    )


def _check_path(path: Path) -> Path:
    # mosquitto.conf has no quoting: a value ends at the first blank.
    if any(c.isspace() for c in str(path)):
        raise BrokerConfigError(f"mosquitto cannot use a path with blanks: {str(path)!r}")
    return path


def _check_listener(config: BrokerConfig) -> None:
    if not 0 < config.port < 65536:
        raise BrokerConfigError(f"port {config.port} is out of range")
    if not config.host or any(c.isspace() or c in "#/" for c in config.host):
        raise BrokerConfigError(f"not a listen address: {config.host!r}")


def _check_limits(config: BrokerConfig) -> None:
    if config.max_packet_bytes < MAX_PACKET_BYTES:
        raise BrokerConfigError(
            f"max_packet_bytes {config.max_packet_bytes} would disconnect devices sending "
            f"valid messages (the largest takes {MAX_PACKET_BYTES} bytes with its headers)"
        )
    for name in ("max_queued_messages", "max_queued_bytes", "max_inflight_bytes"):
        if getattr(config, name) <= 0:  # 0 is Mosquitto's "no limit"
            raise BrokerConfigError(f"{name} must be positive")


def broker_files(settings: Settings, ca: FleetCA, config: BrokerConfig) -> BrokerFiles:
    """Where everything is, without writing anything."""
    _check_listener(config)
    _check_limits(config)
    if config.admin_name == config.service_name:
        raise BrokerConfigError("the dynsec admin needs a name of its own, not the service's")
    directory = settings.data_dir / "broker"
    state = directory / "state"
    service = directory / "service"
    admin = directory / "admin"
    tls = directory / "tls"
    files = BrokerFiles(
        directory=directory,
        config_file=directory / "mosquitto.conf",
        state_dir=state,
        dynsec_file=state / "dynsec.json",
        log_file=directory / "mosquitto.log",
        ca_bundle=ca.bundle_path,
        crl_file=ca.crl_directory / "crls.pem",
        tls_cert=tls / "broker.crt",
        tls_key=tls / "broker.key",
        service_cert=service / "service.crt",
        service_key=service / "service.key",
        service_name=config.service_name,
        admin_cert=admin / "admin.crt",
        admin_key=admin / "admin.key",
        admin_name=config.admin_name,
        host=config.host,
        port=config.port,
        tls_names=tls_names(settings, config),
    )
    for path in (files.directory, files.ca_bundle, files.crl_file):
        _check_path(path)
    return files


def render_config(files: BrokerFiles, config: BrokerConfig, plugin: Path, user: str) -> str:
    """mosquitto.conf: one mutual-TLS listener, dynsec, nothing else; run as ``user``."""
    persistence = (
        ["persistence true", f"persistence_location {files.state_dir}/", "autosave_interval 60"]
        if config.persistence
        else ["persistence false"]
    )
    lines = [
        "# Generated by fleetguard on every `fleetguard broker` start: edits are lost.",
        "# Mutual TLS only; every client is named by its certificate's CN, as username and",
        "# as client id; the dynamic security plugin decides every publish and subscribe",
        "# (default: deny).",
        "# The CRL is re-read on SIGHUP only, and only for new connections: the platform",
        "# sends SIGHUP when the CRL changes and kicks revoked devices itself.",
        "per_listener_settings false",
        "allow_anonymous false",
        # mosquitto switches to this account before it reads anything below.
        f"user {user}",
        *persistence,
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        # notice: connections and kicks; "information" would log every dynsec
        # request, i.e. each reconcile pass, every second.
        "log_type notice",
        "connection_messages true",
        "log_timestamp true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        # Limits (models.py says why each is what it is). A client sending a packet over
        # max_packet_size is disconnected as soon as its header is read; `fleetguard
        # broker` reads the notice in this log and counts it against the device.
        f"max_packet_size {config.max_packet_bytes}",
        # A session's queue beyond what is in flight, whichever limit comes first; past
        # it Mosquitto drops messages for that client (and logs it once).
        f"max_queued_messages {config.max_queued_messages}",
        f"max_queued_bytes {config.max_queued_bytes}",
        f"max_inflight_bytes {config.max_inflight_bytes}",
        f"plugin {_check_path(plugin)}",
        f"plugin_opt_config_file {_check_path(files.dynsec_file)}",
        "",
        f"listener {files.port} {files.host}",
        "protocol mqtt",
        f"certfile {files.tls_cert}",
        f"keyfile {files.tls_key}",
        f"cafile {files.ca_bundle}",
        f"crlfile {files.crl_file}",
        "require_certificate true",
        "use_identity_as_username true",
        # The client id is the username (the CN), whatever the client sent: no client can
        # take over another identity's session. Without it a device connecting with
        # another's id (or the platform's) disconnects that client; dynsec's own clientid
        # binding is checked with passwords only, never for certificate identities.
        "use_username_as_clientid true",
        "tls_version tlsv1.2",
        "",
    ]
    return "\n".join(lines)


def initial_dynsec(
    service_name: str, admin_name: str = DEFAULT_ADMIN_NAME
) -> dict[str, Any]:
    """The plugin's first state: the admin identity administers it, the service identity
    reads the devices' topics and sends commands; all else is denied."""
    return {
        "defaultACLAccess": dict(_acl.DEFAULT_ACL_ACCESS),
        "clients": [_platform_client(admin_name, _acl.ADMIN_ROLE),
                    _platform_client(service_name, _acl.SERVICE_ROLE)],
        "groups": [],
        "roles": [
            {"rolename": _acl.ADMIN_ROLE, "textname": "fleetguard: dynamic security admin",
             "acls": _acl.admin_acls()},
            {"rolename": _acl.SERVICE_ROLE, "textname": "fleetguard: the platform",
             "acls": _acl.service_acls()},
        ],
    }


def _platform_client(name: str, role: str) -> dict[str, Any]:
    # No password: the broker takes the name from the certificate and never asks for one.
    # No clientid: dynsec checks it only beside a password; use_username_as_clientid binds it.
    return {
        "username": name,
        "textname": "fleetguard platform (certificate identity)",
        "roles": [{"rolename": role, "priority": 0}],
    }


def _merge_dynsec(
    state: dict[str, Any], files: BrokerFiles, entitled: Collection[str] | None = None
) -> dict[str, Any]:
    """Keep the plugin's state, but put our baseline (admin, service, deny) back, and, given
    the ``entitled`` devices, their clients and roles as the sync loop would leave them.

    The admin and service roles are our identities' alone: any other client or group
    loses them, and the service identity is no admin (before, it held both roles).
    """
    fresh = initial_dynsec(files.service_name, files.admin_name)
    state["defaultACLAccess"] = fresh["defaultACLAccess"]
    ours = {r["rolename"]: r for r in fresh["roles"]}
    roles = [r for r in state.get("roles", []) if r.get("rolename") not in ours]
    state["roles"] = roles + list(ours.values())
    names = {files.service_name, files.admin_name}
    clients = [c for c in state.get("clients", []) if c.get("username") not in names]
    state["clients"] = [*clients, *fresh["clients"]]
    state.setdefault("groups", [])
    for entry in [*clients, *state["groups"]]:
        if isinstance(entry, dict) and isinstance(entry.get("roles"), list):
            entry["roles"] = [r for r in entry["roles"]
                              if not isinstance(r, dict) or r.get("rolename") not in ours]
    if entitled is not None:
        _put_devices(state, entitled)
    return state


def _put_devices(state: dict[str, Any], entitled: Collection[str]) -> None:
    """Device clients and roles written straight into the file, before the broker starts.

    The plugin's cost per command grows with what it holds (a createRole took 0.7 ms
    beside 200 roles and 7.8 ms beside 10,000, more with ACLs and clients), so
    provisioning 10,000 devices command by command on a fresh broker takes many minutes.
    Written here, the sync loop's first pass finds nothing to do; it still corrects
    whatever differs. Non-device clients and roles are left as they are.
    """
    wanted = set(entitled)
    roles = [r for r in state["roles"]
             if _acl.device_of_role(str(r.get("rolename", ""))) is None]
    roles += [{"rolename": _acl.device_role(d), "acls": _acl.device_acls(d)}
              for d in sorted(wanted)]
    clients = [c for c in state["clients"]
               if _acl.canonical_device_id(str(c.get("username", ""))) is None]
    clients += [{"username": d, "textname": "fleetguard device",
                 "roles": [{"rolename": _acl.device_role(d), "priority": 0}]}
                for d in sorted(wanted)]
    state["roles"], state["clients"] = roles, clients


def _write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    write_atomic(path, data, mode=mode)


def _read_own_file(path: Path) -> bytes:
    """A file the broker's account may have replaced: never through a link it left."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _ensure_dynsec(files: BrokerFiles, entitled: Collection[str] | None = None) -> None:
    if files.dynsec_file.exists() or files.dynsec_file.is_symlink():
        try:
            state = json.loads(_read_own_file(files.dynsec_file))
            if not isinstance(state, dict):
                raise ValueError("not a JSON object")
        except (ValueError, OSError) as exc:
            raise BrokerConfigError(
                f"{files.dynsec_file} is unreadable ({exc}); move it away to start afresh "
                "(the platform re-creates every device's access within a second)"
            ) from exc
        state = _merge_dynsec(state, files, entitled)
    else:
        state = _merge_dynsec({}, files, entitled)
    _write_private(files.dynsec_file, json.dumps(state, indent=2).encode() + b"\n")


def write_broker_files(
    settings: Settings, ca: FleetCA, config: BrokerConfig, *, plugin: Path,
    entitled: Collection[str] | None = None,
) -> BrokerFiles:
    """Write the config, the dynsec baseline and the platform's identities (idempotent); with
    ``entitled``, those devices' clients and roles too (and no other device's).

    Call it while the broker is stopped: the plugin owns the dynsec file while it runs.
    """
    files = broker_files(settings, ca, config)
    for directory in (files.directory, files.state_dir, files.service_cert.parent,
                      files.admin_cert.parent, files.tls_cert.parent):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    missing = [p for p in (files.ca_bundle, files.crl_file, settings.server_cert_file)
               if not p.exists()]
    if missing:
        raise BrokerConfigError(
            f"the installation lacks {', '.join(map(str, missing))} (run `fleetguard init`)"
        )
    account = choose_broker_account(config.run_as)
    renew_tls_identity(files, ca)
    ensure_platform_identities(files, ca)
    _ensure_dynsec(files, entitled)
    _write_private(files.config_file, render_config(files, config, plugin, account.name).encode())
    # Earlier versions opened the platform's own TLS key to the broker's account.
    refused = grant_broker_access(files, settings.data_dir, account,
                                  withdraw=(settings.tls_dir, settings.server_key_file))
    if refused is not None:
        if config.run_as is not None:
            raise BrokerConfigError(f"the broker cannot run as {account.name!r}: {refused}")
        root = pwd.getpwuid(os.geteuid()).pw_name
        log.warning("the broker keeps %s: %s. Put the data dir where %r can reach it (under "
                    "/var/lib, say), or run fleetguard as an unprivileged account",
                    root, refused, account.name)
        _write_private(files.config_file, render_config(files, config, plugin, root).encode())
        return dataclasses.replace(files, run_as=root)
    if account.uid == 0 and config.run_as is not None:
        log.warning("the broker runs as root, as asked; prefer an account of its own")
    return dataclasses.replace(files, run_as=account.name)
