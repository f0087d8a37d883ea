"""SNMP v1/v2c: GET sysDescr.0 with default communities, all sent in one burst (no library)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from fleetguard.protocol.models import TransportProto
from fleetguard.protocol.scan_report import PortState
from fleetguard.scan._context import ProbeContext
from fleetguard.scan.checks import CheckId
from fleetguard.scan.credentials import SNMP_COMMUNITIES
from fleetguard.scan.models import Service, ServiceInfo, Severity

SYS_DESCR = (1, 3, 6, 1, 2, 1, 1, 1, 0)


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(b),)) + b


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _len(len(value)) + value


def _int(n: int) -> bytes:
    return _tlv(0x02, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def _oid(oid: tuple[int, ...]) -> bytes:
    out = bytearray((oid[0] * 40 + oid[1],))
    for part in oid[2:]:
        enc = bytearray((part & 0x7F,))
        part >>= 7
        while part:
            enc.insert(0, 0x80 | (part & 0x7F))
            part >>= 7
        out += enc
    return _tlv(0x06, bytes(out))


def get_request(community: str, version: int, request_id: int) -> bytes:
    varbind = _tlv(0x30, _oid(SYS_DESCR) + b"\x05\x00")
    pdu = _tlv(0xA0, _int(request_id) + _int(0) + _int(0) + _tlv(0x30, varbind))
    return _tlv(0x30, _int(version) + _tlv(0x04, community.encode()) + pdu)


def _read(data: bytes, i: int) -> tuple[int, bytes, int]:
    tag = data[i]
    n = data[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[i : i + k], "big")
        i += k
    return tag, data[i : i + n], i + n


def parse_response(data: bytes) -> tuple[int, str, int, int, bytes] | None:
    """(version, community, request_id, error_status, first value) of a GetResponse."""
    try:
        tag, msg, _ = _read(data, 0)
        if tag != 0x30:
            return None
        _, ver, i = _read(msg, 0)
        _, comm, i = _read(msg, i)
        tag, pdu, _ = _read(msg, i)
        if tag != 0xA2:
            return None
        _, rid, j = _read(pdu, 0)
        _, err, j = _read(pdu, j)
        _, _idx, j = _read(pdu, j)
        _, vbl, _ = _read(pdu, j)
        _, vb, _ = _read(vbl, 0)
        _, _name, k = _read(vb, 0)
        _, value, _ = _read(vb, k)
        return (
            int.from_bytes(ver, "big"),
            comm.decode("latin-1"),
            int.from_bytes(rid, "big", signed=True),
            int.from_bytes(err, "big"),
            value,
        )
    except (IndexError, ValueError):
        return None


async def probe_snmp(ctx: ProbeContext, port: int) -> tuple[PortState, ServiceInfo | None]:
    if not ctx.options.credentials:
        ctx.note(
            port,
            TransportProto.UDP,
            CheckId.SNMP_DEFAULT_COMMUNITY,
            "not checked: --no-credentials forbids trying community strings",
        )
        return PortState.OPEN_FILTERED, None
    budget = ctx.budget(Service.SNMP, port)
    n = min(len(SNMP_COMMUNITIES), max(budget.left, 0))
    budget.left -= n
    sent, packets = _community_requests(SNMP_COMMUNITIES[:n])
    if not packets:
        return PortState.OPEN_FILTERED, None

    def accept(d: bytes) -> bool:
        r = parse_response(d)
        return r is not None and r[2] in sent

    state, replies = await ctx.net.udp_burst(port, packets, accept=accept)
    if not replies:
        return state, None
    info = ServiceInfo(port, TransportProto.UDP, Service.SNMP)
    accepted, descr = _accepted_communities(replies, sent)
    if descr:
        text = " ".join(descr.decode("utf-8", "replace").split())
        info.banner = text[:200]
        info.product = text.split(" ")[0][:60] if text else None
    if accepted:
        _report_communities(ctx, info, accepted)
    return PortState.OPEN, info


def _community_requests(
    communities: Sequence[str],
) -> tuple[dict[int, tuple[str, str]], list[bytes]]:
    """A GET for each community in v2c and v1, by request id: what each id asked."""
    sent: dict[int, tuple[str, str]] = {}
    packets: list[bytes] = []
    base = secrets.randbelow(1 << 30)
    for k, community in enumerate(communities):
        for version, label in ((1, "v2c"), (0, "v1")):
            rid = base + 2 * k + (1 if version else 0)
            sent[rid] = (community, label)
            packets.append(get_request(community, version, rid))
    return sent, packets


def _accepted_communities(
    replies: list[bytes], sent: dict[int, tuple[str, str]]
) -> tuple[dict[str, list[str]], bytes]:
    """The communities answered without error, with their versions; the first sysDescr."""
    accepted: dict[str, list[str]] = {}
    descr = b""
    for d in replies:
        r = parse_response(d)
        if r is None or r[3] != 0:
            continue
        community, label = sent[r[2]]
        versions = accepted.setdefault(community, [])
        if label not in versions:
            versions.append(label)
        descr = descr or r[4]
    return accepted, descr


def _report_communities(
    ctx: ProbeContext, info: ServiceInfo, accepted: dict[str, list[str]]
) -> None:
    listing = "; ".join(f"{c!r} ({'/'.join(v)})" for c, v in accepted.items())
    ctx.finding(
        info,
        CheckId.SNMP_DEFAULT_COMMUNITY,
        f"GET sysDescr.0 answered for community {listing}"
        + (f": {info.banner!r}" if info.banner else ""),
        severity=Severity.HIGH,
    )
    ctx.finding(
        info,
        CheckId.CLEARTEXT_PROTOCOL,
        "SNMP v1/v2c: community strings and data cross the network unencrypted",
        title="SNMPv1/v2c exposed",
    )
