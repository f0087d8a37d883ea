"""Setting up and maintaining an installation: init, migrations, master key rotation."""

from fleetguard.install.service import (
    InitResult,
    init_installation,
    open_installation_database,
    rotate_master_key,
)

__all__ = ["InitResult", "init_installation", "open_installation_database", "rotate_master_key"]
