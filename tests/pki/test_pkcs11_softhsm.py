"""The PKCS#11 key backend end to end against SoftHSM2: keys made and used in the token."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetguard.pki import FleetCA, KeyAlgorithm, Pkcs11KeyBackend, init_fleet_ca, open_fleet_ca
from fleetguard.pki.errors import KeyBackendConfigError

_MODULES = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
]
CA_TOKEN = "fleet-ca"
PIN_TOKEN = "pin-check"  # only the PIN tests log in here: PKCS#11 login is per process


@dataclass(frozen=True)
class SoftHsm:
    module: str
    pin: str
    directory: Path

    def backend(self, token: str = CA_TOKEN, **pin: str | Path) -> Pkcs11KeyBackend:
        return Pkcs11KeyBackend(self.module, token, **(pin or {"pin_env": "FG_TEST_HSM_PIN"}))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """Tokens in a temp dir through SOFTHSM2_CONF, made before the module is first loaded."""
    util = shutil.which("softhsm2-util")
    module = next((m for m in _MODULES if Path(m).is_file()), None)
    if util is None or module is None:
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    pytest.importorskip("pkcs11", reason="python-pkcs11 is not installed")
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {directory / 'tokens'}\n"
        "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
    )
    saved = {k: os.environ.get(k) for k in ("SOFTHSM2_CONF", "FG_TEST_HSM_PIN")}
    pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
    os.environ["SOFTHSM2_CONF"] = str(conf)
    os.environ["FG_TEST_HSM_PIN"] = pin
    for label in (CA_TOKEN, PIN_TOKEN):
        subprocess.run(
            [util, "--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", pin],
            check=True,
            capture_output=True,
        )
    yield SoftHsm(module, pin, directory)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def hsm_ca(softhsm: SoftHsm, tmp_path: Path) -> Iterator[FleetCA]:
    with init_fleet_ca(tmp_path / "ca", softhsm.backend()) as ca:
        yield ca


def test_ca_in_token_issues_a_device_certificate_that_openssl_verifies(
    hsm_ca: FleetCA, device_csr, openssl_verify
) -> None:
    issued = hsm_ca.issue_device_certificate(device_csr, uuid.uuid4())
    crls = hsm_ca.publish_crls([])
    result = openssl_verify(issued.certificate_pem, hsm_ca.bundle_pem(), crls=crls, check_all=True)
    assert result.ok, result.output


@pytest.mark.parametrize("algorithm", [KeyAlgorithm.EC_P384, KeyAlgorithm.RSA_3072])
def test_other_key_algorithms_work_in_the_token(
    softhsm: SoftHsm, tmp_path: Path, device_csr, openssl_verify, algorithm: KeyAlgorithm
) -> None:
    with init_fleet_ca(tmp_path / "ca", softhsm.backend(), key_algorithm=algorithm) as ca:
        issued = ca.issue_device_certificate(device_csr, uuid.uuid4())
        crls = ca.publish_crls([])
        result = openssl_verify(issued.certificate_pem, ca.bundle_pem(), crls=crls, check_all=True)
    assert result.ok, result.output


def test_token_keys_are_sensitive_and_never_extractable(hsm_ca: FleetCA, softhsm: SoftHsm) -> None:
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        pytest.skip("pkcs11-tool is not installed (apt-get install opensc)")
    listing = subprocess.run(
        [
            tool,
            "--module",
            softhsm.module,
            "--token-label",
            CA_TOKEN,
            "--login",
            "--pin",
            softhsm.pin,
            "--list-objects",
            "--type",
            "privkey",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for ca in (hsm_ca.root, hsm_ca.active_issuing_ca):
        block = listing.split(f"label:      {ca.key.locator}")[1].split("Private Key Object")[0]
        assert "never extractable" in block and "sensitive" in block and "local" in block


def test_no_private_key_leaves_the_token(hsm_ca: FleetCA) -> None:
    assert not (hsm_ca.directory / "keys").exists()
    assert all(ca.key.backend == "pkcs11" for ca in (hsm_ca.root, *hsm_ca.issuing_cas))


def test_token_signer_refuses_to_export_the_key(hsm_ca: FleetCA, softhsm: SoftHsm) -> None:
    signer = softhsm.backend().signer(hsm_ca.directory, hsm_ca.root.key)
    with pytest.raises(TypeError, match="cannot be exported"):
        signer.private_numbers()


def test_reopened_ca_signs_with_the_same_token_key(
    hsm_ca: FleetCA, softhsm: SoftHsm, device_csr, openssl_verify
) -> None:
    with open_fleet_ca(hsm_ca.directory, softhsm.backend()) as reopened:
        issued = reopened.issue_device_certificate(device_csr, uuid.uuid4())
    assert openssl_verify(issued.certificate_pem, hsm_ca.bundle_pem()).ok


def test_rotation_makes_the_new_issuing_key_in_the_token(
    hsm_ca: FleetCA, device_csr, openssl_verify
) -> None:
    old = hsm_ca.issue_device_certificate(device_csr, uuid.uuid4())
    new = hsm_ca.rotate_issuing_ca()
    fresh = hsm_ca.issue_device_certificate(device_csr, uuid.uuid4())
    assert new.key.backend == "pkcs11" and fresh.issuer_ca_id == new.ca_id
    crls = hsm_ca.publish_crls([])
    for issued in (old, fresh):
        result = openssl_verify(issued.certificate_pem, hsm_ca.bundle_pem(), crls=crls)
        assert result.ok, result.output


def test_pin_from_a_file_logs_in(softhsm: SoftHsm, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm.pin + "\n")
    backend = softhsm.backend(PIN_TOKEN, pin_file=pin_file)
    try:
        with init_fleet_ca(tmp_path / "ca", backend) as ca:
            assert ca.active_issuing_ca.key.backend == "pkcs11"
    finally:
        backend.close()


def test_wrong_pin_is_a_clear_configuration_error(softhsm: SoftHsm, tmp_path: Path) -> None:
    os.environ["FG_TEST_WRONG_PIN"] = "00000000"
    try:
        backend = softhsm.backend(PIN_TOKEN, pin_env="FG_TEST_WRONG_PIN")
        with pytest.raises(KeyBackendConfigError, match="PIN is wrong") as info:
            init_fleet_ca(tmp_path / "ca", backend)
    finally:
        del os.environ["FG_TEST_WRONG_PIN"]
    assert "00000000" not in str(info.value)


def test_missing_pin_variable_is_a_configuration_error(softhsm: SoftHsm, tmp_path: Path) -> None:
    backend = softhsm.backend(pin_env="FG_TEST_UNSET_PIN_VARIABLE")
    with pytest.raises(KeyBackendConfigError, match="FG_TEST_UNSET_PIN_VARIABLE"):
        init_fleet_ca(tmp_path / "ca", backend)


def test_unknown_token_label_is_a_configuration_error(softhsm: SoftHsm, tmp_path: Path) -> None:
    with pytest.raises(KeyBackendConfigError, match="no PKCS#11 token labelled 'nope'"):
        init_fleet_ca(tmp_path / "ca", softhsm.backend("nope"))


def test_pin_must_come_from_exactly_one_source(softhsm: SoftHsm) -> None:
    with pytest.raises(KeyBackendConfigError, match="file or an environment variable"):
        Pkcs11KeyBackend(softhsm.module, CA_TOKEN)


def test_repr_never_shows_the_pin(softhsm: SoftHsm, hsm_ca: FleetCA) -> None:
    shown = repr(softhsm.backend()) + repr(hsm_ca)
    assert softhsm.pin not in shown
    assert "FG_TEST_HSM_PIN" in shown


def test_token_signer_is_safe_to_share_between_threads(hsm_ca: FleetCA, make_key, make_csr) -> None:
    csrs = [make_csr(make_key()) for _ in range(24)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        issued = list(pool.map(lambda c: hsm_ca.issue_device_certificate(c, uuid.uuid4()), csrs))
    issuer = hsm_ca.active_issuing_ca.certificate
    for item in issued:
        item.certificate.verify_directly_issued_by(issuer)
