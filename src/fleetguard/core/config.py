"""Where an installation lives: the data dir, the database URL and the master key source.

Settings are read once in the entry points (CLI, server) and passed down; no module
reads the environment at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "FLEETGUARD_DATA_DIR"
DATABASE_URL_ENV = "FLEETGUARD_DATABASE_URL"
MASTER_KEY_ENV = "FLEETGUARD_MASTER_KEY"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fleetguard"


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    master_key_b64: str | None = None

    @property
    def master_key_file(self) -> Path:
        return self.data_dir / "master.key"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def server_cert_file(self) -> Path:
        return self.tls_dir / "server.crt"

    @property
    def server_key_file(self) -> Path:
        return self.tls_dir / "server.key"

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(data_dir: Path | None = None, database_url: str | None = None) -> Settings:
    """Resolve settings: explicit arguments first, then the environment, then defaults."""
    resolved_dir = Path(
        data_dir or os.environ.get(DATA_DIR_ENV) or default_data_dir()
    ).expanduser().resolve()
    url = database_url or os.environ.get(DATABASE_URL_ENV) or sqlite_url(resolved_dir)
    return Settings(
        data_dir=resolved_dir,
        database_url=url,
        master_key_b64=os.environ.get(MASTER_KEY_ENV) or None,
    )


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'fleetguard.db'}"
