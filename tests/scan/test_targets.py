"""Target and port expressions: what they expand to, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetguard.protocol.models import TransportProto
from fleetguard.scan import (
    InvalidPortSpecError,
    InvalidScanOptionError,
    InvalidTargetError,
    ScanScopeTooLargeError,
    build_options,
    expand_target_files,
    parse_ports,
    parse_targets,
)
from fleetguard.scan.targets import DEFAULT_TCP_PORTS, DEFAULT_UDP_PORTS


def addrs(*items: str) -> list[str]:
    return [t.address for t in parse_targets(items)]


def test_addresses_cidrs_ranges() -> None:
    assert addrs("127.0.0.1", "::1") == ["127.0.0.1", "::1"]
    assert addrs("127.0.1.0/30") == ["127.0.1.1", "127.0.1.2"]
    assert addrs("127.0.1.10-12") == ["127.0.1.10", "127.0.1.11", "127.0.1.12"]
    assert addrs("127.0.1.254-127.0.2.1") == [
        "127.0.1.254",
        "127.0.1.255",
        "127.0.2.0",
        "127.0.2.1",
    ]
    assert len(addrs("127.0.2.0/24")) == 254
    assert addrs("::1/128") == ["::1"]
    assert addrs("127.0.0.1", "127.0.0.1/32") == ["127.0.0.1"]  # de-duplicated


def test_hostname() -> None:
    t = parse_targets(["localhost"])
    assert t and all(x.name == "localhost" for x in t)
    assert {x.address for x in t} <= {"127.0.0.1", "::1"}


def test_target_file_is_expanded_by_the_cli_helper(tmp_path: Path) -> None:
    f = tmp_path / "targets.txt"
    f.write_text("# lab\n127.0.0.5\n\n127.0.0.6-7  # range\n")
    items = expand_target_files([f"@{f}", "127.0.0.9"])
    assert items == ["127.0.0.5", "127.0.0.6-7", "127.0.0.9"]
    assert addrs(*items) == ["127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.9"]


def test_parse_targets_never_reads_a_file(tmp_path: Path) -> None:
    f = tmp_path / "targets.txt"
    f.write_text("127.0.0.5\n")
    with pytest.raises(InvalidTargetError, match="read by the CLI only") as caught:
        parse_targets([f"@{f}"])
    assert "127.0.0.5" not in caught.value.message


def test_unreadable_target_file_is_named() -> None:
    with pytest.raises(InvalidTargetError, match="cannot read target file"):
        expand_target_files(["@/nonexistent/file"])


def test_a_long_bad_target_is_echoed_truncated() -> None:
    with pytest.raises(InvalidTargetError) as caught:
        parse_targets(["x!" * 500])
    assert len(caught.value.message) < 200
    assert "(1000 characters)" in caught.value.message


@pytest.mark.parametrize(
    "bad",
    [
        "999.1.1.1",
        "10.0.0.0/33",
        "10.0.0.9-3",
        "not a host!",
        "",
        "@/nonexistent/file",
        "10.0.0.1-::1",
        "fe80::1-10.0.0.1",
    ],
)
def test_bad_targets(bad: str) -> None:
    with pytest.raises(InvalidTargetError):
        parse_targets([bad])


def test_scope_limit() -> None:
    with pytest.raises(ScanScopeTooLargeError):
        parse_targets(["10.0.0.0/8"])
    with pytest.raises(ScanScopeTooLargeError):
        parse_targets(["10.0.0.0/24"], max_addresses=100)


def test_ports() -> None:
    specs = parse_ports("default")
    tcp = [s.port for s in specs if s.transport is TransportProto.TCP]
    udp = [s.port for s in specs if s.transport is TransportProto.UDP]
    assert tcp == sorted(DEFAULT_TCP_PORTS) and udp == sorted(DEFAULT_UDP_PORTS)
    for must in (21, 22, 23, 2323, 80, 81, 8000, 8080, 8081, 443, 8443, 554, 1883, 8883, 7547):
        assert must in tcp
    assert {161, 1900, 5683, 5353} <= set(udp)
    specs = parse_ports("23,80-82,U:161,T:8080")
    assert [(s.port, s.transport.value) for s in specs] == [
        (23, "tcp"),
        (80, "tcp"),
        (81, "tcp"),
        (82, "tcp"),
        (8080, "tcp"),
        (161, "udp"),
    ]


@pytest.mark.parametrize("bad", ["", "0", "65536", "80-", "abc", "90-80", "22,,23", "U:x"])
def test_bad_ports(bad: str) -> None:
    with pytest.raises(InvalidPortSpecError):
        parse_ports(bad)


def test_bad_options() -> None:
    with pytest.raises(InvalidScanOptionError):
        build_options(["127.0.0.1"], timeout=0)
    with pytest.raises(InvalidScanOptionError):
        build_options(["127.0.0.1"], concurrency=0)
    with pytest.raises(InvalidScanOptionError):
        build_options(["127.0.0.1"], max_logins=-1)
