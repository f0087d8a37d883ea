"""packaging/: the server's and the broker's systemd units run unprivileged, sandboxed, and
stay that way.

The exposure figure is systemd's own score (``systemd-analyze security``, 0 = locked down,
10 = unprotected); both units reached 1.1 with systemd 252, and what is left is the network
itself (devices, operators and scans need it), Unix sockets, the host's root directory and
ProtectClock='s read-only access to the RTC. A change that loosens the unit fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
UNIT = PACKAGING / "fleetguard.service"
UNITS = {"serve": UNIT, "broker": PACKAGING / "fleetguard-broker.service"}
SYSUSERS = PACKAGING / "sysusers.d" / "fleetguard.conf"
TMPFILES = PACKAGING / "tmpfiles.d" / "fleetguard.conf"
MAX_EXPOSURE = 1.1
# What systemd 252 still flags, and why it stays: the service must reach the network
# (devices, operators, scans anywhere: no IP allow list by default) and Unix sockets; it
# runs in the host's root; ProtectClock= itself grants read access to the RTC device.
# A setting that scores less than 0.1 on its own (MemoryDenyWriteExecute=, an extra
# address family) does not move the figure, so any newly flagged item fails as well.
ACCEPTED_FLAGS = frozenset({
    "PrivateNetwork=", "IPAddressDeny=", "RestrictAddressFamilies=~AF_(INET|INET6)",
    "RestrictAddressFamilies=~AF_UNIX", "RootDirectory=/RootImage=", "DeviceAllow=",
})
STATE_DIR = "/var/lib/fleetguard"
ACCOUNT = "fleetguard"
# Settings that make another path writable, or run a command with full privileges.
WRITABLE = ("ReadWritePaths", "BindPaths", "RuntimeDirectory", "CacheDirectory",
            "LogsDirectory", "ConfigurationDirectory")
EXEC_KEYS = ("ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop",
             "ExecStopPost", "ExecCondition")


def unit_settings(path: Path) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every assignment in order, as systemd reads them: comments and
    blank lines skipped, backslash continuations joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: setting outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not a setting: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def effective(values: list[str]) -> list[str]:
    """A list setting after systemd's rule that an empty assignment resets it."""
    result: list[str] = []
    for value in values:
        result = [] if value == "" else [*result, *value.split()]
    return result


def _systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    return tool


@pytest.mark.parametrize("command", sorted(UNITS))
def test_exposure_stays_at_or_below_the_recorded_figure(command: str) -> None:
    tool = _systemd_analyze()
    done = subprocess.run(
        [tool, "security", "--offline=true", "--no-pager", str(UNITS[command])],
        capture_output=True, text=True, encoding="utf-8", errors="replace", check=False,
        env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "cat"},
    )
    if "--offline" in done.stderr and ("unrecognized" in done.stderr
                                       or "unknown" in done.stderr.lower()):
        pytest.skip("this systemd-analyze has no offline mode (systemd < 250)")
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout)
    assert match, f"no exposure line (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    exposure = float(match.group(1))
    flagged = [line.strip() for line in done.stdout.splitlines() if line.lstrip().startswith("✗")]
    assert exposure <= MAX_EXPOSURE, (
        f"exposure {exposure} > {MAX_EXPOSURE}; flagged:\n" + "\n".join(flagged)
    )
    names = {line.split()[1] for line in flagged}
    assert names <= ACCEPTED_FLAGS, f"newly flagged: {sorted(names - ACCEPTED_FLAGS)}"


@pytest.mark.parametrize("command", sorted(UNITS))
def test_the_unit_never_runs_as_root_and_writes_only_its_state_dir(command: str) -> None:
    service = unit_settings(UNITS[command])["Service"]

    def one(key: str) -> str | None:
        values = service.get(key)
        return values[-1] if values else None

    assert one("User") == ACCOUNT and one("Group") == ACCOUNT
    assert one("DynamicUser") in (None, "no")
    assert effective(service.get("CapabilityBoundingSet", ["~"])) == []
    assert effective(service.get("AmbientCapabilities", [])) == []
    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("ProtectHome") in ("yes", "tmpfs")
    assert one("PrivateTmp") == "yes"
    assert one("PrivateDevices") == "yes"
    assert one("RestrictSUIDSGID") == "yes"
    assert one("UMask") == "0077"
    # The data dir is the only writable path: StateDirectory= (under /var/lib), nothing else.
    assert effective(service["StateDirectory"]) == [ACCOUNT]
    assert one("StateDirectoryMode") == "0700"
    for key in WRITABLE:
        assert not effective(service.get(key, [])), f"{key}= makes another path writable"
    assert "PermissionsStartOnly" not in service
    # '+' and '!' run a command with full privileges, outside the sandbox.
    for key in EXEC_KEYS:
        for line in service.get(key, []):
            assert not line.lstrip("-@:|").startswith(("+", "!")), f"{key}={line}"
    [start] = service["ExecStart"]
    assert start.startswith(
        f"/opt/fleetguard/bin/fleetguard {command} --data-dir ${{STATE_DIRECTORY}}"
    )


def test_the_account_and_its_dir_match_the_unit() -> None:
    [account] = [line.split() for line in SYSUSERS.read_text().splitlines()
                 if line.strip() and not line.startswith("#")]
    assert account[0] == "u" and account[1] == ACCOUNT and account[2] == "-"
    assert STATE_DIR in account and "/usr/sbin/nologin" in account
    [directory] = [line.split() for line in TMPFILES.read_text().splitlines()
                   if line.strip() and not line.startswith("#")]
    assert directory[:5] == ["d", STATE_DIR, "0700", ACCOUNT, ACCOUNT]


@pytest.mark.skipif(os.geteuid() != 0, reason="systemd-tmpfiles must chown: needs root")
def test_sysusers_and_tmpfiles_make_the_account_and_a_0700_dir(tmp_path: Path) -> None:
    sysusers, tmpfiles = shutil.which("systemd-sysusers"), shutil.which("systemd-tmpfiles")
    if sysusers is None or tmpfiles is None:
        pytest.skip("systemd-sysusers or systemd-tmpfiles is not installed")
    (tmp_path / "etc").mkdir()
    (tmp_path / "var" / "lib").mkdir(parents=True)
    subprocess.run([sysusers, f"--root={tmp_path}", str(SYSUSERS)], check=True,
                   capture_output=True)
    entry = next(line.split(":") for line in (tmp_path / "etc" / "passwd").read_text().splitlines()
                 if line.startswith(f"{ACCOUNT}:"))
    uid, gid = int(entry[2]), int(entry[3])
    assert uid != 0 and gid != 0 and entry[5] == STATE_DIR
    subprocess.run([tmpfiles, f"--root={tmp_path}", "--create", str(TMPFILES)], check=True,
                   capture_output=True)
    made = (tmp_path / STATE_DIR.lstrip("/")).stat()
    assert (made.st_uid, made.st_gid, made.st_mode & 0o7777) == (uid, gid, 0o700)


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` in a root that has the program the units start."""
    tool = _systemd_analyze()
    system_units = Path("/usr/lib/systemd/system")
    if not (system_units / "multi-user.target").exists():
        pytest.skip("no systemd unit directory to verify against")
    program = tmp_path / "opt" / "fleetguard" / "bin" / "fleetguard"
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    shutil.copytree(system_units, tmp_path / "usr" / "lib" / "systemd" / "system",
                    symlinks=True)
    installed = tmp_path / "etc" / "systemd" / "system"
    installed.mkdir(parents=True)
    for unit in UNITS.values():
        shutil.copy(unit, installed / unit.name)
    done = subprocess.run(
        [tool, "verify", f"--root={tmp_path}",
         *(f"/etc/systemd/system/{unit.name}" for unit in UNITS.values())],
        capture_output=True, text=True, check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert done.returncode == 0, done.stderr
    assert not any(unit.name in done.stderr for unit in UNITS.values()), done.stderr
