"""`fleetguard --help` stays instant: printing any command's help loads none of what the
commands need to run (database, crypto, HTTP stack, scanner, simulator, agent runtime).

A structural check, in a fresh interpreter: the timing itself is benchmarks/bench_cli.py's.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

HEAVY = (
    "sqlalchemy", "alembic", "cryptography", "httpx", "fastapi", "starlette", "uvicorn",
    "pydantic", "asyncssh", "asyncio",
    "fleetguard.store", "fleetguard.pki", "fleetguard.identity", "fleetguard.keys",
    "fleetguard.install", "fleetguard.auditlog", "fleetguard.api", "fleetguard.server",
    "fleetguard.scan", "fleetguard.protocol", "fleetguard.sim.fleet",
    "fleetguard.agent.buffer", "fleetguard.agent.runner",
)

# Builds the CLI, prints the help of the top level, every group and every command, and
# reports what got imported.
SCRIPT = r"""
import json, sys
from typer.testing import CliRunner
from fleetguard.cli.main import app, command_paths

paths = command_paths()
runner = CliRunner()
failed = {}
for path in paths:
    result = runner.invoke(app, [*path, "--help"])
    if result.exit_code != 0 or "Usage" not in result.output:
        failed[" ".join(path)] = result.output
print(json.dumps({"paths": paths, "failed": failed, "modules": sorted(sys.modules)}))
"""


@pytest.fixture(scope="module")
def help_run() -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True, timeout=120)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_every_help_prints(help_run: dict[str, object]) -> None:
    paths = help_run["paths"]
    assert isinstance(paths, list)
    assert [] in paths and ["device", "list"] in paths and ["agent", "enroll"] in paths
    assert help_run["failed"] == {}


def test_help_loads_no_heavy_module(help_run: dict[str, object]) -> None:
    modules = help_run["modules"]
    assert isinstance(modules, list)
    loaded = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert loaded == []


def test_top_level_help_in_a_fresh_interpreter_loads_no_heavy_module() -> None:
    script = ("import sys\nfrom fleetguard.cli.main import app\n"
              "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
              "print('\\n'.join(sys.modules), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60)
    assert "Usage" in out.stdout
    modules = out.stderr.split()
    assert not [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


@pytest.mark.parametrize("package", ["fleetguard.agent", "fleetguard.sim"])
def test_lazy_package_exports_resolve(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None
        assert name in dir(module)
    with pytest.raises(AttributeError):
        _ = module.no_such_name


def test_cli_choice_enums_are_the_domain_enums() -> None:
    from fleetguard.core.pki_enums import KeyAlgorithm, RevocationReason
    from fleetguard.pki import KeyAlgorithm as PkiKeyAlgorithm
    from fleetguard.pki import RevocationReason as PkiRevocationReason
    from fleetguard.sim import SimTransport
    from fleetguard.sim.fleet import SimSettings
    from fleetguard.sim.transports import SimTransport as CliSimTransport

    assert KeyAlgorithm is PkiKeyAlgorithm and RevocationReason is PkiRevocationReason
    assert SimTransport is CliSimTransport
    assert SimSettings.__dataclass_fields__["transport"].type in ("SimTransport", SimTransport)
