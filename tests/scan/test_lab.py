"""One scan over the whole loopback lab: every weakness found, no finding on hardened twins.

Prints precision and recall over (address, check) pairs; run with ``-s`` to see the table.
"""

from __future__ import annotations

import json
import time

import pytest

from fleetguard.scan import ScanReport, Service, build_options, report_document, run_scan

from .conftest import LabInfo


@pytest.fixture(scope="module")
def lab_report(lab: LabInfo) -> tuple[ScanReport, float]:
    opts = build_options(
        list(lab.devices), ports=lab.port_spec(), timeout=1.0, login_delay=0.0, max_logins=10
    )
    t0 = time.perf_counter()
    report = run_scan(opts)
    return report, time.perf_counter() - t0


def _pairs(report: ScanReport) -> set[tuple[str, str]]:
    return {(f.host, f.check) for f in report.findings if f.check != "service-exposed"}


def test_precision_and_recall(lab: LabInfo, lab_report: tuple[ScanReport, float]) -> None:
    report, elapsed = lab_report
    expected = {(d.address, c) for d in lab.devices.values() for c in d.expected}
    found = _pairs(report)
    tp, fp, fn = expected & found, found - expected, expected - found
    precision = len(tp) / len(found) if found else 1.0
    recall = len(tp) / len(expected) if expected else 1.0
    print(
        f"\nscan lab: {len(lab.devices)} devices, {len(lab.tcp_ports)} TCP + "
        f"{len(lab.udp_ports)} UDP ports each, {elapsed:.2f}s"
    )
    for d in sorted(lab.devices.values(), key=lambda d: d.address):
        got = sorted(c for h, c in found if h == d.address)
        print(f"  {d.address:12} {d.label:55} {', '.join(got) or '-'}")
    print(
        f"  precision {precision:.3f}  recall {recall:.3f}  (tp {len(tp)}, fp {len(fp)}, fn {len(fn)})"
    )
    assert not fp, f"false positives: {sorted(fp)}"
    assert not fn, f"missed: {sorted(fn)}"


def test_every_device_is_identified_by_protocol(
    lab: LabInfo, lab_report: tuple[ScanReport, float]
) -> None:
    report, _ = lab_report
    services = {(h.target.address, s.port): s for h in report.hosts for s in h.services}
    want = {
        "127.0.0.21": Service.TELNET, "127.0.0.23": Service.FTP, "127.0.0.25": Service.HTTP,
        "127.0.0.29": Service.RTSP, "127.0.0.31": Service.SNMP, "127.0.0.32": Service.UPNP,
        "127.0.0.33": Service.COAP, "127.0.0.36": Service.HTTPS, "127.0.0.38": Service.TLS,
        "127.0.0.34": Service.MQTT, "127.0.0.44": Service.SSH,
    }  # fmt: skip
    for addr, service in want.items():
        if addr not in lab.devices:
            continue  # optional part of the lab (no mosquitto / asyncssh here)
        dev = lab.devices[addr]
        port = (dev.tcp or dev.udp)[0]
        assert services[(addr, port)].service is service, (addr, services.get((addr, port)))
    # vendor / product / version when the service reveals them
    ftp = services[("127.0.0.23", lab.devices["127.0.0.23"].tcp[0])]
    assert (ftp.product, ftp.version) == ("vsFTPd", "3.0.3")
    upnp = services[("127.0.0.32", lab.devices["127.0.0.32"].udp[0])]
    assert upnp.vendor == "Acme Cams" and upnp.model == "AC-100 2.1"
    snmp = services[("127.0.0.31", lab.devices["127.0.0.31"].udp[0])]
    assert snmp.banner and "ipcam" in snmp.banner
    if "127.0.0.34" in lab.devices:
        mq = services[("127.0.0.34", lab.devices["127.0.0.34"].tcp[0])]
        assert mq.product == "mosquitto" and mq.version


def test_every_open_service_is_inventoried(lab_report: tuple[ScanReport, float]) -> None:
    report, _ = lab_report
    inventory = {(f.host, f.port) for f in report.findings if f.check == "service-exposed"}
    for h in report.hosts:
        for s in h.services:
            assert (h.target.address, s.port) in inventory


def test_json_document_is_stable(lab_report: tuple[ScanReport, float]) -> None:
    report, _ = lab_report
    doc = json.loads(json.dumps(report_document(report)))
    assert set(doc) >= {"targets", "started", "finished", "hosts", "findings"}
    for h in doc["hosts"]:
        assert set(h) >= {"address", "services"}
        for s in h["services"]:
            assert set(s) >= {"port", "protocol", "service", "product", "version", "tls"}
            assert s["protocol"] in ("tcp", "udp") and s["service"] == s["service"].lower()
    for f in doc["findings"]:
        assert set(f) == {
            "host",
            "port",
            "protocol",
            "service",
            "check",
            "severity",
            "title",
            "evidence",
            "remediation",
            "references",
        }
        assert f["severity"] in ("critical", "high", "medium", "low", "info")
        assert f["references"], f


def test_no_password_in_evidence(lab: LabInfo, lab_report: tuple[ScanReport, float]) -> None:
    report, _ = lab_report
    text = json.dumps(report_document(report))
    for cred in lab.creds.values():
        if len(cred.password) > 3:
            assert f":{cred.password}" not in text


def test_legacy_tls_checked_honestly(lab: LabInfo, lab_report: tuple[ScanReport, float]) -> None:
    report, _ = lab_report
    stub = [f for f in report.findings if f.host == "127.0.0.38"]
    legacy = next(f for f in stub if f.check == "tls-legacy-protocol")
    assert "SSLv3" in legacy.evidence and legacy.severity.value == "high"
    weak = next(f for f in stub if f.check == "tls-weak-cipher")
    assert "RC4" in weak.evidence
    # the stub cannot finish a handshake: the certificate checks say so instead of passing
    assert any(n.host == "127.0.0.38" and "could not be checked" in n.reason for n in report.notes)
    if "127.0.0.37" in lab.devices:
        f = next(
            f
            for f in report.findings
            if f.host == "127.0.0.37" and f.check == "tls-legacy-protocol"
        )
        assert "TLS 1.0" in f.evidence and "SSLv3" not in f.evidence
