"""TLS checks: our own ClientHello for protocol versions and weak suites, certificate analysis.

The Python ``ssl`` module cannot offer SSLv3, RC4, DES or EXPORT suites with OpenSSL 3, so a
scanner that only used it would silently miss them. We write the ClientHello ourselves and read
the ServerHello: what the server *selects* is what it accepts, independent of the local OpenSSL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import ssl
import struct
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa

from fleetguard.scan._context import ProbeContext
from fleetguard.scan._net import insecure_tls_context, read_until
from fleetguard.scan.checks import CheckId
from fleetguard.scan.models import ServiceInfo, Severity

SSL3, TLS10, TLS11, TLS12 = 0x0300, 0x0301, 0x0302, 0x0303
VERSION_NAMES = {SSL3: "SSLv3", TLS10: "TLS 1.0", TLS11: "TLS 1.1", TLS12: "TLS 1.2"}

# Weak suites by class (IANA code points).
WEAK_SUITES: dict[int, str] = {
    0x0001: "NULL-MD5",
    0x0002: "NULL-SHA",
    0x003B: "NULL-SHA256",
    0xC006: "ECDHE-ECDSA-NULL-SHA",
    0xC010: "ECDHE-RSA-NULL-SHA",
    0x0003: "EXP-RC4-MD5",
    0x0006: "EXP-RC2-CBC-MD5",
    0x0008: "EXP-DES-CBC-SHA",
    0x0014: "EXP-EDH-RSA-DES-CBC-SHA",
    0x0004: "RC4-MD5",
    0x0005: "RC4-SHA",
    0xC007: "ECDHE-ECDSA-RC4-SHA",
    0xC011: "ECDHE-RSA-RC4-SHA",
    0x0009: "DES-CBC-SHA",
    0x0015: "EDH-RSA-DES-CBC-SHA",
    0x000A: "DES-CBC3-SHA",
    0x0016: "EDH-RSA-DES-CBC3-SHA",
    0xC012: "ECDHE-RSA-DES-CBC3-SHA",
    0xC008: "ECDHE-ECDSA-DES-CBC3-SHA",
    0x0018: "ADH-RC4-MD5",
    0x001B: "ADH-DES-CBC3-SHA",
    0x0034: "ADH-AES128-SHA",
    0x003A: "ADH-AES256-SHA",
    0xC018: "AECDH-AES128-SHA",
}
_HIGH_RISK_MARKERS = ("NULL", "EXP", "ADH", "AECDH")

# A broad, ordinary list: modern first, legacy CBC after; plus the weak ones last.
_GOOD_SUITES = (
    0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0x009E, 0x009F, 0xC023, 0xC027,
    0xC024, 0xC028, 0xC009, 0xC013, 0xC00A, 0xC014, 0x0033, 0x0039, 0x009C, 0x009D,
    0x003C, 0x003D, 0x002F, 0x0035, 0x0067, 0x006B,
)  # fmt: skip
BROAD_SUITES = _GOOD_SUITES + tuple(WEAK_SUITES)
_SCSV_RENEG = 0x00FF


def build_client_hello(version: int, suites: tuple[int, ...], server_name: str | None) -> bytes:
    body = struct.pack("!H", version) + os.urandom(32) + b"\x00"
    cs = b"".join(struct.pack("!H", s) for s in (*suites, _SCSV_RENEG))
    body += struct.pack("!H", len(cs)) + cs + b"\x01\x00"
    if version >= TLS10:
        exts = b""
        if server_name:
            name = server_name.encode("idna")
            entry = b"\x00" + struct.pack("!H", len(name)) + name
            sni = struct.pack("!H", len(entry)) + entry
            exts += struct.pack("!HH", 0x0000, len(sni)) + sni
        groups = b"\x00\x1d\x00\x17\x00\x18\x00\x19"  # x25519, P-256, P-384, P-521
        exts += struct.pack("!HHH", 0x000A, len(groups) + 2, len(groups)) + groups
        exts += struct.pack("!HH", 0x000B, 2) + b"\x01\x00"  # ec_point_formats: uncompressed
        if version >= TLS12:
            algs = bytes.fromhex("040305030603080408050806040105010601020102 03".replace(" ", ""))
            exts += struct.pack("!HHH", 0x000D, len(algs) + 2, len(algs)) + algs
        body += struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    record_version = SSL3 if version == SSL3 else TLS10
    return b"\x16" + struct.pack("!HH", record_version, len(hs)) + hs


@dataclass(frozen=True, slots=True)
class HelloResult:
    answered: bool  # False: silence, reset or garbage (cannot decide)
    version: int | None = None  # from the ServerHello
    suite: int | None = None
    alert: bool = False


def parse_server_hello(data: bytes) -> HelloResult:
    if len(data) < 5:
        return HelloResult(answered=False)
    ctype = data[0]
    if ctype == 0x15:
        return HelloResult(answered=True, alert=True)
    if ctype != 0x16 or data[1] != 0x03:
        return HelloResult(answered=False)
    hs = data[5:]
    if len(hs) < 4 + 2 + 32 + 1 or hs[0] != 0x02:
        return HelloResult(answered=False)
    version = struct.unpack("!H", hs[4:6])[0]
    sid_len = hs[38]
    off = 39 + sid_len
    if len(hs) < off + 2:
        return HelloResult(answered=False)
    suite = struct.unpack("!H", hs[off : off + 2])[0]
    return HelloResult(answered=True, version=version, suite=suite)


def _hello_complete(buf: bytes) -> bool:
    if len(buf) < 5:
        return False
    if buf[0] == 0x15:
        return len(buf) >= 7
    return len(buf) >= 5 + int.from_bytes(buf[3:5], "big")


async def send_hello(
    ctx: ProbeContext, port: int, version: int, suites: tuple[int, ...]
) -> HelloResult:
    try:
        async with ctx.net.tcp(port) as (reader, writer):
            writer.write(build_client_hello(version, suites, ctx.net.name))
            await writer.drain()
            data = await read_until(reader, _hello_complete, ctx.net.timeout)
            closed = reader.at_eof()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return HelloResult(answered=False)
    result = parse_server_hello(data)
    if not result.answered and data == b"" and closed:
        # An orderly close right after our hello is how many stacks refuse a version.
        return HelloResult(answered=True, alert=True)
    return result


async def check_protocols(ctx: ProbeContext, info: ServiceInfo) -> None:
    port = info.port
    modern = await send_hello(ctx, port, TLS12, BROAD_SUITES)
    accepted: list[int] = []
    undecided: list[int] = []
    for version in (SSL3, TLS10, TLS11):
        r = await send_hello(ctx, port, version, BROAD_SUITES)
        if not r.answered:
            undecided.append(version)
        elif r.version == version and r.suite is not None:
            accepted.append(version)
    if accepted:
        names = ", ".join(VERSION_NAMES[v] for v in accepted)
        sev = Severity.HIGH if SSL3 in accepted else Severity.MEDIUM
        ctx.finding(
            info,
            CheckId.TLS_LEGACY_PROTOCOL,
            f"server completed a ServerHello for {names} (own ClientHello, no local "
            "OpenSSL restriction involved)",
            severity=sev,
            title=f"Legacy protocol accepted: {names}",
        )
    if undecided:
        names = ", ".join(VERSION_NAMES[v] for v in undecided)
        ctx.note(
            info.port,
            info.transport,
            CheckId.TLS_LEGACY_PROTOCOL,
            f"could not be checked for {names}: no parseable answer to our ClientHello",
        )
    # Weak suites: offer only weak suites at the best version the server speaks.
    best = TLS12 if modern.version == TLS12 else (max(accepted) if accepted else None)
    if best is None:
        if not modern.answered:
            ctx.note(
                info.port,
                info.transport,
                CheckId.TLS_WEAK_CIPHER,
                "could not be checked: no parseable answer to a TLS 1.2 ClientHello",
            )
        return
    weak = await send_hello(ctx, port, best, tuple(WEAK_SUITES))
    if weak.answered and weak.suite in WEAK_SUITES:
        name = WEAK_SUITES[weak.suite]
        sev = Severity.HIGH if any(m in name for m in _HIGH_RISK_MARKERS) else Severity.MEDIUM
        ctx.finding(
            info,
            CheckId.TLS_WEAK_CIPHER,
            f"offered only weak suites at {VERSION_NAMES.get(best, hex(best))}; "
            f"server selected {name} (0x{weak.suite:04x})",
            severity=sev,
            title=f"Weak cipher suite accepted: {name}",
        )
    elif not weak.answered:
        ctx.note(
            info.port,
            info.transport,
            CheckId.TLS_WEAK_CIPHER,
            "could not be checked: no parseable answer to the weak-suite ClientHello",
        )


async def fetch_certificate(ctx: ProbeContext, port: int) -> tuple[bytes | None, str]:
    """The leaf certificate (DER) and the negotiated protocol name.

    The handshake is driven by hand over a plain stream (``ssl.MemoryBIO``) and the
    certificate is read the moment the handshake completes. A server that requires a client
    certificate (mutual TLS) sends its refusal right after a TLS 1.3 handshake; once that
    alert has been processed the certificate can no longer be read, and an asyncio TLS
    stream may process it before the caller gets to ask (a race that lost the certificate).
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    try:
        async with ctx.net.tcp(port) as (reader, writer):
            sslobj = insecure_tls_context().wrap_bio(
                incoming, outgoing, server_hostname=ctx.net.name or None
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + ctx.net.timeout
            while True:
                try:
                    sslobj.do_handshake()
                    done = True
                except ssl.SSLWantReadError:
                    done = False
                pending = outgoing.read()
                if pending:
                    writer.write(pending)
                    await writer.drain()
                if done:
                    der = sslobj.getpeercert(binary_form=True)
                    return der, str(sslobj.version() or "")
                left = deadline - loop.time()
                if left <= 0:
                    return None, ""
                data = await asyncio.wait_for(reader.read(65536), left)
                if not data:
                    return None, ""
                incoming.write(data)
    except (OSError, TimeoutError, ssl.SSLError, ValueError):
        return None, ""


async def _verify_chain(ctx: ProbeContext, port: int) -> int | None:
    """OpenSSL's verify code against the system trust store (0 = trusted), None if unknown."""
    vctx = ssl.create_default_context()
    vctx.check_hostname = False
    try:
        vctx.set_ciphers("ALL:@SECLEVEL=0")
        vctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    except (ValueError, ssl.SSLError):
        pass
    try:
        async with ctx.net.tcp(port, tls=vctx):
            return 0
    except ssl.SSLCertVerificationError as exc:
        return int(exc.verify_code)
    except (OSError, TimeoutError, ssl.SSLError):
        return None


def _name_matches(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


def analyse_certificate(
    der: bytes, *, name: str | None, address: str, now: dt.datetime | None = None
) -> list[tuple[CheckId, str, Severity | None]]:
    """Policy checks on one leaf certificate; returns (check, evidence, severity override)."""
    now = now or dt.datetime.now(dt.UTC)
    cert = x509.load_der_x509_certificate(der)
    out: list[tuple[CheckId, str, Severity | None]] = []
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    if na < now:
        out.append(
            (CheckId.TLS_EXPIRED_CERTIFICATE, f"notAfter {na:%Y-%m-%d %H:%M} UTC is past", None)
        )
    elif nb > now:
        out.append(
            (
                CheckId.TLS_EXPIRED_CERTIFICATE,
                f"notBefore {nb:%Y-%m-%d %H:%M} UTC is in the future (not yet valid)",
                None,
            )
        )
    if is_self_signed(cert):
        out.append(
            (
                CheckId.TLS_SELF_SIGNED_CERTIFICATE,
                f"issuer equals subject ({cert.subject.rfc4514_string()}) and the "
                "certificate verifies with its own key",
                None,
            )
        )
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        sev = Severity.HIGH if key.key_size < 1024 else None
        out.append((CheckId.TLS_WEAK_KEY, f"RSA key of {key.key_size} bits (< 2048)", sev))
    elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < 256:
        out.append(
            (
                CheckId.TLS_WEAK_KEY,
                f"EC key on {key.curve.name} ({key.curve.key_size} bits < 256)",
                None,
            )
        )
    elif isinstance(key, dsa.DSAPublicKey) and key.key_size < 2048:
        out.append((CheckId.TLS_WEAK_KEY, f"DSA key of {key.key_size} bits (< 2048)", None))
    try:
        algo = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algo = None
    if isinstance(algo, hashes.MD5 | hashes.SHA1):
        sev = Severity.HIGH if isinstance(algo, hashes.MD5) else None
        out.append(
            (CheckId.TLS_WEAK_SIGNATURE, f"signature algorithm uses {algo.name.upper()}", sev)
        )
    mismatch = hostname_mismatch(cert, name=name, address=address)
    if mismatch:
        out.append((CheckId.TLS_HOSTNAME_MISMATCH, mismatch, None))
    return out


def is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        return False  # same name, other key: issued by a CA that reuses its name
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # e.g. SHA-1/MD5 signatures the library no longer verifies: check by hand
        return _verify_legacy(cert)
    return True


def _verify_legacy(cert: x509.Certificate) -> bool:
    key = cert.public_key()
    try:
        algo = cert.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey) and algo is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algo)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey) and algo is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algo))
            return True
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    return True  # issuer == subject and the signature cannot be checked here


def hostname_mismatch(cert: x509.Certificate, *, name: str | None, address: str) -> str | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    if name:
        candidates = dns or cns
        if not any(_name_matches(c, name) for c in candidates):
            return f"certificate names {', '.join(candidates + ips) or 'nothing'}, not {name}"
        return None
    # Scanned by address: only judge when the certificate lists addresses at all.
    if ips:
        want = ipaddress.ip_address(address)
        if not any(ipaddress.ip_address(i) == want for i in ips):
            return f"certificate lists addresses {', '.join(ips)}, not {address}"
    return None


async def check_tls(ctx: ProbeContext, info: ServiceInfo) -> None:
    """All TLS checks on a port already known to speak TLS."""
    der, negotiated = await fetch_certificate(ctx, info.port)
    if negotiated:
        info.extra["tls_version"] = negotiated
    if der is None:
        ctx.note(
            info.port,
            info.transport,
            "tls-certificate",
            "could not be checked: no certificate obtained in a handshake",
        )
    else:
        try:
            cert = x509.load_der_x509_certificate(der)
            info.extra["cert_subject"] = cert.subject.rfc4514_string()[:200]
            info.extra["cert_issuer"] = cert.issuer.rfc4514_string()[:200]
            info.extra["cert_not_after"] = cert.not_valid_after_utc.isoformat()
            results = analyse_certificate(der, name=ctx.net.name, address=ctx.net.address)
        except ValueError as exc:
            ctx.note(
                info.port, info.transport, "tls-certificate", f"unparseable certificate: {exc}"
            )
            results = []
        for check, evidence, sev in results:
            ctx.finding(info, check, evidence, severity=sev)
        self_signed = any(c is CheckId.TLS_SELF_SIGNED_CERTIFICATE for c, _, _ in results)
        if not self_signed:
            code = await _verify_chain(ctx, info.port)
            if code in (2, 19, 20, 21, 24, 27, 28):
                ctx.finding(
                    info,
                    CheckId.TLS_UNTRUSTED_CERTIFICATE,
                    f"chain does not verify against the system trust store "
                    f"(OpenSSL verify code {code})",
                )
            elif code is None:
                ctx.note(
                    info.port,
                    info.transport,
                    CheckId.TLS_UNTRUSTED_CERTIFICATE,
                    "could not be checked: verifying handshake failed for another reason",
                )
    await check_protocols(ctx, info)
