"""Device identity end to end: a real `fleetguard serve`, the real agent, `openssl verify`."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.server import FLEETGUARD, RunningServer, start_server

pytestmark = pytest.mark.process


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("identity"))
    yield running
    running.stop()


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def _device_url(server: RunningServer) -> str:
    return f"https://127.0.0.1:{server.device_port}"


def _agent(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FLEETGUARD, "agent", *args], env=server.env, capture_output=True,
                          text=True, timeout=60, check=False)


def _register_and_enroll(server: RunningServer, tmp: Path, name: str) -> tuple[str, Path]:
    device_id = _ok(server.cli("device", "add", name))
    token = _ok(server.cli("device", "token", device_id))
    state = tmp / name
    _ok(_agent(server, "enroll", "--server", _device_url(server), "--token", token,
               "--state-dir", str(state)))
    return device_id, state


def _openssl_verify(server: RunningServer, cert: Path) -> subprocess.CompletedProcess[str]:
    ca = server.data_dir / "ca"
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca / "bundle.pem"), "-crl_check",
         "-CRLfile", str(ca / "crl" / "crls.pem"), str(cert)],
        capture_output=True, text=True, check=False,
    )


def _whoami(server: RunningServer, state: Path) -> httpx.Response:
    import ssl

    ctx = ssl.create_default_context(cafile=str(state / "ca.pem"))
    ctx.load_cert_chain(state / "device.crt", state / "device.key")
    with httpx.Client(verify=ctx, timeout=10) as c:
        return c.get(f"{_device_url(server)}/v1/whoami")


def _serial(state: Path) -> str:
    import json

    return str(json.loads((state / "identity.json").read_text())["serial"])


def test_token_enrollment_gives_a_certificate_openssl_accepts(server: RunningServer, tmp_path: Path) -> None:
    device_id, state = _register_and_enroll(server, tmp_path, "cam-1")
    assert stat.S_IMODE((state / "device.key").stat().st_mode) == 0o600
    result = _openssl_verify(server, state / "device.crt")
    assert result.returncode == 0, result.stdout + result.stderr
    who = _whoami(server, state)
    assert who.status_code == 200 and who.json()["id"] == device_id
    assert '"state": "active"' in _ok(server.cli("device", "show", device_id))


def test_revocation_bites_at_the_next_request_and_in_the_crl(server: RunningServer, tmp_path: Path) -> None:
    _, state = _register_and_enroll(server, tmp_path, "cam-2")
    assert _whoami(server, state).status_code == 200
    _ok(server.cli("cert", "revoke", _serial(state), "--reason", "key_compromise"))
    refused = _whoami(server, state)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "device_certificate_rejected"
    verdict = _openssl_verify(server, state / "device.crt")
    assert verdict.returncode != 0 and "revoked" in (verdict.stdout + verdict.stderr)


def test_decommissioned_device_is_cut_off(server: RunningServer, tmp_path: Path) -> None:
    device_id, state = _register_and_enroll(server, tmp_path, "cam-3")
    _ok(server.cli("device", "decommission", device_id))
    assert _whoami(server, state).status_code in (401, 403)


def test_enrollment_token_is_single_use(server: RunningServer, tmp_path: Path) -> None:
    device_id = _ok(server.cli("device", "add", "cam-4"))
    token = _ok(server.cli("device", "token", device_id))
    _ok(_agent(server, "enroll", "--server", _device_url(server), "--token", token,
               "--state-dir", str(tmp_path / "a")))
    again = _agent(server, "enroll", "--server", _device_url(server), "--token", token,
                   "--state-dir", str(tmp_path / "b"))
    assert again.returncode == 1 and "enrollment_token_invalid" in again.stderr


def test_agent_refuses_a_server_that_is_not_the_pinned_fleet(server: RunningServer, tmp_path: Path) -> None:
    device_id = _ok(server.cli("device", "add", "cam-5"))
    token = _ok(server.cli("device", "token", device_id))
    forged = token[:-64] + ("0" * 64)
    result = _agent(server, "enroll", "--server", _device_url(server), "--token", forged,
                    "--state-dir", str(tmp_path / "x"))
    assert result.returncode == 1 and "root_pin_mismatch" in result.stderr
    assert not (tmp_path / "x" / "device.key").exists()


def test_renewal_issues_a_new_key_and_certificate(server: RunningServer, tmp_path: Path) -> None:
    device_id, state = _register_and_enroll(server, tmp_path, "cam-6")
    old_key, old_serial = (state / "device.key").read_bytes(), _serial(state)
    _ok(_agent(server, "renew", "--state-dir", str(state)))
    assert (state / "device.key").read_bytes() != old_key and _serial(state) != old_serial
    assert _whoami(server, state).json()["id"] == device_id


def test_claim_enrollment_once_per_allowed_serial(server: RunningServer, tmp_path: Path) -> None:
    serials = tmp_path / "serials.txt"
    serials.write_text("SN-100\nSN-101\n")
    out = tmp_path / "claim"
    _ok(server.cli("claim", "create", "batch-a", "--serials-file", str(serials),
                   "--out-dir", str(out)))
    common = ["--server", _device_url(server), "--ca-file", str(out / "ca.pem"),
              "--claim-cert", str(out / "claim.crt"), "--claim-key", str(out / "claim.key")]
    _ok(_agent(server, "enroll", *common, "--serial", "SN-100", "--state-dir", str(tmp_path / "d1")))
    assert _openssl_verify(server, tmp_path / "d1" / "device.crt").returncode == 0
    twice = _agent(server, "enroll", *common, "--serial", "SN-100", "--state-dir", str(tmp_path / "d2"))
    assert twice.returncode == 1 and "claim_not_allowed" in twice.stderr
    stranger = _agent(server, "enroll", *common, "--serial", "SN-999", "--state-dir", str(tmp_path / "d3"))
    assert stranger.returncode == 1 and "claim_not_allowed" in stranger.stderr
    # The claim certificate opens enrollment and nothing else.
    assert _whoami_with(server, out / "claim.crt", out / "claim.key", out / "ca.pem").status_code in (401, 403)


def _whoami_with(server: RunningServer, cert: Path, key: Path, ca: Path) -> httpx.Response:
    import ssl

    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(cert, key)
    with httpx.Client(verify=ctx, timeout=10) as c:
        return c.get(f"{_device_url(server)}/v1/whoami")


@pytest.mark.parametrize(
    ("csr", "code"),
    [
        ("not a csr", "csr_malformed"),
        ("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n", None),
    ],
)
def test_bad_csr_gets_a_clear_4xx_and_consumes_nothing(
    server: RunningServer, csr: str, code: str | None
) -> None:
    device_id = _ok(server.cli("device", "add", f"bad-{abs(hash(csr))}"))
    token = _ok(server.cli("device", "token", device_id))
    with httpx.Client(verify=server.tls_context(), timeout=10) as c:
        r = c.post(f"{_device_url(server)}/v1/enroll", json={"token": token, "csr": csr})
    assert 400 <= r.status_code < 500, r.text
    if code:
        assert r.json()["error"]["code"] == code
    assert "certificate" not in _ok(server.cli("cert", "list", "--device", device_id)).split("\n", 3)[-1]


def test_device_endpoint_demands_a_certificate_for_everything_but_enrollment(server: RunningServer) -> None:
    with httpx.Client(verify=server.tls_context(), timeout=10) as c:
        r = c.get(f"{_device_url(server)}/v1/whoami")
    assert r.status_code == 401 and r.json()["error"]["code"] == "client_cert_required"


def test_certificate_use_is_recorded(server: RunningServer, tmp_path: Path) -> None:
    device_id, state = _register_and_enroll(server, tmp_path, "cam-7")
    _whoami(server, state)
    listing = _ok(server.cli("cert", "list", "--device", device_id))
    assert "127.0.0.1" in listing


def test_agent_key_never_reaches_the_server(server: RunningServer, tmp_path: Path) -> None:
    _, state = _register_and_enroll(server, tmp_path, "cam-8")
    key_pem = (state / "device.key").read_bytes()
    body = key_pem.split(b"\n")[1]
    for root, _dirs, files in os.walk(server.data_dir):
        for name in files:
            assert body not in (Path(root) / name).read_bytes()
