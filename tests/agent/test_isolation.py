"""The agent installs without the server: importing it must not load any server module."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import fleetguard.agent

SERVER_MODULES = [
    "sqlalchemy", "fastapi", "starlette", "uvicorn", "alembic", "argon2",
    "fleetguard.store", "fleetguard.api", "fleetguard.operators", "fleetguard.auditlog",
    "fleetguard.keys",
]

# Imports the agent package and every module in it (found on disk, so new ones are covered).
SCRIPT = f"""
import importlib, json, pkgutil, sys
import fleetguard.agent, fleetguard.protocol
for package in (fleetguard.agent, fleetguard.protocol):
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(info.name)
loaded = sorted(m for m in sys.modules if m.startswith("fleetguard.agent"))
server = sorted(
    m for m in sys.modules if any(m == s or m.startswith(s + ".") for s in {SERVER_MODULES!r})
)
print(json.dumps({{"loaded": loaded, "server": server}}))
"""


def test_importing_the_agent_loads_no_server_module():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    )
    found = json.loads(result.stdout)
    assert {"fleetguard.agent.collectors", "fleetguard.agent.buffer"} <= set(found["loaded"])
    assert found["server"] == []


def test_exported_names():
    # dir(): the package loads its names on first use (`fleetguard --help` stays light)
    public = {
        name for name in dir(fleetguard.agent)
        if not name.startswith("_")
        and not isinstance(getattr(fleetguard.agent, name), types.ModuleType)
    }
    assert sorted(fleetguard.agent.__all__) == sorted(public)
