"""Run Mosquitto for the fleet and keep its permissions equal to identity's verdicts.

Mosquitto 2.0.x facts this is built around (``research/trust.md`` section 3):

* a certificate-authenticated client skips the password check, so ``disableClient``
  alone does not keep it out: it reconnects at once;
* the CRL is re-read only on SIGHUP, and only new TLS handshakes consult it;
* dynsec ACLs have no ``%u``/``%c`` patterns: each device gets a role of its own;
* every ACL is evaluated per packet, so removing a client's role takes effect at once.

Given the process, the sync also follows its log (``_logwatch``): a device that sends a
packet over ``max_packet_size`` is disconnected by Mosquitto, and counted here as a
refused message of that device, reason ``too_large``, in the telemetry domain's
per-device rejection counts (:func:`fleetguard.telemetry.rejection_counts`), the same
counts ingestion keeps for the messages it refuses. And while it runs, the broker's TLS
certificate is renewed (then SIGHUP) before it expires.

So cutting a device off is three steps, in this order: SIGHUP after the CRL changed (new
handshakes with the revoked certificate fail), ``disableClient`` (kicks the live session
in every 2.0 version), ``deleteClient``/``deleteRole`` (an unknown username has no
permission at all: even a session that slipped through can neither publish nor
subscribe, and receives nothing, since every default access is deny).
:func:`run_broker_sync` checks every second and at once when the CRL file changes.

Cost at scale: a full pass lists every dynsec client and role (at 10,000 devices, several
megabytes of JSON built by the broker and parsed here) and compares each. So the loop
makes a full pass only when identity's verdicts changed (the set of entitled devices,
or a certificate revoked since the last pass), when the CRL file changed, and every
``full_interval`` (60 s) to repair anything changed behind our back; the other seconds
cost a few indexed queries.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fleetguard.broker._access import ensure_broker_baseline, reconcile_broker_access
from fleetguard.broker._config import (
    find_dynsec_plugin,
    find_mosquitto,
    write_broker_files,
)
from fleetguard.broker._dynsec import DynsecAdmin
from fleetguard.broker._identities import renew_tls_identity
from fleetguard.broker._logwatch import BrokerLogWatch
from fleetguard.broker._process import BrokerProcess
from fleetguard.broker.errors import MosquittoNotFoundError
from fleetguard.broker.models import BrokerConfig, BrokerFiles, ReconcileReport
from fleetguard.core.config import Settings
from fleetguard.core.errors import FleetError
from fleetguard.identity.admission import (
    devices_entitled_to_connect,
    revoked_device_certificates,
)
from fleetguard.identity.service import refresh_crls_if_due
from fleetguard.pki import FleetCA
from fleetguard.protocol import RejectReason
from fleetguard.store import Database
from fleetguard.telemetry import IngestService

log = logging.getLogger(__name__)

RECONCILE_INTERVAL = 1.0
FULL_RECONCILE_INTERVAL = 60.0
CRL_POLL_INTERVAL = 0.2
CRL_REFRESH_INTERVAL = 600.0
TLS_RENEW_CHECK_INTERVAL = 3600.0


# -- files and process --------------------------------------------------------------------


def prepare_broker(
    settings: Settings, ca: FleetCA, config: BrokerConfig | None = None,
    *, db: Database | None = None,
) -> BrokerFiles:
    """Write ``<data_dir>/broker`` (config, dynsec baseline, identities); given the
    database, every entitled device's dynsec client and role as well.

    Idempotent; call it before starting the broker, never while it runs.
    """
    config = config or BrokerConfig()
    entitled: set[str] | None = None
    if db is not None:
        with db.session() as session:
            entitled = devices_entitled_to_connect(session)
    return write_broker_files(settings, ca, config, entitled=entitled,
                              plugin=find_dynsec_plugin(config.dynsec_plugin))


def ensure_mosquitto(config: BrokerConfig | None = None, *, install: bool = True) -> Path:
    """The mosquitto executable; installed with ``apt-get install -y mosquitto`` when it is
    missing, ``install`` is set, we run as root and apt-get exists. Else a clear error."""
    config = config or BrokerConfig()
    try:
        return find_mosquitto(config.mosquitto)
    except MosquittoNotFoundError:
        if config.mosquitto is not None or not install:
            raise
        apt = shutil.which("apt-get")
        if os.geteuid() != 0 or apt is None:
            raise MosquittoNotFoundError(
                "mosquitto is not installed; install it (Debian/Ubuntu: `sudo apt-get install "
                "mosquitto`), or run `fleetguard broker` as root to have it installed"
            ) from None
    log.info("installing mosquitto with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in ([apt, "install", "-y", "mosquitto"], [apt, "update"],
                 [apt, "install", "-y", "mosquitto"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
        if argv[1] == "install" and done.returncode == 0:
            break
    else:
        raise MosquittoNotFoundError(
            f"`apt-get install -y mosquitto` failed: {done.stderr.strip()[-500:]}"
        )
    return find_mosquitto()


def broker_process(files: BrokerFiles, config: BrokerConfig | None = None) -> BrokerProcess:
    """A :class:`BrokerProcess` for ``files`` (not started): ``with broker_process(f): ...``."""
    return BrokerProcess(files, find_mosquitto((config or BrokerConfig()).mosquitto))


def connect_admin(files: BrokerFiles, *, timeout: float = 5.0) -> DynsecAdmin:
    """A connected dynsec admin client, as the admin identity.

    The broker names a client by its certificate: while ``fleetguard broker`` runs, its
    sync loop is that client, and a second admin would take its place (and the loop's
    reconnect take it back). Use :attr:`BrokerSyncThread.admin` there instead.
    """
    admin = DynsecAdmin.for_files(files, timeout=timeout)
    admin.connect()
    return admin


# -- the loop -----------------------------------------------------------------------------


def _crl_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class BrokerSync:
    """Reconcile every ``interval`` seconds, and at once (after ``on_crl_change``, e.g.
    a SIGHUP) when the CRL file changes. One thread drives it; see :func:`run_broker_sync`.
    """

    def __init__(
        self,
        db: Database,
        admin: DynsecAdmin,
        *,
        crl_file: Path,
        on_crl_change: Callable[[], None] | None = None,
        ca: FleetCA | None = None,
        interval: float = RECONCILE_INTERVAL,
        crl_poll: float = CRL_POLL_INTERVAL,
        full_interval: float = FULL_RECONCILE_INTERVAL,
        renew_tls: Callable[[], bool] | None = None,
    ) -> None:
        """``renew_tls``: renews the broker's certificate when due, True when it did
        (then ``on_crl_change`` makes the broker load it); checked once an hour."""
        self._db, self._admin, self._crl_file = db, admin, crl_file
        self._on_crl_change, self._ca = on_crl_change, ca
        self._renew_tls = renew_tls
        self._next_tls_check = time.monotonic() + TLS_RENEW_CHECK_INTERVAL
        self._interval, self._poll = interval, crl_poll
        self._crl = _crl_stamp(crl_file)
        self._revoked: set[str] | None = None
        self._entitled: set[str] | None = None
        self._full_interval = full_interval
        self._next_full = 0.0
        self._next_refresh = 0.0
        self.last_report: ReconcileReport | None = None
        self.last_error: str | None = None
        self.reconciles = 0
        self.skipped = 0

    def crl_changed(self) -> bool:
        stamp = _crl_stamp(self._crl_file)
        if stamp == self._crl:
            return False
        self._crl = stamp
        return True

    def reconcile(self, *, force: bool = True) -> ReconcileReport | None:
        """One pass; devices with a certificate revoked since the last pass are kicked.

        Without ``force``, the pass is skipped (None) when nothing it decides from has
        changed since the last one and a full pass is not yet due.
        """
        with self._db.session() as session:
            revoked = revoked_device_certificates(session)
            entitled = devices_entitled_to_connect(session)
            fresh = set() if self._revoked is None else set(revoked) - self._revoked
            if (not force and not fresh and entitled == self._entitled
                    and time.monotonic() < self._next_full):
                self.skipped += 1
                return None
            report = reconcile_broker_access(
                session, self._admin, kick={revoked[s] for s in fresh}, entitled=entitled
            )
        self._revoked, self._entitled = set(revoked), entitled
        self._next_full = time.monotonic() + self._full_interval
        self.last_report, self.last_error = report, None
        self.reconciles += 1
        if report.changed:
            log.info("broker access: %d entitled; granted %s, removed %s, repaired %s, "
                     "kicked %s", report.entitled, list(report.granted), list(report.removed),
                     list(report.repaired), list(report.kicked))
        return report

    def _refresh_crls(self) -> None:
        if self._ca is None or time.monotonic() < self._next_refresh:
            return
        self._next_refresh = time.monotonic() + CRL_REFRESH_INTERVAL
        with self._db.session() as session:
            if refresh_crls_if_due(session, self._ca):
                log.info("CRLs republished before their nextUpdate")

    def _renew_tls_if_due(self) -> None:
        if self._renew_tls is None or time.monotonic() < self._next_tls_check:
            return
        self._next_tls_check = time.monotonic() + TLS_RENEW_CHECK_INTERVAL
        if self._renew_tls() and self._on_crl_change is not None:
            self._on_crl_change()  # SIGHUP: new handshakes get the new certificate

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set. Errors are logged and retried, never raised."""
        due = 0.0
        while not stop.is_set():
            try:
                self._refresh_crls()
                self._renew_tls_if_due()
                changed = self.crl_changed()
                if changed and self._on_crl_change is not None:
                    self._on_crl_change()
                if changed or time.monotonic() >= due:
                    due = time.monotonic() + self._interval
                    self.reconcile(force=changed)
            except FleetError as exc:
                self._failed(exc.message)
            except Exception as exc:  # a long-running loop never dies of one bad pass
                log.exception("broker sync pass failed")
                self._failed(repr(exc))
            stop.wait(self._poll)

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            log.warning("broker sync: %s (retrying)", message)
        self.last_error = message


class DeviceRejections:
    """Counts a device's refused packets where ingestion counts its refused messages: the
    telemetry domain's rejection counts per device and reason, written by an
    :class:`IngestService` of our own that ingests nothing (no upkeep, no cache), started
    on the first count. ``close()`` writes what is pending."""

    def __init__(self, db: Database, reason: RejectReason = RejectReason.TOO_LARGE) -> None:
        self._db, self._reason = db, reason
        self._ingest: IngestService | None = None
        self._lock = threading.Lock()

    def __call__(self, device_id: str) -> None:
        with self._lock:
            if self._ingest is None:
                self._ingest = IngestService(self._db, max_queue=1, sweep_every_s=None,
                                             compact_every_s=None, exclusive_writer=False)
                self._ingest.start()
            ingest = self._ingest
        ingest.record_rejection(device_id, self._reason)

    def flush(self, timeout: float = 10.0) -> bool:
        """Until every count so far is in the database."""
        return self._ingest is None or self._ingest.flush(timeout)

    def close(self) -> None:
        with self._lock:
            ingest, self._ingest = self._ingest, None
        if ingest is not None:
            ingest.stop()


class BrokerSyncThread:
    """A running :class:`BrokerSync` in a daemon thread, and the broker's log watch when
    there is one; ``stop()`` ends them and the admin.

    ``admin`` is the broker's one admin connection (the broker names clients by their
    certificate, so a second one would take its place); others may send requests on it.
    """

    def __init__(
        self, sync: BrokerSync, admin: DynsecAdmin, *,
        log_watch: BrokerLogWatch | None = None, rejections: DeviceRejections | None = None,
    ) -> None:
        self.sync, self.admin = sync, admin
        self.log_watch, self.rejections = log_watch, rejections
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=sync.run, args=(self._stop,), name="fleetguard-broker-sync", daemon=True
        )

    def start(self) -> BrokerSyncThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.log_watch is not None:
            self.log_watch.stop(timeout)
        if self.rejections is not None:
            self.rejections.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.admin.close()

    def __enter__(self) -> BrokerSyncThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_broker_sync(
    db: Database,
    files: BrokerFiles,
    *,
    process: BrokerProcess | None = None,
    on_crl_change: Callable[[], None] | None = None,
    ca: FleetCA | None = None,
    interval: float = RECONCILE_INTERVAL,
) -> BrokerSyncThread:
    """Connect as the admin identity, set the baseline, reconcile once, and keep
    reconciling in a thread. CRL changes SIGHUP ``process`` (or call ``on_crl_change``,
    e.g. to signal an external broker). With ``ca``, CRLs are republished before they
    expire (an expired CRL makes Mosquitto refuse every device), and the broker's TLS
    certificate is renewed before it does. With ``process``, its log is followed from
    where this run of it began: an oversized packet is counted against the device that
    sent it (:class:`DeviceRejections`).
    """
    if on_crl_change is None and process is not None:
        on_crl_change = process.reload
    if on_crl_change is None:
        log.warning("no way to reload the broker: revoked certificates can reconnect until "
                    "the broker re-reads %s", files.crl_file)
    watch: BrokerLogWatch | None = None
    rejections: DeviceRejections | None = None
    if process is not None:
        rejections = DeviceRejections(db)
        watch = BrokerLogWatch(files.log_file, process.log_offset,
                               on_oversize=rejections).start()
    renew = (lambda: renew_tls_identity(files, ca)) if ca is not None else None
    try:
        admin = connect_admin(files)
        try:
            ensure_broker_baseline(admin, files)
            sync = BrokerSync(db, admin, crl_file=files.crl_file, on_crl_change=on_crl_change,
                              ca=ca, interval=interval, renew_tls=renew)
            sync.reconcile()
        except BaseException:
            admin.close()
            raise
    except BaseException:
        if watch is not None:
            watch.stop()
        if rejections is not None:
            rejections.close()
        raise
    return BrokerSyncThread(sync, admin, log_watch=watch, rejections=rejections).start()


@contextmanager
def running_broker(
    settings: Settings,
    ca: FleetCA,
    db: Database,
    config: BrokerConfig | None = None,
) -> Iterator[tuple[BrokerProcess, BrokerSyncThread]]:
    """Prepare the files, start mosquitto and the sync loop; stop both on exit."""
    config = config or BrokerConfig()
    files = prepare_broker(settings, ca, config, db=db)
    with (
        broker_process(files, config) as process,
        run_broker_sync(db, files, process=process, ca=ca) as sync,
    ):
        yield process, sync
