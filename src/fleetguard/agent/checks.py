"""A few real posture checks the agent runs on the device (the ``run_checks`` command).

Small and honest on purpose: each check reads one well-defined thing and says ``pass``,
``fail``, ``not_applicable`` (the thing does not exist here) or ``error`` (it exists but
could not be read, e.g. the agent runs without root and ``/etc/shadow`` is closed).

Check ids (stable):

=================================  =====================================================
``net.telnet_listening``           a TCP listener on 23 or 2323 (cleartext logins)
``net.ftp_listening``              a TCP listener on 21 (cleartext logins)
``fs.passwd_world_writable``       /etc/passwd is writable by others
``fs.shadow_world_readable``       /etc/shadow is readable by others
``ssh.permit_root_login``          sshd's effective PermitRootLogin is ``yes``
``ssh.password_authentication``    sshd allows passwords (OpenSSH's default is yes)
``accounts.default_names``         a login account named like a vendor default
``accounts.empty_password``        a login account with an empty password (needs root)
=================================  =====================================================

The sshd reading follows sshd's rule that the *first* value of a keyword wins, reads
``Include`` files (globs, relative to /etc/ssh) in place, and ignores ``Match`` blocks
(it judges the global setting). It does not run ``sshd -T``.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from fleetguard.protocol import MAX_DETAIL_CHARS, CheckOutcome, CheckStatus

# Names shipped as defaults by IoT vendors and distributions (Mirai's dictionary and
# common images); a match is a finding only for an account with a login shell.
DEFAULT_ACCOUNT_NAMES = frozenset({
    "admin", "administrator", "user", "guest", "support", "default", "service", "tech",
    "ubnt", "pi", "test", "operator", "supervisor", "mother", "666666", "888888",
    "admin1", "root1", "vagrant",
})
_NO_LOGIN_SHELLS = ("nologin", "false", "sync", "shutdown", "halt")


@dataclass(frozen=True, slots=True)
class CheckEnvironment:
    """Where the checks look; tests point it at a temporary tree."""

    etc: Path = Path("/etc")
    listening_ports: Callable[[], set[int] | None] | None = None

    def tcp_listening(self) -> set[int] | None:
        if self.listening_ports is not None:
            return self.listening_ports()
        try:
            return {
                c.laddr.port for c in psutil.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr
            }
        except (psutil.Error, OSError):
            return None


Check = Callable[[CheckEnvironment], CheckOutcome]


def _outcome(check_id: str, status: CheckStatus, detail: str | None = None) -> CheckOutcome:
    return CheckOutcome(
        check_id=check_id, status=status,
        detail=None if detail is None else detail[:MAX_DETAIL_CHARS],
    )


def _port_check(check_id: str, ports: tuple[int, ...], service: str) -> Check:
    def run(env: CheckEnvironment) -> CheckOutcome:
        listening = env.tcp_listening()
        if listening is None:
            return _outcome(check_id, CheckStatus.ERROR, "cannot list listening sockets")
        found = sorted(set(ports) & listening)
        if found:
            return _outcome(check_id, CheckStatus.FAIL,
                            f"{service} listening on TCP {', '.join(map(str, found))}")
        return _outcome(check_id, CheckStatus.PASS)

    return run


def _mode_check(check_id: str, name: str, bit: int, what: str) -> Check:
    def run(env: CheckEnvironment) -> CheckOutcome:
        path = env.etc / name
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            return _outcome(check_id, CheckStatus.NOT_APPLICABLE, f"no {path}")
        except OSError as exc:
            return _outcome(check_id, CheckStatus.ERROR, f"{path}: {exc.strerror}")
        if mode & bit:
            return _outcome(check_id, CheckStatus.FAIL,
                            f"{path} is {what} by others (mode {stat.S_IMODE(mode):04o})")
        return _outcome(check_id, CheckStatus.PASS, f"mode {stat.S_IMODE(mode):04o}")

    return run


def sshd_settings(etc: Path) -> dict[str, str] | None:
    """Global sshd keywords (lowercased) with their first value; None without sshd_config."""
    main = etc / "ssh" / "sshd_config"
    if not main.is_file():
        return None
    settings: dict[str, str] = {}
    _read_sshd(main, etc / "ssh", settings, depth=0)
    return settings


def _read_sshd(path: Path, base: Path, settings: dict[str, str], depth: int) -> bool:
    """Read one file into ``settings``; False once a Match block starts (global part over)."""
    if depth > 8:
        return True
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return True
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace("=", " ", 1).split(None, 1)
        keyword = parts[0].lower()
        value = parts[1].strip().strip('"') if len(parts) > 1 else ""
        if keyword == "match":
            return False
        if keyword == "include":
            for pattern in value.split():
                full = pattern if os.path.isabs(pattern) else str(base / pattern)
                for name in sorted(glob.glob(full)):
                    if not _read_sshd(Path(name), base, settings, depth + 1):
                        return False
            continue
        settings.setdefault(keyword, value.lower())
    return True


def _sshd_check(check_id: str, keyword: str, default: str) -> Check:
    """Fails where sshd's ``keyword`` is yes, set so or by OpenSSH's ``default``."""
    def run(env: CheckEnvironment) -> CheckOutcome:
        settings = sshd_settings(env.etc)
        if settings is None:
            return _outcome(check_id, CheckStatus.NOT_APPLICABLE, "no sshd_config")
        given = settings.get(keyword.lower())
        value = default if given is None else given
        if value != "yes":
            return _outcome(check_id, CheckStatus.PASS, f"{keyword} {value}")
        if given is None:
            return _outcome(check_id, CheckStatus.FAIL,
                            f"{keyword} not set: OpenSSH defaults to yes")
        return _outcome(check_id, CheckStatus.FAIL, f"{keyword} yes")

    return run


def _login_accounts(etc: Path) -> list[str] | None:
    try:
        lines = (etc / "passwd").read_text(errors="replace").splitlines()
    except OSError:
        return None
    accounts = []
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 7 and not fields[6].strip().endswith(_NO_LOGIN_SHELLS):
            accounts.append(fields[0])
    return accounts


def _default_names(env: CheckEnvironment) -> CheckOutcome:
    check_id = "accounts.default_names"
    accounts = _login_accounts(env.etc)
    if accounts is None:
        return _outcome(check_id, CheckStatus.ERROR, "cannot read /etc/passwd")
    found = sorted(a for a in accounts if a.lower() in DEFAULT_ACCOUNT_NAMES)
    if found:
        return _outcome(check_id, CheckStatus.FAIL,
                        f"login account(s) with default-looking names: {', '.join(found)}")
    return _outcome(check_id, CheckStatus.PASS)


def _empty_passwords(env: CheckEnvironment) -> CheckOutcome:
    check_id = "accounts.empty_password"
    accounts = _login_accounts(env.etc)
    if accounts is None:
        return _outcome(check_id, CheckStatus.ERROR, "cannot read /etc/passwd")
    try:
        shadow = (env.etc / "shadow").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return _outcome(check_id, CheckStatus.NOT_APPLICABLE, "no /etc/shadow")
    except OSError as exc:
        return _outcome(check_id, CheckStatus.ERROR,
                        f"cannot read /etc/shadow ({exc.strerror}); needs root")
    logins = set(accounts)
    empty = sorted(
        fields[0] for fields in (line.split(":") for line in shadow)
        if len(fields) >= 2 and fields[0] in logins and fields[1] == ""
    )
    if empty:
        return _outcome(check_id, CheckStatus.FAIL,
                        f"login account(s) without a password: {', '.join(empty)}")
    return _outcome(check_id, CheckStatus.PASS)


CHECKS: dict[str, Check] = {
    "net.telnet_listening": _port_check("net.telnet_listening", (23, 2323), "telnet"),
    "net.ftp_listening": _port_check("net.ftp_listening", (21,), "ftp"),
    "fs.passwd_world_writable": _mode_check(
        "fs.passwd_world_writable", "passwd", stat.S_IWOTH, "writable"),
    "fs.shadow_world_readable": _mode_check(
        "fs.shadow_world_readable", "shadow", stat.S_IROTH, "readable"),
    "ssh.permit_root_login": _sshd_check(  # OpenSSH >= 7.0 default
        "ssh.permit_root_login", "PermitRootLogin", "prohibit-password"),
    "ssh.password_authentication": _sshd_check(
        "ssh.password_authentication", "PasswordAuthentication", "yes"),
    "accounts.default_names": _default_names,
    "accounts.empty_password": _empty_passwords,
}


def run_checks(
    check_ids: Sequence[str] | None = None, env: CheckEnvironment | None = None
) -> list[CheckOutcome]:
    """Run the named checks (all when None); an unknown id gives ``not_applicable``."""
    env = env or CheckEnvironment()
    outcomes = []
    for check_id in _unique(check_ids if check_ids is not None else list(CHECKS)):
        check = CHECKS.get(check_id)
        if check is None:
            outcomes.append(_outcome(check_id, CheckStatus.NOT_APPLICABLE,
                                     "unknown check on this agent"))
            continue
        try:
            outcomes.append(check(env))
        except Exception as exc:  # a broken check must not hide the others
            outcomes.append(_outcome(check_id, CheckStatus.ERROR, type(exc).__name__))
    return outcomes


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))
