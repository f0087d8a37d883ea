"""An installation whose fleet CA keys live in a SoftHSM2 token, end to end."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.server import FLEETGUARD, start_server

pytestmark = pytest.mark.process

MODULES = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
]


def _module() -> str:
    for path in MODULES:
        if Path(path).exists():
            return path
    pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")


def test_hsm_backed_fleet_issues_device_certificates_openssl_accepts(tmp_path: Path) -> None:
    module = _module()
    util = shutil.which("softhsm2-util")
    assert util, "softhsm2-util missing although the module exists"
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    pin = secrets.token_hex(8)
    pin_file = tmp_path / "pin"
    pin_file.write_text(pin)
    hsm_env = {"SOFTHSM2_CONF": str(conf)}
    subprocess.run([util, "--init-token", "--free", "--label", "fleet-ca", "--pin", pin,
                    "--so-pin", secrets.token_hex(8)], env=hsm_env, check=True,
                   capture_output=True)
    env = {**hsm_env, "FLEETGUARD_PKCS11_MODULE": module,
           "FLEETGUARD_PKCS11_TOKEN_LABEL": "fleet-ca",
           "FLEETGUARD_PKCS11_PIN_FILE": str(pin_file)}
    server = start_server(
        tmp_path,
        init_args=("--pkcs11-module", module, "--pkcs11-token-label", "fleet-ca",
                   "--pkcs11-pin-file", str(pin_file)),
        extra_env=env,
    )
    try:
        assert not list((server.data_dir / "ca").rglob("*.key.sealed"))
        device_id = server.cli("device", "add", "hsm-cam").stdout.strip()
        token = server.cli("device", "token", device_id).stdout.strip()
        state = tmp_path / "device"
        enrolled = subprocess.run(
            [*FLEETGUARD, "agent", "enroll", "--server", f"https://127.0.0.1:{server.device_port}",
             "--token", token, "--state-dir", str(state)],
            env=server.env, capture_output=True, text=True, timeout=60, check=False,
        )
        assert enrolled.returncode == 0, enrolled.stderr
        ca = server.data_dir / "ca"
        verdict = subprocess.run(
            ["openssl", "verify", "-CAfile", str(ca / "bundle.pem"), "-crl_check",
             "-CRLfile", str(ca / "crl" / "crls.pem"), str(state / "device.crt")],
            capture_output=True, text=True, check=False,
        )
        assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    finally:
        server.stop()
