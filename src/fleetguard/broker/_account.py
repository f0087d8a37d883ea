"""Which account Mosquitto runs as, and the least access to the data dir it needs.

Started as root, mosquitto switches to the account named by ``user`` before it reads its
certificates, key, CRL and dynsec file, so that account must reach them; it re-reads the
CRL (and its config) on SIGHUP, still as that account.

Started by root, fleetguard runs the broker as ``mosquitto`` (the account the Debian package
creates): a process that parses untrusted TLS and MQTT should not hold root. Inside the
data dir that account gets no more than it needs, through the directories' and files'
group (set to the account's own group, and only where the group bits were empty):

    data dir, ca/, ca/crl/, broker/,         traverse only (g+x): nothing can be listed
    broker/tls/
    broker/tls/broker.key,                   read (g+r); certificates and CRLs are already
    broker/mosquitto.conf                    world-readable (0644)
    broker/state/                            owned by it: the plugin rewrites dynsec.json,
                                             the broker its persistence file

Everything else stays the owner's alone: the master key, the database, the CA's keys,
the platform's own TLS key (``tls/server.key``: the broker has a key of its own) and MQTT
identities (``broker/service``, ``broker/admin``), the broker's log. Earlier versions
opened ``tls/`` and ``tls/server.key`` to the account; that is withdrawn (``withdraw``) on
every start.

Directories above the data dir are not ours to change. When one of them keeps the account
out (``/root`` is 0700, so a data dir under root's home is out of reach) and the account
was not asked for by name, the broker keeps root and says why; asked for by name, that
is an error.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fleetguard.broker.errors import BrokerConfigError
from fleetguard.broker.models import BrokerFiles

log = logging.getLogger(__name__)

BROKER_ACCOUNT = "mosquitto"


@dataclass(frozen=True, slots=True)
class BrokerAccount:
    name: str
    uid: int
    gid: int
    groups: frozenset[int]

    @classmethod
    def of(cls, entry: pwd.struct_passwd) -> BrokerAccount:
        groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)

    def may(self, st: os.stat_result, want: int) -> bool:
        """Whether the mode bits give this account ``want`` (an ``os.R_OK | os.X_OK`` mix)."""
        if self.uid == 0:
            return True
        mode = st.st_mode
        if st.st_uid == self.uid:
            bits = (mode >> 6) & 7
        elif st.st_gid in self.groups:
            bits = (mode >> 3) & 7
        else:
            bits = mode & 7
        return bits & want == want


def choose_broker_account(requested: str | None) -> BrokerAccount:
    """The account named ``requested``, or by default ``mosquitto`` when we are root and
    it exists, else the current account (only root can start a process as another)."""
    try:
        current = pwd.getpwuid(os.geteuid())
    except KeyError:  # e.g. a bare numeric uid in a container or a sandbox
        raise BrokerConfigError(
            f"uid {os.geteuid()} has no account entry: the broker needs a named account "
            "(give the service a User= that exists, or add the account)"
        ) from None
    if os.geteuid() != 0:
        if requested not in (None, current.pw_name):
            raise BrokerConfigError(
                f"only root can run the broker as {requested!r}; it runs as {current.pw_name!r}"
            )
        return BrokerAccount.of(current)
    name = requested or BROKER_ACCOUNT
    try:
        return BrokerAccount.of(pwd.getpwnam(name))
    except KeyError:
        if requested is None:
            log.warning("no %r account to run the broker as: it keeps root (create the "
                        "account, or pass --run-as)", BROKER_ACCOUNT)
            return BrokerAccount.of(current)
        raise BrokerConfigError(f"no account {requested!r} to run the broker as") from None


def _closed_directory(directory: Path, account: BrokerAccount) -> Path | None:
    """The first directory from ``/`` down to ``directory`` the account cannot traverse."""
    for depth in range(1, len(directory.parts) + 1):
        step = Path(*directory.parts[:depth])
        if not account.may(step.stat(), os.X_OK):
            return step
    return None


def _group_grant(path: Path, account: BrokerAccount, want: int) -> tuple[bool, bool]:
    """(possible, needed): whether the account can be given ``want`` on ``path`` through
    the group, and whether that is needed. Not possible where the group bits give
    something to another group already, or where the path is not ours."""
    st = path.stat()
    if account.may(st, want):
        return True, False
    return st.st_uid == os.geteuid() and not stat.S_IMODE(st.st_mode) & 0o070, True


def _widen_group(path: Path, account: BrokerAccount, want: int) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    os.chown(path, -1, account.gid)
    os.chmod(path, mode | (want << 3))


class _Refused(Exception):
    """Why the account cannot be given what the broker needs (nothing was opened)."""


@dataclass
class _Plan:
    """What to open: group bits per path, the directories traversed, the files read."""

    changes: dict[Path, int] = field(default_factory=dict)
    chain_dirs: set[Path] = field(default_factory=set)
    needed: set[Path] = field(default_factory=set)


def _ensure_traversable(directory: Path, account: BrokerAccount) -> None:
    closed = _closed_directory(directory, account)
    if closed is not None:
        raise _Refused(f"{closed} is not traversable by {account.name!r}")


def _check_outside(path: Path, account: BrokerAccount) -> None:
    """A file configured outside the data dir: checked, never changed."""
    _ensure_traversable(path.parent, account)
    if not account.may(path.stat(), os.R_OK):
        raise _Refused(f"{path} is not readable by {account.name!r}")


def _plan_inside(path: Path, data_dir: Path, account: BrokerAccount, plan: _Plan) -> None:
    """Traverse each directory from the data dir down to ``path``, and read ``path``."""
    steps = [(d, os.X_OK) for d in reversed(path.parents) if d.is_relative_to(data_dir)]
    plan.chain_dirs.update(d for d, _ in steps)
    plan.needed.add(path)
    for target, want in [*steps, (path, os.R_OK)]:
        possible, missing = _group_grant(target, account, want)
        if not possible:
            raise _Refused(f"{target} is out of reach of {account.name!r}, and its group "
                           "permissions are already given to another group")
        if missing:
            plan.changes[target] = plan.changes.get(target, 0) | want


def _to_close(plan: _Plan, state_dir: Path, account: BrokerAccount) -> list[Path]:
    """Entries of the opened directories that the account could reach once they open:
    each is closed to other accounts (it was out of reach behind a 0700 directory)."""
    keep = {*plan.chain_dirs, *plan.needed, state_dir}
    closings = []
    for directory in sorted(plan.chain_dirs):
        for entry in directory.iterdir():
            st = entry.lstat()
            if entry in keep or stat.S_ISLNK(st.st_mode):
                continue
            if account.may(st, os.R_OK) or (stat.S_ISDIR(st.st_mode)
                                            and account.may(st, os.X_OK)):
                if st.st_uid != os.geteuid():
                    raise _Refused(
                        f"{entry} would be within reach of {account.name!r} and is not ours"
                    )
                closings.append(entry)
    return closings


def grant_broker_access(
    files: BrokerFiles, data_dir: Path, account: BrokerAccount, *,
    withdraw: Sequence[Path] = (),
) -> str | None:
    """Open to ``account`` what the broker reads and writes; ``None`` when done, else why
    not (and then nothing was opened).

    ``withdraw``: paths the account no longer needs; where their group is the account's,
    the group's bits are cleared first, whatever else happens.

    Call it after the files are written: the dynsec file is handed to the account.
    """
    if account.uid == os.geteuid():
        return None
    for path in withdraw:
        _withdraw_group(path, account)
    data_dir = data_dir.resolve()
    plan = _Plan()
    try:
        _ensure_traversable(data_dir.parent, account)
        for path in (files.tls_cert, files.tls_key, files.ca_bundle, files.crl_file,
                     files.config_file):
            path = path.resolve()
            if path.is_relative_to(data_dir):
                _plan_inside(path, data_dir, account, plan)
            else:
                _check_outside(path, account)
        closings = _to_close(plan, files.state_dir.resolve(), account)
    except _Refused as refused:
        return str(refused)
    for target, want in plan.changes.items():
        _widen_group(target, account, want)
    for entry in closings:
        os.chmod(entry, stat.S_IMODE(entry.lstat().st_mode) & ~0o077)
    if closings:
        log.info("closed to other accounts, now that %r may traverse their directories: %s",
                 account.name, ", ".join(str(e.relative_to(data_dir)) for e in closings))
    _hand_over(files.state_dir, account)
    return None


def _withdraw_group(path: Path, account: BrokerAccount) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if (stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid() or st.st_gid != account.gid
            or not mode & 0o070):
        return
    os.chmod(path, mode & ~0o070)
    log.info("%s is no longer open to %r", path, account.name)


def _hand_over(state_dir: Path, account: BrokerAccount) -> None:
    """The state directory and the files in it belong to the account (0700 / 0600).

    The account could have left a link there pointing at a file of root's: nothing is
    followed (``O_NOFOLLOW``), and what is not a plain file is left alone.
    """
    os.chown(state_dir, account.uid, account.gid)
    os.chmod(state_dir, 0o700)
    for entry in state_dir.iterdir():
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:  # a link (ELOOP), or gone
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.fchown(fd, account.uid, account.gid)
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
