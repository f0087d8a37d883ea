"""`fleetguard scan` against real Debian daemons: every planted weakness found, twins clean.

Precision and recall are computed over (address, check) pairs, ``service-exposed`` excluded,
and printed with a per-device table (``pytest tests/scan_debian -s`` or ``-rP`` shows it).

Trust: the scanner's "untrusted certificate" check uses OpenSSL's default trust store. The
scan here runs with ``SSL_CERT_FILE`` pointing at the lab CA, the way an operator's store
holds the fleet CA; so the hardened TLS twins (lab-CA certificates) must give no finding.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from fleetguard.scan import ScanReport, build_options, report_document, scan

from .conftest import DebianLab, Device


@pytest.fixture(scope="module")
def reports(
    debian_lab: DebianLab,
) -> tuple[dict[str, ScanReport], float]:
    devs = debian_lab.running
    per_device: dict[str, float] = {}

    async def run_all() -> list[ScanReport]:
        # One scan per device, all at once: each host is asked only about its own ports.
        return await asyncio.gather(*(timed(d) for d in devs))

    async def timed(d: Device) -> ScanReport:
        t = time.perf_counter()
        r = await scan(build_options([d.address], ports=d.port_spec, login_delay=0.0))
        per_device[d.address] = time.perf_counter() - t
        return r

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SSL_CERT_FILE", str(debian_lab.pki.ca_file))
        mp.delenv("SSL_CERT_DIR", raising=False)
        t0 = time.perf_counter()
        result = asyncio.run(run_all())
        elapsed = time.perf_counter() - t0
    slowest = sorted(per_device.items(), key=lambda kv: -kv[1])[:3]
    print("\nslowest device scans: " + ", ".join(f"{a} {t:.1f}s" for a, t in slowest))
    return {d.address: r for d, r in zip(devs, result, strict=True)}, elapsed


def _found(report: ScanReport) -> set[str]:
    return {f.check for f in report.findings if f.check != "service-exposed"}


def test_precision_and_recall(
    debian_lab: DebianLab,
    reports: tuple[dict[str, ScanReport], float],
    record_property: pytest.RecordProperty,
) -> None:
    by_host, elapsed = reports
    if not debian_lab.running:
        pytest.skip(
            "no Debian service could run here: "
            + "; ".join(sorted({d.skipped or d.failed or "" for d in debian_lab.devices.values()}))
        )
    # a device that failed to start counts as missed: never silently dropped
    broken = [d for d in debian_lab.devices.values() if d.failed]
    expected = {(d.address, c) for d in [*debian_lab.running, *broken] for c in d.expected}
    found = {(h, c) for h, r in by_host.items() for c in _found(r)}
    tp, fp, fn = expected & found, found - expected, expected - found
    precision = len(tp) / len(found) if found else 1.0
    recall = len(tp) / len(expected) if expected else 1.0
    lines = [
        f"Debian-service lab: {len(debian_lab.running)} of {len(debian_lab.devices)} devices "
        f"running, scanned in {elapsed:.2f}s"
    ]
    for d in debian_lab.devices.values():
        if d.skipped or d.failed:
            what = f"SKIPPED: {d.skipped}" if d.skipped else f"FAILED TO START: {d.failed}"
            lines.append(f"  {d.address:12} {d.label:62} {what}")
            continue
        got = sorted(_found(by_host[d.address]))
        mark = "ok" if set(got) == d.expected else "MISMATCH"
        lines.append(f"  {d.address:12} {d.label:62} {', '.join(got) or '-'}  [{mark}]")
    lines.append(
        f"  precision {precision:.3f}  recall {recall:.3f}  "
        f"(tp {len(tp)}, fp {len(fp)}, fn {len(fn)}; pairs expected {len(expected)})"
    )
    print("\n" + "\n".join(lines))
    record_property("precision", f"{precision:.3f}")
    record_property("recall", f"{recall:.3f}")
    assert not fp, f"false positives: {sorted(fp)}"
    assert not fn, f"missed: {sorted(fn)}"
    assert precision == 1.0 and recall == 1.0


ADDRESSES = [
    f"127.0.77.{n}"
    for n in (11, 12, 21, 22, 31, 32, 33, 34, 35, 36, 37, 38, 41, 42, 51, 52, 61, 62)
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_device(
    address: str, debian_lab: DebianLab, reports: tuple[dict[str, ScanReport], float]
) -> None:
    """Each device on its own: exactly its planted weaknesses (a twin: nothing beyond inherent)."""
    dev: Device = debian_lab.devices[address]
    if dev.skipped:
        pytest.skip(f"{dev.label}: {dev.skipped}")
    assert dev.failed is None, f"{dev.label} did not start: {dev.failed}"
    report = reports[0][address]
    got = _found(report)
    assert got == dev.expected, (dev.label, sorted(got), [n.reason for n in report.notes])
    # the service was identified by protocol; SNMP with an unknown community stays silent
    host = report.hosts[0]
    assert host.services or all(p.state.value == "open|filtered" for p in host.ports), host
    assert not any("internal error" in n.reason for n in report.notes), report.notes


def test_identification_and_evidence(
    debian_lab: DebianLab, reports: tuple[dict[str, ScanReport], float]
) -> None:
    by_host = reports[0]
    want = {
        "127.0.77.11": "telnet", "127.0.77.21": "ssh", "127.0.77.31": "http",
        "127.0.77.32": "https", "127.0.77.41": "mqtt", "127.0.77.51": "ftp",
        "127.0.77.61": "snmp",
    }  # fmt: skip
    for addr, service in want.items():
        if addr not in by_host:
            continue
        services = by_host[addr].hosts[0].services
        assert services and services[0].service.value == service, (addr, services)
    products = {
        "127.0.77.21": "OpenSSH", "127.0.77.31": "lighttpd", "127.0.77.41": "mosquitto",
        "127.0.77.51": "vsFTPd",
    }  # fmt: skip
    for addr, product in products.items():
        if addr in by_host:
            assert by_host[addr].hosts[0].services[0].product == product, addr
    if "127.0.77.37" in by_host:
        legacy = next(
            f for f in by_host["127.0.77.37"].findings if f.check == "tls-legacy-protocol"
        )
        assert "TLS 1.0" in legacy.evidence and "SSLv3" not in legacy.evidence
    # no planted secret appears in any report (defaults are shown masked)
    text = json.dumps([report_document(r) for r in by_host.values()])
    for secret in debian_lab.secrets:
        if len(secret) > 3:
            assert f":{secret}" not in text and f"'{secret}'" not in text
