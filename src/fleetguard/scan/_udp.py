"""UDP discovery protocols: SSDP/UPnP (with the device description), CoAP, mDNS."""

from __future__ import annotations

import ipaddress
import re
import secrets
import struct
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

from fleetguard.protocol.models import TransportProto
from fleetguard.protocol.scan_report import PortState
from fleetguard.scan._context import ProbeContext
from fleetguard.scan._http import HttpClient
from fleetguard.scan.checks import CheckId
from fleetguard.scan.models import Service, ServiceInfo, Severity

# --- SSDP / UPnP ----------------------------------------------------------------------------

M_SEARCH = (
    b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\n'
    b"MX: 1\r\nST: ssdp:all\r\nUSER-AGENT: fleetguard-scan/0.1\r\n\r\n"
)


def _ssdp_headers(data: bytes) -> dict[str, str]:
    lines = data.decode("latin-1").split("\r\n")
    out: dict[str, str] = {}
    for line in lines[1:]:
        k, colon, v = line.partition(":")
        if colon:
            out[k.strip().lower()] = v.strip()
    return out


def _same_host(host: str, ctx: ProbeContext) -> bool:
    h = host.strip("[]").lower()
    if ctx.net.name and h == ctx.net.name.lower():
        return True
    try:
        return ipaddress.ip_address(h) == ipaddress.ip_address(ctx.net.address)
    except ValueError:
        return False


def parse_description(xml: bytes) -> dict[str, str]:
    try:
        root = ET.fromstring(xml[:65536])  # noqa: S314
    except ET.ParseError:
        return {}
    out: dict[str, str] = {}
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if (
            tag
            in (
                "deviceType",
                "friendlyName",
                "manufacturer",
                "modelName",
                "modelNumber",
                "serialNumber",
                "UDN",
                "presentationURL",
                "modelDescription",
            )
            and el.text
        ):
            out.setdefault(tag, el.text.strip()[:120])
    return out


async def probe_ssdp(ctx: ProbeContext, port: int) -> tuple[PortState, ServiceInfo | None]:
    state, replies = await ctx.net.udp_exchange(
        port,
        M_SEARCH,
        accept=lambda d: d.startswith(b"HTTP/1.1 200") or d.startswith(b"NOTIFY"),
        collect=0.2,
    )
    if not replies:
        return state, None
    info = ServiceInfo(port, TransportProto.UDP, Service.UPNP)
    hdrs = _ssdp_headers(replies[0])
    if hdrs.get("server"):
        info.banner = hdrs["server"][:200]
    loc = hdrs.get("location", "")
    desc: dict[str, str] = {}
    if loc:
        parts = urlsplit(loc)
        if parts.scheme == "http" and parts.hostname and _same_host(parts.hostname, ctx):
            client = HttpClient(ctx, parts.port or 80, tls=False)
            resp, _ = await client.get_following(parts.path or "/", hops=1)
            if resp is not None and resp.status == 200:
                desc = parse_description(resp.body)
        else:
            ctx.note(
                port,
                TransportProto.UDP,
                CheckId.UPNP_EXPOSED,
                f"description at {loc[:100]} is on another host: not fetched (out of scope)",
            )
    info.vendor = desc.get("manufacturer")
    info.model = " ".join(x for x in (desc.get("modelName"), desc.get("modelNumber")) if x) or None
    info.product = desc.get("friendlyName") or info.model
    for k in ("deviceType", "serialNumber", "UDN"):
        if k in desc:
            info.extra[k] = desc[k]
    if loc:
        info.extra["location"] = loc[:200]
    seen = ", ".join(f"{k}={v!r}" for k, v in desc.items() if k != "presentationURL")
    ctx.finding(
        info,
        CheckId.UPNP_EXPOSED,
        f"answered a unicast M-SEARCH ({len(replies)} replies)"
        + (f"; description: {seen}" if seen else ""),
        severity=Severity.MEDIUM,
    )
    return PortState.OPEN, info


# --- CoAP -----------------------------------------------------------------------------------

_COAP_CODES = {
    0x45: "2.05 Content",
    0x81: "4.01 Unauthorized",
    0x84: "4.04 Not Found",
    0x85: "4.05 Method Not Allowed",
}


def coap_get_well_known(mid: int, token: bytes) -> bytes:
    hdr = bytes((0x40 | len(token), 0x01)) + struct.pack("!H", mid) + token
    opt1 = bytes((0xB0 | 11,)) + b".well-known"  # Uri-Path (11), length 11
    opt2 = bytes((0x04,)) + b"core"  # delta 0, length 4
    return hdr + opt1 + opt2


def parse_coap(data: bytes) -> tuple[int, int, bytes, bytes] | None:
    """(code, message id, token, payload)."""
    if len(data) < 4 or data[0] >> 6 != 1:
        return None
    tkl = data[0] & 0x0F
    code = data[1]
    mid = struct.unpack("!H", data[2:4])[0]
    token = data[4 : 4 + tkl]
    rest = data[4 + tkl :]
    idx = rest.find(b"\xff")
    payload = rest[idx + 1 :] if idx >= 0 else b""
    return code, mid, token, payload


async def probe_coap(ctx: ProbeContext, port: int) -> tuple[PortState, ServiceInfo | None]:
    mid, token = secrets.randbelow(65536), secrets.token_bytes(4)

    def accept(d: bytes) -> bool:
        r = parse_coap(d)
        return r is not None and (r[1] == mid or r[2] == token)

    state, replies = await ctx.net.udp_exchange(
        port, coap_get_well_known(mid, token), accept=accept
    )
    if not replies:
        return state, None
    r = parse_coap(replies[0])
    assert r is not None
    code, _, _, payload = r
    info = ServiceInfo(port, TransportProto.UDP, Service.COAP)
    info.extra["well_known_core"] = _COAP_CODES.get(code, f"{code >> 5}.{code & 0x1F:02d}")
    if code == 0x45:
        resources = re.findall(r"<([^>]+)>", payload.decode("utf-8", "replace"))
        info.extra["resources"] = ", ".join(resources[:20])[:300]
        ctx.finding(
            info,
            CheckId.NO_AUTHENTICATION,
            f"GET /.well-known/core over plain CoAP (no DTLS/OSCORE) answered 2.05 with "
            f"{len(resources)} resources: {', '.join(resources[:8])}",
            severity=Severity.MEDIUM,
            title="CoAP resources readable without security",
        )
    return PortState.OPEN, info


# --- mDNS -----------------------------------------------------------------------------------


def mdns_query(qid: int) -> bytes:
    name = b"".join(bytes((len(p),)) + p for p in (b"_services", b"_dns-sd", b"_udp", b"local"))
    return struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + name + b"\x00" + struct.pack("!HH", 12, 1)


def _names(data: bytes) -> list[str]:
    return sorted(
        {
            m.decode("ascii", "replace")
            for m in re.findall(rb"_[a-z0-9-]{1,30}\x04_(?:tcp|udp)", data)
        }
    )


async def probe_mdns(ctx: ProbeContext, port: int) -> tuple[PortState, ServiceInfo | None]:
    qid = secrets.randbelow(65536)

    def accept(d: bytes) -> bool:
        return len(d) >= 12 and d[2] & 0x80 != 0 and struct.unpack("!H", d[6:8])[0] > 0

    state, replies = await ctx.net.udp_exchange(port, mdns_query(qid), accept=accept)
    if not replies:
        return state, None
    info = ServiceInfo(port, TransportProto.UDP, Service.MDNS)
    names = _names(replies[0])
    if names:
        info.extra["services"] = ", ".join(n.replace("\x04", ".") for n in names)[:300]
    return PortState.OPEN, info
