"""The connection guard's rules in-process: whom a connection counts against, eviction order,
limits that fit the open-file limit, and the `serve` options. The attacks against a real
server are in tests/security/test_slowloris.py."""

from __future__ import annotations

import asyncio
import inspect
import resource
import socket
from collections.abc import Iterator
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from fleetguard.cli.installation import serve_command
from fleetguard.cli.main import app
from fleetguard.core.errors import ValidationFailedError
from fleetguard.server.connections.guard import ConnectionGuard, address_key
from fleetguard.server.connections.limits import (
    DEVICE_ENDPOINT,
    OPERATOR_API,
    RESERVED_FILES,
    ListenerLimits,
    fit_to_open_files,
)


def test_a_connection_counts_against_its_ipv4_address_or_its_ipv6_64() -> None:
    assert address_key(("192.0.2.7", 443)) == "192.0.2.7"
    assert address_key(("::ffff:192.0.2.7", 443, 0, 0)) == "192.0.2.7"
    # One IPv6 host usually has a whole /64: its addresses count together.
    assert address_key(("2001:db8:1:2::1", 443, 0, 0)) == address_key(
        ("2001:db8:1:2:ffff::9", 443, 0, 0)) == "2001:db8:1:2::/64"
    assert address_key(("2001:db8:1:3::1", 443, 0, 0)) != "2001:db8:1:2::/64"
    assert address_key("") == "local"


@pytest.mark.parametrize("change", [
    {"max_connections": 0}, {"max_per_address": 0}, {"idle_timeout_s": 0},
    {"body_min_rate": 0}, {"max_per_address": 9000},
])
def test_nonsense_limits_are_refused_with_the_field_named(change: dict[str, int]) -> None:
    with pytest.raises(ValidationFailedError) as refused:
        replace(DEVICE_ENDPOINT, **change)
    assert refused.value.field == next(iter(change))


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made: list[socket.socket] = []
    yield made
    for sock in made:
        sock.close()


def _socket(made: list[socket.socket]) -> socket.socket:
    ours, theirs = socket.socketpair()
    made += [ours, theirs]
    return ours


def test_a_full_listener_evicts_an_idle_connection_first_and_never_a_busy_one(
    sockets: list[socket.socket],
) -> None:
    async def scenario() -> None:
        guard = ConnectionGuard("test", ListenerLimits(max_connections=3, max_per_address=2))
        slow = guard.admit("a", _socket(sockets))
        working = guard.admit("b", _socket(sockets))
        idle = guard.admit("c", _socket(sockets))
        assert slow and working and idle
        guard.waiting(slow, mid_request=True)  # sending a request, slowly
        guard.busy(working)  # the app works for it
        fourth = guard.admit("a", _socket(sockets))  # evicts the idle one, not the older slow
        assert fourth and not idle.admitted and slow.admitted and working.admitted
        guard.busy(fourth)
        assert guard.admit("d", _socket(sockets)) is not None  # then the slow one
        assert not slow.admitted and working.admitted and guard.open == 3
        guard.busy(next(iter(guard._idle)))  # everything busy now
        assert guard.admit("e", _socket(sockets)) is None
        assert guard.events["refused: listener full"] == 1
        assert guard.events["evicted for a newer connection"] == 2

    asyncio.run(scenario())


def test_one_address_gets_its_share_and_no_more(sockets: list[socket.socket]) -> None:
    async def scenario() -> None:
        guard = ConnectionGuard("test", ListenerLimits(max_connections=10, max_per_address=2))
        tickets = [guard.admit("a", _socket(sockets)) for _ in range(2)]
        assert guard.admit("a", _socket(sockets)) is None
        assert guard.admit("b", _socket(sockets)) is not None
        assert tickets[0] is not None
        tickets[0].release()
        tickets[0].release()  # once only
        assert guard.admit("a", _socket(sockets)) is not None
        assert guard.open == 3

    asyncio.run(scenario())


def _fake_rlimit(monkeypatch: pytest.MonkeyPatch, soft: int, hard: int) -> list[tuple[int, int]]:
    set_to: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (soft, hard))
    monkeypatch.setattr(resource, "setrlimit", lambda _, value: set_to.append(value))
    return set_to


def test_the_open_file_limit_is_raised_to_what_the_listeners_need(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_to = _fake_rlimit(monkeypatch, 1024, 1_048_576)
    assert fit_to_open_files([OPERATOR_API, DEVICE_ENDPOINT]) == [OPERATOR_API, DEVICE_ENDPOINT]
    wanted = OPERATOR_API.max_connections + DEVICE_ENDPOINT.max_connections
    assert set_to == [(wanted + RESERVED_FILES, 1_048_576)]


def test_listeners_share_a_low_open_file_limit_so_neither_can_starve_the_other(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    set_to = _fake_rlimit(monkeypatch, 1024, 2048)
    operator, device = fit_to_open_files([OPERATOR_API, DEVICE_ENDPOINT])
    assert set_to == [(2048, 2048)]
    assert operator.max_connections + device.max_connections <= 2048 - 512
    assert operator.max_connections >= 100  # its share, not what the devices left over
    assert operator.max_per_address <= operator.max_connections
    assert device.max_per_address <= device.max_connections
    assert "open-file limit (2048)" in caplog.text


def test_serve_defaults_are_the_device_endpoint_limits() -> None:
    params = inspect.signature(serve_command).parameters
    assert params["device_max_connections"].default == DEVICE_ENDPOINT.max_connections
    assert params["device_max_per_address"].default == DEVICE_ENDPOINT.max_per_address


def test_serve_refuses_a_per_address_limit_above_the_total(tmp_path: object) -> None:
    result = CliRunner().invoke(app, [
        "serve", "--data-dir", str(tmp_path), "--device-max-connections", "100",
        "--device-max-per-address", "200",
    ])
    assert result.exit_code != 0
    assert "--device-max-per-address must not exceed --device-max-connections" in result.output
