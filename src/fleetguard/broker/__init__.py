"""Mosquitto 2 for the fleet: configuration, the process, and per-device permissions.

Typical use (what ``fleetguard broker`` does)::

    files = prepare_broker(settings, ca, BrokerConfig(port=8883))
    with broker_process(files) as process, run_broker_sync(db, files, process=process, ca=ca):
        ...  # devices connect with their certificates; revocations cut them off

or in one step: ``with running_broker(settings, ca, db, config): ...``.

The broker accepts mutual TLS only and names each client by its certificate's CN, as
username and as client id (no client can take over another's session). The dynamic
security plugin, driven by the admin identity's sync loop over
``$CONTROL/dynamic-security/v1``, lets each entitled device publish only
``fg/d/<uuid>/{telemetry,heartbeat,cmd/result}`` and subscribe only to
``fg/d/<uuid>/cmd``; the service identity (ingestion) reads ``fg/d/+/#`` and sends
commands, and is no admin.
"""

from fleetguard.broker._access import ensure_broker_baseline, reconcile_broker_access
from fleetguard.broker._acl import (
    ADMIN_ROLE,
    CONTROL_TOPIC,
    DEFAULT_ACL_ACCESS,
    RESPONSE_TOPIC,
    SERVICE_ROLE,
    device_acls,
    device_role,
)
from fleetguard.broker._config import find_dynsec_plugin, find_mosquitto, initial_dynsec
from fleetguard.broker._dynsec import DynsecAdmin
from fleetguard.broker._process import BrokerProcess
from fleetguard.broker.models import (
    DEFAULT_ADMIN_NAME,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_SERVICE_NAME,
    BrokerConfig,
    BrokerFiles,
    ReconcileReport,
)
from fleetguard.broker.service import (
    BrokerSync,
    BrokerSyncThread,
    broker_process,
    connect_admin,
    ensure_mosquitto,
    prepare_broker,
    run_broker_sync,
    running_broker,
)

__all__ = [
    "ADMIN_ROLE",
    "CONTROL_TOPIC",
    "DEFAULT_ACL_ACCESS",
    "DEFAULT_ADMIN_NAME",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_SERVICE_NAME",
    "RESPONSE_TOPIC",
    "SERVICE_ROLE",
    "BrokerConfig",
    "BrokerFiles",
    "BrokerProcess",
    "BrokerSync",
    "BrokerSyncThread",
    "DynsecAdmin",
    "ReconcileReport",
    "broker_process",
    "connect_admin",
    "device_acls",
    "device_role",
    "ensure_broker_baseline",
    "ensure_mosquitto",
    "find_dynsec_plugin",
    "find_mosquitto",
    "initial_dynsec",
    "prepare_broker",
    "reconcile_broker_access",
    "run_broker_sync",
    "running_broker",
]
