"""Run `fleetguard init` and `fleetguard serve` as real processes for the tests."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.processes import free_port, stop_process

FLEETGUARD = [sys.executable, "-m", "fleetguard.cli"]


def run_cli(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLEETGUARD, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120,
        check=False,
    )


@dataclass
class RunningServer:
    data_dir: Path
    port: int
    env: dict[str, str]
    admin_password: str
    process: subprocess.Popen[str]
    log_path: Path
    device_port: int
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.data_dir / "ca" / "bundle.pem"))
        return ctx

    def client(self) -> httpx.Client:
        c = httpx.Client(base_url=self.base_url, verify=self.tls_context(), timeout=30)
        self.clients.append(c)
        return c

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--data-dir", str(self.data_dir), env=self.env, stdin=stdin)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        stop_process(self.process)


def start_server(
    tmp: Path, database_url: str | None = None, *, init_args: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> RunningServer:
    data_dir = tmp / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGUARD_")}
    env.update(extra_env or {})
    if database_url:
        env["FLEETGUARD_DATABASE_URL"] = database_url
    init = run_cli("init", "--data-dir", str(data_dir), *init_args, env=env)
    assert init.returncode == 0, init.stderr + init.stdout
    password = next(
        line.removeprefix("admin password: ")
        for line in init.stdout.splitlines() if line.startswith("admin password: ")
    )
    port, device_port = free_port(), free_port()
    log_path = tmp / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [*FLEETGUARD, "serve", "--data-dir", str(data_dir), "--port", str(port),
         "--device-port", str(device_port), "--log-format", "json"],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    server = RunningServer(data_dir, port, env, password, process, log_path, device_port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early:\n{server.log_text()}")
        try:
            with httpx.Client(verify=server.tls_context(), timeout=2) as c:
                if c.get(f"{server.base_url}/healthz").status_code == 200:
                    return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.stop()
    raise AssertionError(f"server did not come up:\n{server.log_text()}")
