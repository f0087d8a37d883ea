"""The Debian-service lab: real daemons from Debian packages on 127.0.77.x, weak and hardened.

Each device is one daemon on its own loopback address (disjoint from tests/scan, which uses
127.0.0.x and 127.0.1.x/127.0.2.x). A device whose binary or privilege is missing is kept in
the table with the reason and skipped; every other device still runs.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetguard.scan.credentials import for_service, shipped_credentials
from fleetguard.scan.models import Service

from . import daemons as D

CLEARTEXT = "cleartext-protocol"


@dataclass
class Device:
    address: str
    label: str
    expected: set[str]  # check ids, service-exposed excluded
    tcp: list[int] = field(default_factory=list)
    udp: list[int] = field(default_factory=list)
    skipped: str | None = None  # why this device cannot run on this machine
    failed: str | None = None  # installed and allowed, but did not start: a test failure
    hardened: bool = False

    @property
    def port_spec(self) -> str:
        return ",".join([f"T:{p}" for p in self.tcp] + [f"U:{p}" for p in self.udp])


@dataclass
class DebianLab:
    devices: dict[str, Device]
    pki: D.Pki
    tmp: Path
    secrets: list[str]  # every password/community planted, for the evidence check

    @property
    def running(self) -> list[Device]:
        return [d for d in self.devices.values() if d.skipped is None and d.failed is None]


def default_pair(service: Service, index: int) -> tuple[str, str]:
    """A factory default from the shipped list, inside the default attempt budget (10)."""
    c = for_service(shipped_credentials(), service)[index]
    return c.username, c.password


def strong_password() -> str:
    return secrets.token_hex(16)


def _openssl_allows(addr: str, port: int, flag: str) -> bool:
    """Whether this machine's OpenSSL completes a handshake with ``flag`` (-tls1, -tls1_1)."""
    try:
        out = subprocess.run(
            ["openssl", "s_client", "-connect", f"{addr}:{port}", flag,
             "-cipher", "DEFAULT:@SECLEVEL=0"],
            input=b"", capture_output=True, timeout=10,
            env={"PATH": "/usr/bin:/bin", "OPENSSL_CONF": "/dev/null"},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and b"Cipher is (NONE)" not in out.stdout


@pytest.fixture(scope="module")
def debian_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DebianLab]:
    tmp = tmp_path_factory.mktemp("debianlab")
    runner = D.Runner(tmp)
    devices: dict[str, Device] = {}
    planted: list[str] = []

    def device(
        addr: str,
        label: str,
        expected: set[str],
        start: Callable[[], tuple[list[int], list[int]]],
        *,
        hardened: bool = False,
    ) -> Device:
        dev = Device(addr, label, expected, hardened=hardened)
        devices[addr] = dev
        try:
            dev.tcp, dev.udp = start()
        except D.Unavailable as exc:
            dev.skipped = str(exc)
        except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
            dev.failed = f"{type(exc).__name__}: {exc}"
        return dev

    def tcp(port: int) -> tuple[list[int], list[int]]:
        return [port], []

    try:
        pki = D.Pki(runner.dir("pki"))
        # telnet: busybox telnetd with a device-like login program
        telnet_default = default_pair(Service.TELNET, 2)
        telnet_strong = ("admin", strong_password())
        planted += [telnet_default[1], telnet_strong[1]]
        device(
            "127.0.77.11",
            "busybox telnetd, factory-default login",
            {CLEARTEXT, "default-credentials"},
            lambda: tcp(D.start_telnetd(runner, "127.0.77.11", *telnet_default)),
        )
        device(
            "127.0.77.12",
            "hardened: busybox telnetd, strong password",
            {CLEARTEXT},
            lambda: tcp(D.start_telnetd(runner, "127.0.77.12", *telnet_strong)),
            hardened=True,
        )
        # OpenSSH
        ssh_default = default_pair(Service.SSH, 2)
        planted.append(ssh_default[1])
        device(
            "127.0.77.21",
            "OpenSSH sshd, password login with a factory default",
            {"default-credentials"},
            lambda: tcp(D.start_sshd(runner, "127.0.77.21", password=ssh_default)),
        )
        device(
            "127.0.77.22",
            "hardened: OpenSSH sshd, keys only",
            set(),
            lambda: tcp(D.start_sshd(runner, "127.0.77.22", password=None)),
            hardened=True,
        )
        # lighttpd: basic auth, TLS weaknesses one per listener
        http_default = default_pair(Service.HTTP, 0)
        http_strong = ("admin", strong_password())
        planted += [http_default[1], http_strong[1]]
        weak_tls = {"CipherString": "HIGH:!aNULL:@SECLEVEL=0"}  # lets OpenSSL load weak certs
        device(
            "127.0.77.31",
            "lighttpd HTTP basic auth, factory default",
            {CLEARTEXT, "default-credentials"},
            lambda: tcp(D.start_lighttpd(runner, "127.0.77.31", basic_auth=http_default)),
        )
        device(
            "127.0.77.32",
            "hardened: lighttpd HTTPS basic auth, strong password, good cert",
            set(),
            lambda: tcp(
                D.start_lighttpd(
                    runner,
                    "127.0.77.32",
                    basic_auth=http_strong,
                    tls=pki.leaf("good32", san_ips=("127.0.77.32",)),
                )
            ),
            hardened=True,
        )
        device(
            "127.0.77.33",
            "lighttpd HTTPS, expired certificate",
            {"tls-expired-certificate"},
            lambda: tcp(
                D.start_lighttpd(
                    runner,
                    "127.0.77.33",
                    tls=pki.leaf("expired33", san_ips=("127.0.77.33",), days=(-400, -35)),
                )
            ),
        )
        device(
            "127.0.77.34",
            "lighttpd HTTPS, self-signed certificate",
            {"tls-self-signed-certificate"},
            lambda: tcp(
                D.start_lighttpd(
                    runner,
                    "127.0.77.34",
                    tls=pki.leaf("self34", san_ips=("127.0.77.34",), self_signed=True),
                )
            ),
        )
        device(
            "127.0.77.35",
            "lighttpd HTTPS, RSA-1024 key",
            {"tls-weak-key"},
            lambda: tcp(
                D.start_lighttpd(
                    runner,
                    "127.0.77.35",
                    ssl_conf=weak_tls,
                    tls=pki.leaf("rsa1024", san_ips=("127.0.77.35",), key_bits=1024),
                )
            ),
        )
        device(
            "127.0.77.36",
            "lighttpd HTTPS, SHA-1 signed certificate",
            {"tls-weak-signature"},
            lambda: tcp(
                D.start_lighttpd(
                    runner,
                    "127.0.77.36",
                    ssl_conf=weak_tls,
                    tls=pki.sha1_leaf("sha1", san_ips=("127.0.77.36",)),
                )
            ),
        )
        legacy = device(
            "127.0.77.37",
            "lighttpd HTTPS, TLS 1.0 and 1.1 enabled",
            {"tls-legacy-protocol"},
            lambda: tcp(
                D.start_lighttpd(
                    runner,
                    "127.0.77.37",
                    tls=pki.leaf("legacy37", san_ips=("127.0.77.37",)),
                    ssl_conf={"MinProtocol": "TLSv1", "CipherString": "DEFAULT:@SECLEVEL=0"},
                )
            ),
        )
        if legacy.skipped is None and legacy.failed is None:
            legacy_ok = [
                v
                for v, f in (("TLS 1.0", "-tls1"), ("TLS 1.1", "-tls1_1"))
                if _openssl_allows(legacy.address, legacy.tcp[0], f)
            ]
            if not legacy_ok:
                legacy.skipped = (
                    "this OpenSSL refuses TLS 1.0 and 1.1 even at SECLEVEL=0 "
                    "(openssl s_client -tls1/-tls1_1 fail): no legacy server possible"
                )
            legacy.label += f" ({', '.join(legacy_ok) or 'none'} negotiable here)"
        device(
            "127.0.77.38",
            "lighttpd HTTPS, certificate for another address",
            {"tls-hostname-mismatch"},
            lambda: tcp(
                D.start_lighttpd(
                    runner, "127.0.77.38", tls=pki.leaf("other38", san_ips=("10.77.0.38",))
                )
            ),
        )
        # mosquitto
        device(
            "127.0.77.41",
            "mosquitto, anonymous clients allowed",
            {CLEARTEXT, "no-authentication"},
            lambda: tcp(D.start_mosquitto(runner, "127.0.77.41")),
        )
        device(
            "127.0.77.42",
            "hardened: mosquitto, mutual TLS only",
            set(),
            lambda: tcp(
                D.start_mosquitto(
                    runner,
                    "127.0.77.42",
                    mtls=(pki.ca_file, pki.leaf("mqtt42", san_ips=("127.0.77.42",))),
                )
            ),
            hardened=True,
        )
        # vsftpd
        device(
            "127.0.77.51",
            "vsftpd, anonymous login",
            {CLEARTEXT, "no-authentication"},
            lambda: tcp(D.start_vsftpd(runner, "127.0.77.51", anonymous=True)),
        )
        device(
            "127.0.77.52",
            "hardened: vsftpd, anonymous off, nobody allowed",
            {CLEARTEXT},
            lambda: tcp(D.start_vsftpd(runner, "127.0.77.52", anonymous=False)),
            hardened=True,
        )
        # Net-SNMP
        community = secrets.token_hex(12)
        planted.append(community)
        device(
            "127.0.77.61",
            "snmpd, community 'public'",
            {CLEARTEXT, "snmp-default-community"},
            lambda: ([], [D.start_snmpd(runner, "127.0.77.61", "public")]),
        )
        device("127.0.77.62", "hardened: snmpd, random community", set(),
               lambda: ([], [D.start_snmpd(runner, "127.0.77.62", community)]), hardened=True)  # fmt: skip
        yield DebianLab(devices, pki, tmp, planted)
    finally:
        leftovers = runner.stop_all()
        assert not leftovers, f"processes still running after teardown (killed now): {leftovers}"
