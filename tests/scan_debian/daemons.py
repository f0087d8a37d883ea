"""Start real Debian daemons as child processes, each on its own 127.0.77.x address.

Everything is generated in a temporary directory: configs, keys, certificates, the telnet
login program, and (for sshd) a private ``/etc/passwd``/``/etc/shadow`` that only exists in
the daemon's own mount namespace. Nothing system-wide is read for configuration or written.

Every process is started in its own session and carries a per-lab marker in its environment,
so teardown stops whole process groups and then finds (and reports) any straggler by pid.
A missing binary or missing privilege raises :class:`Unavailable` with the reason; the lab
turns that into a skip of that device only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MARKER = "FG_DEBIAN_LAB"
NOBODY = 65534
LAB_UID = 47707  # the throwaway login user; exists only inside sshd's mount namespace


class Unavailable(Exception):
    """This service cannot run on this machine (reason in the message)."""


def need(binary: str, package: str) -> str:
    found = shutil.which(binary) or next(
        (
            p
            for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
            if os.access(p := f"{d}/{binary}", os.X_OK)
        ),
        None,
    )
    if found is None:
        raise Unavailable(
            f"{binary} not installed (Debian package {package}; see scripts/setup.sh)"
        )
    return found


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise Unavailable(f"{what} needs root")


def pick_port(addr: str, preferred: int, *, udp: bool = False) -> int:
    """The service's usual port on this address when it is free, else any free port."""
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise Unavailable(f"no free port on {addr}")


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(3)
        else:  # the leader is gone; its group may still hold children
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)


class Runner:
    """Owns every daemon of one lab: start, wait until it listens, stop."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.token = secrets.token_hex(8)
        self.daemons: list[Daemon] = []

    def dir(self, name: str) -> Path:
        d = self.tmp / name
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        return d

    def spawn(self, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> Daemon:
        log = self.tmp / f"{name}.log"
        base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", MARKER: self.token}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**base, **(env or {})},
                cwd=self.tmp,
                start_new_session=True,
            )
        d = Daemon(name, proc, log)
        self.daemons.append(d)
        return d

    def wait_tcp(self, d: Daemon, addr: str, port: int, timeout: float = 8.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if d.proc.poll() is not None:
                raise RuntimeError(f"{d.name} exited with {d.proc.returncode}: {d.tail()}")
            try:
                socket.create_connection((addr, port), 0.2).close()
                return
            except OSError:
                time.sleep(0.03)
        raise RuntimeError(f"{d.name} not listening on {addr}:{port} after {timeout}s: {d.tail()}")

    def wait_udp(self, d: Daemon, addr: str, port: int, timeout: float = 8.0) -> None:
        want = f"{_hex_addr(addr)}:{port:04X}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if d.proc.poll() is not None:
                raise RuntimeError(f"{d.name} exited with {d.proc.returncode}: {d.tail()}")
            with contextlib.suppress(OSError):
                rows = Path("/proc/net/udp").read_text().splitlines()[1:]
                if any(r.split()[1] == want for r in rows):
                    return
            time.sleep(0.03)
        raise RuntimeError(f"{d.name} not bound to udp {addr}:{port} after {timeout}s: {d.tail()}")

    def stop_all(self) -> list[str]:
        """Stop every daemon; return what had to be killed afterwards (should be nothing)."""
        for d in reversed(self.daemons):
            with contextlib.suppress(Exception):
                d.stop()
        leftovers = []
        for pid in marked_pids(self.token):
            leftovers.append(f"{pid} {_cmdline(pid)}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return leftovers


def marked_pids(token: str) -> list[int]:
    needle = f"{MARKER}={token}".encode()
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            if needle in (p / "environ").read_bytes().split(b"\0"):
                out.append(int(p.name))
        except OSError:
            continue
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def _hex_addr(addr: str) -> str:
    return ipaddress.IPv4Address(addr).packed[::-1].hex().upper()


# --- certificates --------------------------------------------------------------------------


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


class Pki:
    """A lab CA and leaf certificates with chosen weaknesses."""

    def __init__(self, d: Path) -> None:
        self.d = d
        self.ca_key = rsa.generate_private_key(65537, 2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleetguard Debian lab CA")])
        now = dt.datetime.now(dt.UTC)
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_file = d / "lab-ca.crt"
        self.ca_file.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        self.ca_key_file = _write_key(d / "lab-ca.key", self.ca_key)

    def leaf(
        self,
        name: str,
        *,
        san_ips: tuple[str, ...] = (),
        key_bits: int = 2048,
        days: tuple[int, int] = (-1, 30),
        self_signed: bool = False,
        client: bool = False,
    ) -> CertFiles:
        key = rsa.generate_private_key(65537, key_bits)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        issuer, signer = (subject, key) if self_signed else (self.ca.subject, self.ca_key)
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=days[0]))
            .not_valid_after(now + dt.timedelta(days=days[1]))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
        )
        if san_ips:
            b = b.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address(i)) for i in san_ips]
                ),
                critical=False,
            )
        cert = b.sign(signer, hashes.SHA256())
        files = CertFiles(self.d / f"{name}.crt", _write_key(self.d / f"{name}.key", key))
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return files

    def sha1_leaf(self, name: str, *, san_ips: tuple[str, ...]) -> CertFiles:
        """cryptography no longer signs with SHA-1: the openssl CLI still does."""
        openssl = need("openssl", "openssl")
        key = _write_key(self.d / f"{name}.key", rsa.generate_private_key(65537, 2048))
        csr, crt, ext = (self.d / f"{name}.{s}" for s in ("csr", "crt", "ext"))
        ext.write_text(
            "extendedKeyUsage = serverAuth\n"
            + (f"subjectAltName = {','.join('IP:' + i for i in san_ips)}\n" if san_ips else "")
        )
        env = {**os.environ, "OPENSSL_CONF": "/dev/null"}
        subprocess.run(
            [openssl, "req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr)],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        subprocess.run(
            [openssl, "x509", "-req", "-in", str(csr), "-CA", str(self.ca_file),
             "-CAkey", str(self.ca_key_file), "-set_serial", str(x509.random_serial_number()),
             "-days", "30", "-sha1", "-extfile", str(ext), "-out", str(crt)],
            check=True, capture_output=True, env=env,
        )  # fmt: skip
        return CertFiles(crt, key)


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


# --- busybox telnetd -----------------------------------------------------------------------

_LOGIN_SH = """#!{busybox} sh
# fleetguard Debian lab: a device-like login for busybox telnetd. After the right pair it
# runs an unprivileged busybox shell (uid nobody, empty PATH: shell builtins only).
CR=$(printf '\\r')
n=0
while [ $n -lt 3 ]; do
  n=$((n + 1))
  printf 'ipcam login: '
  IFS= read -r u || exit 0
  u=${{u%"$CR"}}
  printf 'Password: '
  {busybox} stty -echo 2>/dev/null
  IFS= read -r p || exit 0
  {busybox} stty echo 2>/dev/null
  p=${{p%"$CR"}}
  printf '\\r\\n'
  if [ "$u" = '{user}' ] && [ "$p" = '{password}' ]; then
    cd /
    exec {setpriv} --reuid={nobody} --regid={nobody} --clear-groups \\
      {busybox} env -i PATH=/nonexistent HOME=/ PS1='$ ' {marker}={token} {busybox} sh -i
  fi
  printf 'Login incorrect\\r\\n\\r\\n'
done
exit 1
"""


def _check_shell_literal(*values: str) -> None:
    for v in values:
        if "'" in v or "\n" in v:
            raise ValueError(f"unsafe value for the generated login script: {v!r}")


def start_telnetd(r: Runner, addr: str, user: str, password: str) -> int:
    """busybox telnetd whose login program accepts exactly user/password."""
    busybox = need("busybox", "busybox-static")
    setpriv = need("setpriv", "util-linux")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True).stdout.split()
    if "telnetd" not in applets:
        raise Unavailable("this busybox has no telnetd applet (Debian: install busybox-static)")
    need_root("busybox telnetd (pty allocation, dropping the shell to uid nobody)")
    _check_shell_literal(user, password)
    d = r.dir(f"telnetd-{addr}")
    login = d / "login.sh"
    login.write_text(
        _LOGIN_SH.format(
            busybox=busybox,
            setpriv=setpriv,
            user=user,
            password=password,
            nobody=NOBODY,
            marker=MARKER,
            token=r.token,
        )
    )
    login.chmod(0o700)
    issue = d / "issue"
    issue.write_text("IPCam-lab BusyBox\n")
    port = pick_port(addr, 23)
    daemon = r.spawn(
        f"telnetd-{addr}",
        [busybox, "telnetd", "-F", "-K", "-p", str(port), "-b", f"{addr}:{port}",
         "-l", str(login), "-f", str(issue)],
    )  # fmt: skip
    r.wait_tcp(daemon, addr, port)
    return port


# --- OpenSSH sshd ----------------------------------------------------------------------------

_SSHD_NS_SCRIPT = """set -e
mount -t tmpfs -o mode=0755,size=1m fg-lab-run /run
mkdir -m 0755 /run/sshd
# the lab user's login shell: busybox sh with an empty PATH (shell builtins only)
printf '#!/bin/sh\nexec {busybox} env -i PATH=/nonexistent HOME=/ {marker}={token} {busybox} sh "$@"\n' \
  > /run/lab-shell
chmod 0755 /run/lab-shell
mount -t tmpfs -o mode=0755,size=1m fg-lab-log /var/log
mount --bind {etc}/passwd /etc/passwd
mount --bind {etc}/group /etc/group
mount --bind {etc}/shadow /etc/shadow
exec {sshd} -D -e -f {config}
"""


def start_sshd(r: Runner, addr: str, *, password: tuple[str, str] | None) -> int:
    """A separate sshd in its own mount namespace.

    With ``password`` it allows password logins for that user, who exists only in the
    namespace's private passwd/shadow (nothing system-wide changes). Without, it is key-only.
    """
    sshd = need("sshd", "openssh-server")
    unshare = need("unshare", "util-linux")
    keygen = need("ssh-keygen", "openssh-client")
    openssl = need("openssl", "openssl")
    busybox = need("busybox", "busybox-static")
    need_root("sshd (private mount namespace for a throwaway user and /run/sshd)")
    probe = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "/bin/true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        raise Unavailable(
            "no private mount namespace here (unshare --mount failed: "
            f"{probe.stderr.strip()[:120]}); sshd's throwaway user needs one"
        )
    d = r.dir(f"sshd-{addr}")
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "lab-host", "-f", str(d / "host_key")],
        check=True, capture_output=True,
    )  # fmt: skip
    user = password[0] if password else "admin"
    if password:
        _check_shell_literal(*password)
        hashed = subprocess.run(
            [openssl, "passwd", "-6", "-stdin"], input=password[1], capture_output=True,
            text=True, check=True, env={**os.environ, "OPENSSL_CONF": "/dev/null"},
        ).stdout.strip()  # fmt: skip
    else:
        hashed = "!"
    try:
        sshd_uid = subprocess.run(["id", "-u", "sshd"], capture_output=True, text=True, check=True)
        privsep = f"sshd:x:{sshd_uid.stdout.strip()}:{NOBODY}::/run/sshd:/usr/sbin/nologin\n"
    except subprocess.CalledProcessError:
        privsep = ""
    etc = d / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        + privsep
        + f"nobody:x:{NOBODY}:{NOBODY}:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"{user}:x:{LAB_UID}:{LAB_UID}:lab user:/:/run/lab-shell\n"
    )
    (etc / "group").write_text(f"root:x:0:\nnogroup:x:{NOBODY}:\n{user}:x:{LAB_UID}:\n")
    (etc / "shadow").write_text(f"root:*:19000:0:99999:7:::\n{user}:{hashed}:19000:0:99999:7:::\n")
    for f in ("passwd", "group"):
        (etc / f).chmod(0o644)
    (etc / "shadow").chmod(0o600)
    port = pick_port(addr, 22)
    lines = [
        f"ListenAddress {addr}:{port}",
        f"HostKey {d / 'host_key'}",
        "PidFile none",
        "UsePAM no",
        "UseDNS no",
        "PermitRootLogin no",
        f"AllowUsers {user}",
        "KbdInteractiveAuthentication no",
        "StrictModes no",
        "PrintMotd no",
        "PrintLastLog no",
        "MaxStartups 64:30:128",
        "LoginGraceTime 15",
        "LogLevel INFO",
    ]
    if password:
        lines += [
            "PasswordAuthentication yes",
            "PermitEmptyPasswords no",
            "PubkeyAuthentication no",
        ]
    else:
        subprocess.run(
            [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "lab-user", "-f", str(d / "user_key")],
            check=True, capture_output=True,
        )  # fmt: skip
        (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
        lines += [
            "PasswordAuthentication no",
            "PubkeyAuthentication yes",
            f"AuthorizedKeysFile {d / 'authorized_keys'}",
        ]
    config = d / "sshd_config"
    config.write_text("\n".join(lines) + "\n")
    script = _SSHD_NS_SCRIPT.format(
        etc=etc, sshd=sshd, config=config, busybox=busybox, marker=MARKER, token=r.token
    )
    daemon = r.spawn(
        f"sshd-{addr}",
        [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script],
    )
    r.wait_tcp(daemon, addr, port)
    return port


# --- lighttpd -----------------------------------------------------------------------------------


def start_lighttpd(
    r: Runner,
    addr: str,
    *,
    tls: CertFiles | None = None,
    basic_auth: tuple[str, str] | None = None,
    ssl_conf: dict[str, str] | None = None,
) -> int:
    lighttpd = need("lighttpd", "lighttpd")
    modules = ["mod_auth", "mod_authn_file"] if basic_auth else []
    if tls is not None:
        libdir = Path("/usr/lib/lighttpd")
        if libdir.is_dir() and not (libdir / "mod_openssl.so").exists():
            raise Unavailable("lighttpd TLS needs the Debian package lighttpd-mod-openssl")
        modules.append("mod_openssl")
    d = r.dir(f"lighttpd-{addr}")
    www = d / "www"
    www.mkdir()
    (www / "index.html").write_text(
        "<html><head><title>IPCam</title></head><body><p>Live view</p></body></html>\n"
    )
    port = pick_port(addr, 443 if tls else 80)
    lines = [
        f'server.document-root = "{www}"',
        f'server.bind = "{addr}"',
        f"server.port = {port}",
        f'server.errorlog = "{d / "error.log"}"',
        'server.tag = "lighttpd"',
        'index-file.names = ( "index.html" )',
        'mimetype.assign = ( ".html" => "text/html" )',
        "server.modules = ( " + ", ".join(f'"{m}"' for m in modules) + " )",
    ]
    if basic_auth:
        users = d / "users"
        users.write_text(f"{basic_auth[0]}:{basic_auth[1]}\n")
        users.chmod(0o600)
        lines += [
            'auth.backend = "plain"',
            f'auth.backend.plain.userfile = "{users}"',
            'auth.require = ( "/" => ( "method" => "basic", "realm" => "IPCam", '
            '"require" => "valid-user" ) )',
        ]
    if tls is not None:
        lines += [
            'ssl.engine = "enable"',
            f'ssl.pemfile = "{tls.cert}"',
            f'ssl.privkey = "{tls.key}"',
        ]
        if ssl_conf:
            cmds = ", ".join(f'"{k}" => "{v}"' for k, v in ssl_conf.items())
            lines.append(f"ssl.openssl.ssl-conf-cmd = ( {cmds} )")
    conf = d / "lighttpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    daemon = r.spawn(f"lighttpd-{addr}", [lighttpd, "-D", "-f", str(conf)])
    r.wait_tcp(daemon, addr, port)
    return port


# --- mosquitto ----------------------------------------------------------------------------------


def start_mosquitto(r: Runner, addr: str, *, mtls: tuple[Path, CertFiles] | None = None) -> int:
    """Anonymous on 1883, or (``mtls`` = CA file, server cert) client certificates on 8883."""
    mosquitto = need("mosquitto", "mosquitto")
    d = r.dir(f"mosquitto-{addr}")
    port = pick_port(addr, 8883 if mtls else 1883)
    # as root, stay root: the broker must read certificates in our private tmp directory
    lines = [f"listener {port} {addr}", "persistence false", "log_dest stderr"]
    if os.geteuid() == 0:
        lines.append("user root")
    if mtls is None:
        lines.append("allow_anonymous true")
    else:
        ca, server = mtls
        lines += [
            f"cafile {ca}",
            f"certfile {server.cert}",
            f"keyfile {server.key}",
            "require_certificate true",
            "use_identity_as_username true",
            "allow_anonymous false",
        ]
    conf = d / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    daemon = r.spawn(f"mosquitto-{addr}", [mosquitto, "-c", str(conf)])
    r.wait_tcp(daemon, addr, port)
    return port


# --- vsftpd -------------------------------------------------------------------------------------


def start_vsftpd(r: Runner, addr: str, *, anonymous: bool) -> int:
    """Anonymous read-only FTP, or a twin with anonymous off that lets nobody in.

    The twin enables local logins only for users in an empty allow-list, so vsftpd refuses
    every USER before PAM is asked: no real account of this machine is ever tried.
    """
    vsftpd = need("vsftpd", "vsftpd")
    need_root("vsftpd (chroot and privilege separation)")
    try:  # anonymous sessions start in the home of vsftpd's "ftp" user (package-created)
        ftp_user, ftp_home = "ftp", pwd.getpwnam("ftp").pw_dir
    except KeyError:
        ftp_user, ftp_home = "nobody", ""
    if anonymous and not Path(ftp_home or "/nonexistent").is_dir():
        raise Unavailable(
            "anonymous vsftpd needs the 'ftp' user and home the vsftpd package creates"
        )
    d = r.dir(f"vsftpd-{addr}")
    d.chmod(0o755)
    empty = d / "empty"
    empty.mkdir(mode=0o755)
    anon = d / "anon"
    anon.mkdir(mode=0o555)
    port = pick_port(addr, 21)
    lines = [
        "listen=YES",
        "listen_ipv6=NO",
        "background=NO",
        f"listen_address={addr}",
        f"listen_port={port}",
        f"secure_chroot_dir={empty}",
        "nopriv_user=nobody",
        f"ftp_username={ftp_user}",
        "write_enable=NO",
        "connect_from_port_20=NO",
        "pasv_enable=YES",
        "xferlog_enable=NO",
        "syslog_enable=NO",
        "dirmessage_enable=NO",
        "seccomp_sandbox=NO",
        "delay_failed_login=0",
        "hide_ids=YES",
    ]
    if anonymous:
        lines += [
            "anonymous_enable=YES",
            "no_anon_password=YES",
            f"anon_root={anon}",
            "local_enable=NO",
        ]
    else:
        allow = d / "allowed_users"
        allow.write_text("")
        lines += [
            "anonymous_enable=NO",
            "local_enable=YES",
            "userlist_enable=YES",
            "userlist_deny=NO",
            f"userlist_file={allow}",
            "pam_service_name=vsftpd",
        ]
    conf = d / "vsftpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    conf.chmod(0o600)
    daemon = r.spawn(f"vsftpd-{addr}", [vsftpd, str(conf)])
    r.wait_tcp(daemon, addr, port)
    return port


# --- Net-SNMP snmpd -----------------------------------------------------------------------------


def start_snmpd(r: Runner, addr: str, community: str) -> int:
    snmpd = need("snmpd", "snmpd")
    d = r.dir(f"snmpd-{addr}")
    d.chmod(0o755)
    persist = d / "persist"
    persist.mkdir(mode=0o777)
    conf = d / "snmpd.conf"
    conf.write_text(
        f"rocommunity {community} 127.0.0.0/8\n"
        "sysDescr Linux ipcam 4.9.37 #1 armv7l (fleetguard Debian lab)\n"
        "sysLocation lab\n"
        "sysContact lab@example.invalid\n"
        f"smuxsocket {addr}\n"
    )
    conf.chmod(0o644)
    port = pick_port(addr, 161, udp=True)
    drop = ["-u", str(NOBODY), "-g", str(NOBODY)] if os.geteuid() == 0 else []
    daemon = r.spawn(
        f"snmpd-{addr}",
        [snmpd, "-f", "-Lo", "-C", "-c", str(conf), *drop, f"udp:{addr}:{port}"],
        env={"SNMP_PERSISTENT_DIR": str(persist), "SNMPCONFPATH": str(d), "MIBS": "",
             "MIBDIRS": str(d)},
    )  # fmt: skip
    r.wait_udp(daemon, addr, port)
    return port
