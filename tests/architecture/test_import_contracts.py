"""The import contracts in pyproject.toml say what docs/DESIGN's map says, and each one bites.

Every test copies the source tree, injects one violation of the kind the contract exists to
stop, and expects `lint-imports` to fail on it, naming the injected import. A contract that
passes with its violation in place would be decoration; these tests are what show it is not.
The completeness tests keep the lists in the contracts in step with the tree and the
dependencies, so a new package or a new server library cannot slip past them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONTRACTS = {c["id"]: c for c in PYPROJECT["tool"]["importlinter"]["contracts"]}
PACKAGES = sorted(
    p.name for p in (ROOT / "src" / "fleetguard").iterdir()
    if (p / "__init__.py").exists()
)
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# Import names of the distributions a server extra brings; the agent must import none of the
# ones it does not share. A dependency missing here fails test_agent_forbids_every_server_library.
IMPORT_NAMES = {
    "fastapi": ("fastapi", "starlette"), "uvicorn": ("uvicorn",), "httptools": ("httptools",),
    "uvloop": ("uvloop",), "sqlalchemy": ("sqlalchemy",), "alembic": ("alembic",),
    "psycopg": ("psycopg",), "argon2-cffi": ("argon2",), "zxcvbn": ("zxcvbn",),
    "python-pkcs11": ("pkcs11",), "asyncssh": ("asyncssh",), "jinja2": ("jinja2",),
    "python-multipart": ("multipart", "python_multipart"), "segno": ("segno",),
    "prometheus-client": ("prometheus_client",), "msgspec": ("msgspec",), "numpy": ("numpy",),
}


@dataclass(frozen=True)
class Injection:
    contract: str
    module: str  # file under src/fleetguard, relative
    line: str
    expected: str  # what the failure must name
    also: tuple[tuple[str, str], ...] = ()  # more (module, line) pairs, for a cycle


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=;!~]", requirement, maxsplit=1)[0].lower()


def _lint(tree: Path, contract: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), str(tree / "pyproject.toml"), "--contract", contract, "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the project's source and contracts, free to break."""
    shutil.copytree(ROOT / "src" / "fleetguard", tmp_path / "src" / "fleetguard",
                    ignore=shutil.ignore_patterns("__pycache__", "static", "templates"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _inject(tree: Path, module: str, line: str) -> None:
    path = tree / "src" / "fleetguard" / module
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text('"""Injected."""\n')
    with path.open("a") as f:
        f.write(f"\n{line}  # injected violation\n")


INJECTIONS = [
    # The agent installs on a device without the server: core and protocol only.
    Injection("agent-internal", "agent/config.py", "from fleetguard.scan import models",
              "fleetguard.agent is not allowed to import fleetguard.scan"),
    Injection("agent-internal", "agent/runner.py", "import fleetguard.sim",
              "fleetguard.agent is not allowed to import fleetguard.sim"),
    Injection("agent-internal", "agent/checks.py", "import fleetguard.cli.main",
              "fleetguard.agent is not allowed to import fleetguard.cli"),
    Injection("agent-libraries", "agent/transport.py", "import jinja2",
              "is not allowed to import jinja2"),
    Injection("agent-libraries", "agent/collectors.py", "import asyncssh",
              "is not allowed to import asyncssh"),
    Injection("agent-libraries", "agent/enroll.py", "import psycopg",
              "is not allowed to import psycopg"),
    Injection("agent-libraries", "protocol/topics.py", "import sqlalchemy",
              "fleetguard.protocol is not allowed to import sqlalchemy"),
    # Domains carry no front end.
    Injection("domains-no-front-ends", "registry/models.py", "import rich.table",
              "fleetguard.registry is not allowed to import rich"),
    Injection("domains-no-front-ends", "registry/errors.py", "import typer",
              "fleetguard.registry is not allowed to import typer"),
    Injection("domains-no-front-ends", "registry/models.py", "import jinja2",
              "fleetguard.registry is not allowed to import jinja2"),
    Injection("domains-no-front-ends", "findings/models.py", "import fleetguard.agent.config",
              "fleetguard.findings is not allowed to import fleetguard.agent"),
    Injection("domains-no-front-ends", "pki/models.py", "import fastapi",
              "fleetguard.pki is not allowed to import fastapi"),
    # Private modules stay private to their package.
    Injection("private-modules", "telemetry/models.py", "from fleetguard.pki import _x509",
              "fleetguard.pki._x509"),
    # Tables belong to store and their owning domain.
    Injection("tables-registry", "scan/models.py",
              "from fleetguard.store.tables.registry import DeviceRow",
              "fleetguard.store.tables.registry"),
    Injection("tables-identity", "broker/models.py",
              "from fleetguard.store.tables.identity import DeviceCertificateRow",
              "fleetguard.store.tables.identity"),
    Injection("tables-operators", "api/routers/operators.py",
              "from fleetguard.store.tables.operators import OperatorRow",
              "fleetguard.store.tables.operators"),
    Injection("tables-secrets", "auditlog/keyring.py",
              "from fleetguard.store.tables.secrets import SecretRow",
              "fleetguard.store.tables.secrets"),
    Injection("tables-findings", "scan/models.py",
              "from fleetguard.store.tables.findings import FindingRow",
              "fleetguard.store.tables.findings"),
    Injection("tables-audit", "operators/models.py",
              "from fleetguard.store.tables.audit import AuditEntryRow",
              "fleetguard.store.tables.audit"),
    Injection("tables-telemetry", "registry/models.py",
              "from fleetguard.store.tables.telemetry import TelemetryDeviceRow",
              "fleetguard.store.tables.telemetry"),
    Injection("tables-detect", "findings/models.py",
              "from fleetguard.store.tables.detect import AlarmRow",
              "fleetguard.store.tables.detect"),
    Injection("tables-notify", "registry/models.py",
              "from fleetguard.store.tables.notify import OutboxRow",
              "fleetguard.store.tables.notify"),
    Injection("tables-aggregate", "telemetry/models.py",
              "from fleetguard.store.tables import DeviceRow",
              "fleetguard.store.tables"),
    # Layers: no import upward, none between independent siblings.
    Injection("layers", "identity/models.py", "import fleetguard.broker",
              "fleetguard.identity is not allowed to import fleetguard.broker"),
    Injection("layers", "identity/errors.py", "import fleetguard.telemetry",
              "fleetguard.identity is not allowed to import fleetguard.telemetry"),
    Injection("layers", "api/errors.py", "import fleetguard.dashboard",
              "fleetguard.api is not allowed to import fleetguard.dashboard"),
    Injection("layers", "store/base.py", "import fleetguard.registry",
              "fleetguard.store is not allowed to import fleetguard.registry"),
    Injection("layers", "detect/rules.py", "import fleetguard.scan",
              "fleetguard.detect is not allowed to import fleetguard.scan"),
    # A new top-level package must be placed on the map before it can be imported.
    Injection("layers", "attest/__init__.py", "import fleetguard.core",
              "fleetguard.attest"),
    # No cycles between siblings, at any depth.
    Injection("acyclic", "registry/devices_a.py", "import fleetguard.registry.devices_b",
              "No cycles are allowed in fleetguard.registry",
              also=(("registry/devices_b.py", "import fleetguard.registry.devices_a"),)),
    Injection("acyclic", "findings/models.py", "import fleetguard.scan.cycle",
              "No cycles are allowed in fleetguard.",
              also=(("scan/cycle.py", "import fleetguard.findings.models"),)),
]


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    for contract in CONTRACTS:
        result = _lint(tree, contract)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "injection", INJECTIONS, ids=[f"{i.contract}:{i.module}:{i.line}" for i in INJECTIONS]
)
def test_contract_fails_on_an_injected_violation(tree: Path, injection: Injection) -> None:
    for module, line in ((injection.module, injection.line), *injection.also):
        _inject(tree, module, line)
    result = _lint(tree, injection.contract)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output
    assert injection.expected in output


def test_every_contract_has_a_bite_test() -> None:
    assert set(CONTRACTS) == {i.contract for i in INJECTIONS}


def test_the_layers_place_every_package() -> None:
    layers = CONTRACTS["layers"]
    placed = {name.strip() for layer in layers["layers"] for name in re.split(r"[|:]", layer)}
    assert layers["exhaustive"] is True
    assert placed == set(PACKAGES)


def test_agent_may_import_only_core_and_protocol() -> None:
    forbidden = {m.removeprefix("fleetguard.") for m in CONTRACTS["agent-internal"]["forbidden_modules"]}
    assert forbidden == set(PACKAGES) - {"agent", "core", "protocol"}


def test_agent_forbids_every_server_library() -> None:
    deps = PYPROJECT["project"]
    shared = {_requirement_name(r) for r in
              [*deps["dependencies"], *deps["optional-dependencies"]["agent"]]}
    server_only = {_requirement_name(r) for r in deps["optional-dependencies"]["server"]} - shared
    assert server_only <= set(IMPORT_NAMES), "map the new server dependency in IMPORT_NAMES"
    expected = {name for dist in server_only for name in IMPORT_NAMES[dist]}
    assert expected <= set(CONTRACTS["agent-libraries"]["forbidden_modules"])


def test_every_table_module_has_an_owner_contract() -> None:
    table_modules = {
        p.stem for p in (ROOT / "src" / "fleetguard" / "store" / "tables").glob("*.py")
        if p.stem not in {"__init__", "orders"}
    }
    protected = {
        m.removeprefix("fleetguard.store.tables.")
        for c in CONTRACTS.values() if c["type"] == "protected" and c["id"] != "tables-aggregate"
        for m in c["protected_modules"]
    }
    assert protected == table_modules
