"""Opening the installation's fleet CA with the key backend its manifest names."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from fleetguard.core.config import Settings
from fleetguard.core.errors import ConfigurationError
from fleetguard.identity.errors import CaNotInitializedError
from fleetguard.keys import MasterKey
from fleetguard.pki import (
    EncryptedFileKeyBackend,
    FleetCA,
    KeyAlgorithm,
    KeyBackend,
    Pkcs11KeyBackend,
    init_fleet_ca,
    open_fleet_ca,
)

PKCS11_MODULE_ENV = "FLEETGUARD_PKCS11_MODULE"
PKCS11_TOKEN_ENV = "FLEETGUARD_PKCS11_TOKEN_LABEL"  # noqa: S105 - a variable name
PKCS11_PIN_FILE_ENV = "FLEETGUARD_PKCS11_PIN_FILE"
PKCS11_PIN_ENV = "FLEETGUARD_PKCS11_PIN"


@dataclass(frozen=True, slots=True)
class Pkcs11Options:
    module: Path
    token_label: str
    pin_file: Path | None = None
    pin_env: str | None = None

    def backend(self) -> KeyBackend:
        return Pkcs11KeyBackend(
            self.module, self.token_label, pin_file=self.pin_file, pin_env=self.pin_env
        )


def ca_dir(settings: Settings) -> Path:
    return settings.data_dir / "ca"


def pkcs11_options_from_env() -> Pkcs11Options | None:
    module = os.environ.get(PKCS11_MODULE_ENV)
    if not module:
        return None
    token = os.environ.get(PKCS11_TOKEN_ENV)
    if not token:
        raise ConfigurationError(f"{PKCS11_MODULE_ENV} is set but {PKCS11_TOKEN_ENV} is not")
    pin_file = os.environ.get(PKCS11_PIN_FILE_ENV)
    return Pkcs11Options(
        Path(module), token, pin_file=Path(pin_file) if pin_file else None,
        pin_env=None if pin_file else PKCS11_PIN_ENV,
    )


def init_installation_ca(
    settings: Settings,
    master: MasterKey,
    *,
    algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
    pkcs11: Pkcs11Options | None = None,
    fleet_name: str = "fleetguard",
) -> FleetCA:
    backend = pkcs11.backend() if pkcs11 else EncryptedFileKeyBackend(master)
    return init_fleet_ca(ca_dir(settings), backend, fleet_name=fleet_name, key_algorithm=algorithm)


def open_installation_ca(
    settings: Settings, master: MasterKey, pkcs11: Pkcs11Options | None = None
) -> FleetCA:
    directory = ca_dir(settings)
    manifest = directory / "manifest.json"
    if not manifest.exists():
        raise CaNotInitializedError(
            f"no fleet CA in {directory} (run `fleetguard ca init`)"
        )
    kind = json.loads(manifest.read_text()).get("key_backend")
    if kind == "pkcs11":
        options = pkcs11 or pkcs11_options_from_env()
        if options is None:
            raise ConfigurationError(
                f"the fleet CA keys are in a PKCS#11 token: set {PKCS11_MODULE_ENV}, "
                f"{PKCS11_TOKEN_ENV} and {PKCS11_PIN_FILE_ENV} (or {PKCS11_PIN_ENV})"
            )
        return open_fleet_ca(directory, options.backend())
    return open_fleet_ca(directory, EncryptedFileKeyBackend(master))
