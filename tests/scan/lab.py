"""A small lab of weak and hardened IoT-like services, on loopback only.

Every server is real network code (asyncio) that speaks the protocol the way a cheap device
does. Secrets are made at test time: the weak devices use a pair taken from the shipped
default list (so the test also checks the list), the hardened twins a random password.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import re
import secrets
import socket
import ssl
import struct
import threading
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from fleetguard.scan._snmp import _read, _tlv
from fleetguard.scan.credentials import Credential, for_service, shipped_credentials
from fleetguard.scan.models import Service


def default_cred(service: Service, index: int = 2) -> Credential:
    """A factory default from the shipped list, within the default attempt budget."""
    return for_service(shipped_credentials(), service)[index]


def random_cred() -> Credential:
    return Credential("admin", secrets.token_urlsafe(16), frozenset())


# --- a background event loop hosting the servers ---------------------------------------------


class Lab:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.closers: list[Callable[[], Awaitable[None]]] = []

    def run(self, coro: Awaitable[object]) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]

    def tcp(
        self,
        host: str,
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        ssl_ctx: ssl.SSLContext | None = None,
    ) -> int:
        async def start() -> int:
            async def safe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                try:
                    await handler(r, w)
                except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
                    pass
                finally:
                    w.close()

            server = await asyncio.start_server(safe, host, 0, ssl=ssl_ctx)

            async def close() -> None:
                server.close()

            self.closers.append(close)
            return int(server.sockets[0].getsockname()[1])

        return int(self.run(start()))  # type: ignore[call-overload]

    def udp(self, host: str, respond: Callable[[bytes], list[bytes]]) -> int:
        class P(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.t = transport

            def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
                for out in respond(data):
                    self.t.sendto(out, addr)  # type: ignore[attr-defined]

        async def start() -> int:
            transport, _ = await self.loop.create_datagram_endpoint(P, local_addr=(host, 0))

            async def close() -> None:
                transport.close()

            self.closers.append(close)
            return int(transport.get_extra_info("sockname")[1])

        return int(self.run(start()))  # type: ignore[call-overload]

    def close(self) -> None:
        for c in self.closers:
            with contextlib.suppress(Exception):
                self.run(c())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


async def _line(reader: asyncio.StreamReader, timeout: float = 5.0) -> str:
    raw = await asyncio.wait_for(reader.readline(), timeout)
    if not raw:
        raise ConnectionError("eof")
    # strip telnet negotiation from the client
    raw = re.sub(rb"\xff[\xfb-\xfe].", b"", raw)
    return raw.decode("latin-1").strip()


# --- telnet ----------------------------------------------------------------------------------

IAC_NEGOTIATION = bytes((255, 251, 1, 255, 251, 3, 255, 253, 24))  # WILL ECHO, WILL SGA, DO TTYPE


async def _busybox_shell(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"\r\n# ")
    while True:
        cmd = await _line(reader, 10)
        writer.write(cmd.encode() + b"\r\n")  # terminal echo
        m = re.fullmatch(r"echo (.*)", cmd)
        if m:
            out = re.sub(r"\$\(\((\d+)\+(\d+)\)\)", lambda x: str(int(x[1]) + int(x[2])), m[1])
            writer.write(out.encode() + b"\r\n# ")
        elif cmd == "exit":
            return
        else:
            writer.write(f"sh: {cmd.split()[0] if cmd else ''}: not found\r\n# ".encode())
        await writer.drain()


def telnet_login(
    cred: Credential, motd: str = "BusyBox v1.31.1 () built-in shell"
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(IAC_NEGOTIATION + f"\r\n{motd}\r\n\r\nipcam login: ".encode())
        for _ in range(3):
            user = await _line(reader)
            writer.write(b"Password: ")
            pw = await _line(reader)
            if (user, pw) == (cred.username, cred.password):
                await _busybox_shell(reader, writer)
                return
            await asyncio.sleep(0.05)
            writer.write(b"\r\nLogin incorrect\r\nipcam login: ")

    return handler


async def telnet_open_shell(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(IAC_NEGOTIATION)
    await _busybox_shell(reader, writer)


async def telnet_fake_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Honeypot-like: takes any login, shows '#', but never runs anything."""
    writer.write(IAC_NEGOTIATION + b"\r\nWelcome # to $ the shell\r\nlogin: ")
    await _line(reader)
    writer.write(b"Password: ")
    await _line(reader)
    writer.write(b"\r\n# ")
    while True:
        cmd = await _line(reader, 10)
        writer.write(cmd.encode() + b"\r\n# ")


# --- FTP -------------------------------------------------------------------------------------


def ftp_server(
    anonymous: bool, cred: Credential | None
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 (vsFTPd 3.0.3)\r\n")
        user = ""
        logged = False
        while True:
            line = await _line(reader)
            cmd, _, arg = line.partition(" ")
            cmd = cmd.upper()
            if cmd == "USER":
                user = arg
                writer.write(b"331 Please specify the password.\r\n")
            elif cmd == "PASS":
                ok = (anonymous and user in ("anonymous", "ftp")) or (
                    cred is not None and (user, arg) == (cred.username, cred.password)
                )
                logged = ok
                writer.write(b"230 Login successful.\r\n" if ok else b"530 Login incorrect.\r\n")
            elif cmd == "PWD":
                writer.write(
                    b'257 "/" is the current directory\r\n'
                    if logged
                    else b"530 Please login with USER and PASS.\r\n"
                )
            elif cmd == "QUIT":
                writer.write(b"221 Goodbye.\r\n")
                return
            else:
                writer.write(b"500 Unknown command.\r\n")
            await writer.drain()

    return handler


# --- HTTP ------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


async def read_request(reader: asyncio.StreamReader) -> Request:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k:
            headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(n) if n else b""
    return Request(method, path, headers, body)


def http_response(
    status: int,
    body: str | bytes,
    headers: dict[str, str] | None = None,
    server: str = "Boa/0.94.14rc21",
) -> bytes:
    b = body.encode() if isinstance(body, str) else body
    reason = {200: "OK", 302: "Found", 401: "Unauthorized", 404: "Not Found"}.get(status, "X")
    h = {"Server": server, "Content-Type": "text/html", "Content-Length": str(len(b))}
    h.update(headers or {})
    return (
        f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    ).encode() + b


HttpHandler = Callable[[Request], bytes]


def http_server(
    app: HttpHandler,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        req = await read_request(reader)
        writer.write(app(req))
        await writer.drain()

    return handler


def basic_auth_app(cred: Credential) -> HttpHandler:
    import base64

    good = "Basic " + base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()

    def app(req: Request) -> bytes:
        if req.headers.get("authorization") == good:
            return http_response(200, "<title>IPCAM</title>Live view. <a>Logout</a> Reboot")
        return http_response(
            401, "<h1>401 Unauthorized</h1>", {"WWW-Authenticate": 'Basic realm="IPCAM DCS-932L"'}
        )

    return app


def digest_auth_app(cred: Credential) -> HttpHandler:
    import hashlib

    realm, nonce = "Login to DS-2CD2032", secrets.token_hex(16)

    def app(req: Request) -> bytes:
        auth = req.headers.get("authorization", "")
        if auth.startswith("Digest "):
            p = dict((k, v.strip('"')) for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', auth[7:]))
            ha1 = hashlib.md5(f"{p.get('username')}:{realm}:{cred.password}".encode()).hexdigest()
            ha2 = hashlib.md5(f"{req.method}:{p.get('uri')}".encode()).hexdigest()
            want = hashlib.md5(
                f"{ha1}:{nonce}:{p.get('nc')}:{p.get('cnonce')}:auth:{ha2}".encode()
            ).hexdigest()
            if p.get("username") == cred.username and p.get("response") == want:
                return http_response(200, "<title>Hikvision</title>ok", server="App-webs/")
        return http_response(
            401,
            "unauthorized",
            {"WWW-Authenticate": f'Digest realm="{realm}", qop="auth", nonce="{nonce}"'},
            server="App-webs/",
        )

    return app


def form_login_app(cred: Credential) -> HttpHandler:
    sessions: set[str] = set()

    def page(error: str = "") -> bytes:
        token = secrets.token_hex(8)
        return http_response(
            200,
            f"""<html><head><title>Router Login</title></head><body>
<p>{error}</p><form method="post" action="/login.cgi">
<input type="hidden" name="csrf" value="{token}">
<input type="text" name="username"><input type="password" name="pwd">
<input type="submit" value="Login"></form> build {secrets.randbelow(10**6)}</body></html>""",
        )

    def app(req: Request) -> bytes:
        from urllib.parse import parse_qs

        cookie = req.headers.get("cookie", "")
        sid = cookie.partition("sid=")[2].split(";")[0]
        if req.path == "/login.cgi" and req.method == "POST":
            form = {k: v[0] for k, v in parse_qs(req.body.decode(), keep_blank_values=True).items()}
            if (form.get("username"), form.get("pwd")) == (cred.username, cred.password):
                s = secrets.token_hex(8)
                sessions.add(s)
                return http_response(302, "", {"Location": "/admin.html", "Set-Cookie": f"sid={s}"})
            return page("Invalid user name or password")
        if req.path == "/admin.html":
            if sid in sessions:
                return http_response(200, "<title>Status</title>Reboot | Firmware upgrade | Logout")
            return http_response(302, "", {"Location": "/"})
        return page()

    return app


def open_admin_app(req: Request) -> bytes:
    return http_response(
        200,
        "<title>Wireless Router</title><h1>System settings</h1>"
        "<a href=/reboot>Reboot</a> <a href=/fw>Firmware upgrade</a> Logout",
    )


def plain_site_app(req: Request) -> bytes:
    return http_response(
        200, "<title>Welcome</title><p>It works. Nothing to administer.</p>", server="nginx/1.22.1"
    )


# --- MQTT stub (used when mosquitto is absent) and RTSP --------------------------------------


def rtsp_server(
    cred: Credential | None, open_path: str | None = None
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    import base64

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        req = await read_request(reader)
        cseq = req.headers.get("cseq", "1")
        url_path = re.sub(r"^rtsp://[^/]+", "", req.path) or "/"
        base = f"RTSP/1.0 {{}}\r\nCSeq: {cseq}\r\nServer: Hipcam RealServer/V1.0\r\n"
        if req.method == "OPTIONS":
            writer.write(
                (base.format("200 OK") + "Public: OPTIONS, DESCRIBE, SETUP, PLAY\r\n\r\n").encode()
            )
        elif req.method == "DESCRIBE":
            sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nm=video 0 RTP/AVP 96\r\n"
            if open_path is not None and url_path == open_path:
                writer.write(
                    (
                        base.format("200 OK") + f"Content-Type: application/sdp\r\n"
                        f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
                    ).encode()
                )
            elif url_path == "/live" and cred is not None:
                good = (
                    "Basic "
                    + base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()
                )
                if req.headers.get("authorization") == good:
                    writer.write(
                        (
                            base.format("200 OK") + f"Content-Type: application/sdp\r\n"
                            f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
                        ).encode()
                    )
                else:
                    writer.write(
                        (
                            base.format("401 Unauthorized")
                            + 'WWW-Authenticate: Basic realm="HipcamRealServer"\r\n\r\n'
                        ).encode()
                    )
            else:
                writer.write((base.format("404 Not Found") + "\r\n").encode())
        await writer.drain()

    return handler


# --- UDP: SNMP, SSDP, CoAP -------------------------------------------------------------------


def snmp_agent(community: str, descr: str) -> Callable[[bytes], list[bytes]]:
    def respond(data: bytes) -> list[bytes]:
        try:
            _, msg, _ = _read(data, 0)
            _, ver, i = _read(msg, 0)
            _, comm, i = _read(msg, i)
            tag, pdu, _ = _read(msg, i)
            _, rid, j = _read(pdu, 0)
            _, _e, j = _read(pdu, j)
            _, _ix, j = _read(pdu, j)
            _, vbl, _ = _read(pdu, j)
            _, vb, _ = _read(vbl, 0)
            _, name, _ = _read(vb, 0)
        except (IndexError, ValueError):
            return []
        if tag != 0xA0 or comm.decode() != community:
            return []  # wrong community: agents stay silent
        varbind = _tlv(0x30, _tlv(0x06, name) + _tlv(0x04, descr.encode()))
        pdu_out = _tlv(
            0xA2, _tlv(0x02, rid) + _tlv(0x02, b"\x00") + _tlv(0x02, b"\x00") + _tlv(0x30, varbind)
        )
        return [_tlv(0x30, _tlv(0x02, ver) + _tlv(0x04, comm) + pdu_out)]

    return respond


DEVICE_XML = """<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><device>
<deviceType>urn:schemas-upnp-org:device:MediaServer:1</deviceType>
<friendlyName>Living room camera</friendlyName><manufacturer>Acme Cams</manufacturer>
<modelName>AC-100</modelName><modelNumber>2.1</modelNumber><serialNumber>SN{serial}</serialNumber>
<UDN>uuid:{uuid}</UDN></device></root>"""


def ssdp_responder(location: str) -> Callable[[bytes], list[bytes]]:
    def respond(data: bytes) -> list[bytes]:
        if not data.startswith(b"M-SEARCH"):
            return []
        return [
            (
                "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nEXT:\r\n"
                f"LOCATION: {location}\r\nSERVER: Linux/3.10 UPnP/1.0 AcmeCam/2.1\r\n"
                "ST: upnp:rootdevice\r\nUSN: uuid:1234::upnp:rootdevice\r\n\r\n"
            ).encode()
        ]

    return respond


def coap_server(data: bytes) -> list[bytes]:
    if len(data) < 4 or data[0] >> 6 != 1:
        return []
    tkl = data[0] & 0x0F
    token = data[4 : 4 + tkl]
    payload = b'</sensors/temp>;rt="temperature",</actuators/relay>;if="actuator"'
    hdr = bytes((0x60 | tkl, 0x45)) + data[2:4] + token  # ACK, 2.05
    return [hdr + bytes((0xC1, 40)) + b"\xff" + payload]  # Content-Format 40 (link-format)


# --- TLS -------------------------------------------------------------------------------------


@dataclass
class CertSpec:
    key_bits: int = 2048
    hash: hashes.HashAlgorithm = field(default_factory=hashes.SHA256)
    days_valid: tuple[int, int] = (-1, 30)  # notBefore, notAfter relative to now
    san_ips: tuple[str, ...] = ()
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None  # None: self-signed


def make_ca() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleetguard test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_cert(spec: CertSpec, tmp: Path, name: str) -> ssl.SSLContext:
    key = rsa.generate_private_key(65537, spec.key_bits)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}.device")])
    now = dt.datetime.now(dt.UTC)
    issuer_name, signer = (
        (subject, key) if spec.issuer is None else (spec.issuer[0].subject, spec.issuer[1])
    )
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=spec.days_valid[0]))
        .not_valid_after(now + dt.timedelta(days=spec.days_valid[1]))
    )
    if spec.san_ips:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(i)) for i in spec.san_ips]
            ),
            critical=False,
        )
    if isinstance(spec.hash, hashes.SHA1):
        cert = _sha1_resign(b.sign(signer, hashes.SHA256()), signer)
    else:
        cert = b.sign(signer, spec.hash)
    kp, cp = tmp / f"{name}.key", tmp / f"{name}.crt"
    kp.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    chain = cert.public_bytes(serialization.Encoding.PEM)
    if spec.issuer is not None:
        chain += spec.issuer[0].public_bytes(serialization.Encoding.PEM)
    cp.write_bytes(chain)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # no anonymous suites: only the weakness under test
    ctx.load_cert_chain(cp, kp)
    return ctx


def _sha1_resign(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> x509.Certificate:
    """cryptography no longer signs with SHA-1; devices still do. Re-sign the TBS by hand."""
    from cryptography.hazmat.primitives.asymmetric import padding

    sha256_rsa = bytes.fromhex("06092a864886f70d01010b")
    sha1_rsa = bytes.fromhex("06092a864886f70d010105")
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(sha256_rsa) == 1
    tbs = tbs.replace(sha256_rsa, sha1_rsa)
    sig = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    alg = _tlv(0x30, sha1_rsa + b"\x05\x00")
    der = _tlv(0x30, tbs + alg + _tlv(0x03, b"\x00" + sig))
    return x509.load_der_x509_certificate(der)


def legacy_tls_context(tmp: Path) -> ssl.SSLContext | None:
    """A real OpenSSL server that only speaks TLS 1.0, if this OpenSSL still can."""
    ctx = make_cert(CertSpec(san_ips=()), tmp, "legacy")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # deprecated: that is the point
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1
    except (ValueError, ssl.SSLError):
        return None
    return ctx


def openssl_speaks_tls10(ctx: ssl.SSLContext) -> bool:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.set_ciphers("ALL:@SECLEVEL=0")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            client.minimum_version = ssl.TLSVersion.TLSv1
            client.maximum_version = ssl.TLSVersion.TLSv1
    except (ValueError, ssl.SSLError):
        return False
    a, b = socket.socketpair()
    result: list[bool] = []

    def serve() -> None:
        with contextlib.suppress(ssl.SSLError, OSError):
            ctx.wrap_socket(a, server_side=True).close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        s = client.wrap_socket(b)
        result.append(s.version() == "TLSv1")
        s.close()
    except (ssl.SSLError, OSError):
        result.append(False)
    t.join(5)
    a.close()
    return result[0]


async def legacy_hello_stub(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An old stack: takes the client's version (even SSLv3) and picks RC4-SHA when offered."""
    head = await reader.readexactly(5)
    body = await reader.readexactly(struct.unpack("!H", head[3:5])[0])
    version = body[4:6]
    sid_len = body[38]
    off = 39 + sid_len
    n = struct.unpack("!H", body[off : off + 2])[0]
    suites = [struct.unpack("!H", body[off + 2 + i : off + 4 + i])[0] for i in range(0, n, 2)]
    chosen = 0x0005 if 0x0005 in suites else (0x002F if 0x002F in suites else None)
    if chosen is None:
        writer.write(b"\x15\x03\x01\x00\x02\x02\x28")  # handshake_failure
        return
    sh = version + secrets.token_bytes(32) + b"\x00" + struct.pack("!H", chosen) + b"\x00"
    hs = b"\x02" + struct.pack("!I", len(sh))[1:] + sh
    writer.write(b"\x16" + version + struct.pack("!H", len(hs)) + hs)
    await writer.drain()
    await asyncio.sleep(0.05)
