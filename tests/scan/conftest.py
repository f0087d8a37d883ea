"""The loopback lab: weak devices and hardened twins, each on its own 127.0.0.x address."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from fleetguard.scan.models import Service

from . import lab as L

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


@dataclass
class Device:
    address: str
    tcp: list[int] = field(default_factory=list)
    udp: list[int] = field(default_factory=list)
    expected: set[str] = field(default_factory=set)  # check ids (service-exposed excluded)
    label: str = ""


@dataclass
class LabInfo:
    devices: dict[str, Device]
    creds: dict[str, L.Credential]
    lab: L.Lab
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def tcp_ports(self) -> list[int]:
        return sorted({p for d in self.devices.values() for p in d.tcp})

    @property
    def udp_ports(self) -> list[int]:
        return sorted({p for d in self.devices.values() for p in d.udp})

    def port_spec(self) -> str:
        return ",".join([f"T:{p}" for p in self.tcp_ports] + [f"U:{p}" for p in self.udp_ports])


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_mosquitto(
    tmp: Path, host: str, cred: L.Credential | None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port(host)
    conf = tmp / f"mosq-{host}.conf"
    lines = [f"listener {port} {host}", "user root", "persistence false", "log_dest none"]
    if cred is None:
        lines.append("allow_anonymous true")
    else:
        assert MOSQUITTO_PASSWD is not None
        pw = tmp / f"mosq-{host}.pw"
        subprocess.run(
            [MOSQUITTO_PASSWD, "-b", "-c", str(pw), cred.username, cred.password],
            check=True,
            capture_output=True,
        )
        pw.chmod(0o600)
        lines += ["allow_anonymous false", f"password_file {pw}"]
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("mosquitto did not start")


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    tmp = tmp_path_factory.mktemp("scanlab")
    lb = L.Lab()
    procs: list[subprocess.Popen[bytes]] = []
    devices: dict[str, Device] = {}
    creds = {
        "telnet": L.default_cred(Service.TELNET, 2),
        "ftp": L.default_cred(Service.FTP, 1),
        "http": L.default_cred(Service.HTTP, 0),
        "http_form": L.default_cred(Service.HTTP, 3),
        "rtsp": L.default_cred(Service.RTSP, 1),
        "mqtt": L.default_cred(Service.MQTT, 1),
        "ssh": L.default_cred(Service.SSH, 3),
    }

    def dev(
        addr: str,
        label: str,
        expected: set[str],
        tcp: list[int] | None = None,
        udp: list[int] | None = None,
    ) -> None:
        devices[addr] = Device(addr, tcp or [], udp or [], expected, label)

    cleartext = "cleartext-protocol"
    # weak devices
    dev(
        "127.0.0.21",
        "telnet default login",
        {cleartext, "default-credentials"},
        [lb.tcp("127.0.0.21", L.telnet_login(creds["telnet"]))],
    )
    dev(
        "127.0.0.22",
        "telnet shell without login",
        {cleartext, "no-authentication"},
        [lb.tcp("127.0.0.22", L.telnet_open_shell)],
    )
    dev(
        "127.0.0.23",
        "anonymous ftp",
        {cleartext, "no-authentication"},
        [lb.tcp("127.0.0.23", L.ftp_server(True, None))],
    )
    dev(
        "127.0.0.24",
        "ftp default login",
        {cleartext, "default-credentials"},
        [lb.tcp("127.0.0.24", L.ftp_server(False, creds["ftp"]))],
    )
    dev(
        "127.0.0.25",
        "http basic default",
        {cleartext, "default-credentials"},
        [lb.tcp("127.0.0.25", L.http_server(L.basic_auth_app(creds["http"])))],
    )
    dev(
        "127.0.0.26",
        "http digest default",
        {cleartext, "default-credentials"},
        [lb.tcp("127.0.0.26", L.http_server(L.digest_auth_app(creds["http"])))],
    )
    dev(
        "127.0.0.27",
        "http form default",
        {cleartext, "default-credentials"},
        [lb.tcp("127.0.0.27", L.http_server(L.form_login_app(creds["http_form"])))],
    )
    dev(
        "127.0.0.28",
        "http admin without login",
        {"no-authentication"},
        [lb.tcp("127.0.0.28", L.http_server(L.open_admin_app))],
    )
    dev(
        "127.0.0.29",
        "rtsp default login",
        {"default-credentials"},
        [lb.tcp("127.0.0.29", L.rtsp_server(creds["rtsp"]))],
    )
    dev(
        "127.0.0.30",
        "rtsp open stream",
        {"no-authentication"},
        [lb.tcp("127.0.0.30", L.rtsp_server(None, open_path="/live.sdp"))],
    )
    dev(
        "127.0.0.31",
        "snmp public",
        {"snmp-default-community", cleartext},
        udp=[lb.udp("127.0.0.31", L.snmp_agent("public", "Linux ipcam 3.10.14 armv7l"))],
    )
    desc_port = lb.tcp(
        "127.0.0.32",
        L.http_server(
            lambda r: L.http_response(
                200,
                L.DEVICE_XML.format(serial=secrets.token_hex(4), uuid=secrets.token_hex(8)),
                {"Content-Type": "text/xml"},
            )
        ),
    )
    dev(
        "127.0.0.32",
        "ssdp + upnp description",
        {"upnp-exposed"},
        udp=[lb.udp("127.0.0.32", L.ssdp_responder(f"http://127.0.0.32:{desc_port}/desc.xml"))],
    )
    dev("127.0.0.33", "coap open", {"no-authentication"}, udp=[lb.udp("127.0.0.33", L.coap_server)])
    # TLS
    ca = L.make_ca()
    weak_ctx = L.make_cert(
        L.CertSpec(key_bits=1024, hash=hashes.SHA1(), days_valid=(-60, -1)), tmp, "weak"
    )
    dev(
        "127.0.0.36",
        "https: expired self-signed SHA-1 RSA-1024",
        {
            "tls-expired-certificate",
            "tls-self-signed-certificate",
            "tls-weak-key",
            "tls-weak-signature",
        },
        [lb.tcp("127.0.0.36", L.http_server(L.plain_site_app), weak_ctx)],
    )
    legacy = L.legacy_tls_context(tmp)
    if legacy is not None and L.openssl_speaks_tls10(legacy):
        dev(
            "127.0.0.37",
            "https: real OpenSSL TLS 1.0 only",
            {"tls-legacy-protocol", "tls-self-signed-certificate"},
            [lb.tcp("127.0.0.37", L.http_server(L.plain_site_app), legacy)],
        )
    dev(
        "127.0.0.38",
        "legacy stack: SSLv3 + RC4 (own ClientHello)",
        {"tls-legacy-protocol", "tls-weak-cipher"},
        [lb.tcp("127.0.0.38", L.legacy_hello_stub)],
    )
    dev(
        "127.0.0.39",
        "https: CA-issued, untrusted chain",
        {"tls-untrusted-certificate"},
        [
            lb.tcp(
                "127.0.0.39",
                L.http_server(L.plain_site_app),
                L.make_cert(L.CertSpec(san_ips=("127.0.0.39",), issuer=ca), tmp, "ca39"),
            )
        ],
    )
    dev(
        "127.0.0.43",
        "https: certificate for another address",
        {"tls-untrusted-certificate", "tls-hostname-mismatch"},
        [
            lb.tcp(
                "127.0.0.43",
                L.http_server(L.plain_site_app),
                L.make_cert(L.CertSpec(san_ips=("10.0.0.1",), issuer=ca), tmp, "ca43"),
            )
        ],
    )
    # MQTT (real mosquitto)
    if shutil.which("mosquitto") or Path(MOSQUITTO).exists():
        p, port = start_mosquitto(tmp, "127.0.0.34", None)
        procs.append(p)
        dev("127.0.0.34", "mosquitto anonymous", {"no-authentication", cleartext}, [port])
        if MOSQUITTO_PASSWD:
            p, port = start_mosquitto(tmp, "127.0.0.35", creds["mqtt"])
            procs.append(p)
            dev(
                "127.0.0.35",
                "mosquitto default password",
                {"default-credentials", cleartext},
                [port],
            )
            p, port = start_mosquitto(tmp, "127.0.0.58", L.random_cred())
            procs.append(p)
            dev("127.0.0.58", "hardened: mosquitto with a strong password", {cleartext}, [port])
    # hardened twins: must produce no finding beyond what they really are
    dev(
        "127.0.0.51",
        "hardened: telnet with a strong password",
        {cleartext},
        [lb.tcp("127.0.0.51", L.telnet_login(L.random_cred(), motd="Welcome # admin $ shell >"))],
    )
    dev(
        "127.0.0.52",
        "hardened: telnet honeypot accepting anything, running nothing",
        {cleartext},
        [lb.tcp("127.0.0.52", L.telnet_fake_accept)],
    )
    dev(
        "127.0.0.53",
        "hardened: ftp without anonymous",
        {cleartext},
        [lb.tcp("127.0.0.53", L.ftp_server(False, L.random_cred()))],
    )
    dev(
        "127.0.0.54",
        "hardened: http basic with a strong password",
        {cleartext},
        [lb.tcp("127.0.0.54", L.http_server(L.basic_auth_app(L.random_cred())))],
    )
    dev(
        "127.0.0.55",
        "hardened: http form with a strong password",
        {cleartext},
        [lb.tcp("127.0.0.55", L.http_server(L.form_login_app(L.random_cred())))],
    )
    dev(
        "127.0.0.56",
        "hardened: plain web site",
        set(),
        [lb.tcp("127.0.0.56", L.http_server(L.plain_site_app))],
    )
    dev(
        "127.0.0.57",
        "hardened: rtsp with a strong password",
        set(),
        [lb.tcp("127.0.0.57", L.rtsp_server(L.random_cred()))],
    )
    dev(
        "127.0.0.59",
        "hardened: snmp with a secret community",
        set(),
        udp=[lb.udp("127.0.0.59", L.snmp_agent(secrets.token_hex(8), "x"))],
    )
    # SSH (asyncssh) if available
    ssh = _start_ssh(lb, creds["ssh"])
    if ssh:
        dev("127.0.0.44", "ssh default login", {"default-credentials"}, [ssh[0]])
        dev("127.0.0.61", "hardened: ssh with a strong password", set(), [ssh[1]])
    info = LabInfo(devices, creds, lb)
    try:
        yield info
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        lb.close()


def _start_ssh(lb: L.Lab, cred: L.Credential) -> tuple[int, int] | None:
    try:
        import asyncssh
    except ImportError:
        return None
    import re

    key = asyncssh.generate_private_key("ssh-ed25519")

    def make(password: L.Credential) -> type[asyncssh.SSHServer]:
        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, pw: str) -> bool:
                return (username, pw) == (password.username, password.password)

        return Server

    def process(proc: asyncssh.SSHServerProcess[str]) -> None:
        cmd = proc.command or ""
        m = re.fullmatch(r"echo (.*)", cmd)
        if m:
            proc.stdout.write(
                re.sub(r"\$\(\((\d+)\+(\d+)\)\)", lambda x: str(int(x[1]) + int(x[2])), m[1]) + "\n"
            )
        proc.exit(0)

    async def start(host: str, c: L.Credential) -> int:
        server = await asyncssh.create_server(
            make(c), host, 0, server_host_keys=[key], process_factory=process
        )
        lb.closers.append(lambda: _close(server))
        return int(server.sockets[0].getsockname()[1])

    async def _close(server: asyncssh.SSHAcceptor) -> None:
        server.close()

    weak = lb.run(start("127.0.0.44", cred))
    strong = lb.run(start("127.0.0.61", L.random_cred()))
    return int(weak), int(strong)  # type: ignore[call-overload]
