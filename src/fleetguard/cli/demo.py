"""`fleetguard demo`: the whole platform on one machine, with a simulated fleet.

It initializes a fresh demo data dir, runs the server (and the MQTT broker when Mosquitto
is installed), enrolls a simulated fleet with a few compromised devices, prints where to
look and the one-time admin credentials, and on Ctrl-C stops everything it started.

The story is told in the first five minutes: the devices report every 10 seconds, the
attacks start one after another between minute 2 and minute 4 after the fleet connects
(after two minutes of normal reports to learn from; the demo's server learns what is
normal for first-seen rules for 90 seconds, not the default hour), and the ground truth
file says which device, which attack, and when.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fleetguard.cli.common import console, err_console, handles_errors
from fleetguard.core.errors import ConfigurationError, ValidationFailedError

if TYPE_CHECKING:
    from fleetguard.install import InitResult

DEMO_MARKER = ".fleetguard-demo"
DEMO_INTERVAL_S = 10.0
DEMO_COMPROMISED = 5
OPEN_ENDED_S = 10**8  # the simulator's duration when the demo runs until Ctrl-C
# First-seen rules learn a device's normal this long after its first report (9 reports at
# the demo's interval): over before the first attack, so that a beacon's new destination
# is an alarm in the demo (the server's default is an hour).
DEMO_LEARNING_WINDOW_S = 90
FLEETGUARD = [sys.executable, "-m", "fleetguard.cli"]


def _fresh_demo_dir(path: Path) -> None:
    """Only a directory this command made before is ever wiped."""
    if path.exists():
        if not (path / DEMO_MARKER).exists():
            raise ValidationFailedError(
                f"{path} exists and is not a demo data dir; choose another --data-dir",
                field="data-dir",
            )
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)
    (path / DEMO_MARKER).write_text("made by `fleetguard demo`; wiped by its next run\n")


def _wait_https(url: str, ca_file: Path, what: str, proc: subprocess.Popen[bytes],
                log: Path, timeout: float = 60) -> None:
    import httpx

    from fleetguard.core.tls import client_context

    context = client_context(ca_file=ca_file)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigurationError(f"{what} exited early; see {log}")
        try:
            httpx.get(url, verify=context, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise ConfigurationError(f"{what} did not come up in {timeout:.0f} s; see {log}")


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigurationError(f"the broker exited early; see {log}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise ConfigurationError(f"the broker did not come up; see {log}")


@handles_errors
def demo_command(
    data_dir: Annotated[Path, typer.Option(help="Demo data dir (wiped and made anew).")] = Path(
        ".demo-data"),
    devices: Annotated[int, typer.Option(min=1, max=10_000, help="Simulated devices.")] = 50,
    compromised: Annotated[int, typer.Option(min=0, help="Of them, attacked.")] = (
        DEMO_COMPROMISED),
    port: Annotated[int, typer.Option(help="Operator API port.")] = 8443,
    device_port: Annotated[int, typer.Option(help="Device endpoint port.")] = 8444,
    mqtt_port: Annotated[int, typer.Option(help="MQTT broker port.")] = 8883,
    interval: Annotated[float, typer.Option(
        min=1, help="Seconds between device reports.")] = DEMO_INTERVAL_S,
    duration: Annotated[
        float, typer.Option(min=0, help="Stop after this many seconds (0: until Ctrl-C).")
    ] = 0,
) -> None:
    """Init, serve, broker (when Mosquitto is there), and a simulated fleet with attacks."""
    if compromised > devices:
        raise ValidationFailedError("--compromised cannot exceed --devices", field="compromised")
    data_dir = data_dir.resolve()
    installed, sim_token = _demo_installation(data_dir)
    bundle = data_dir / "ca" / "bundle.pem"
    with _DemoProcesses(data_dir) as children:
        transport = "https"
        serve_args = ["serve", "--port", str(port), "--device-port", str(device_port),
                      "--log-format", "json"]
        if shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists():
            broker = children.start("broker", "broker", "--port", str(mqtt_port))
            _wait_port("127.0.0.1", mqtt_port, broker, children.log_of("broker"))
            serve_args += ["--mqtt-broker", f"127.0.0.1:{mqtt_port}"]
            transport = "mqtt"
        else:
            err_console.print("Mosquitto is not installed: devices report over HTTPS instead")
        server = children.start("serve", *serve_args)
        _wait_https(f"https://127.0.0.1:{port}/healthz", bundle, "the server", server,
                    children.log_of("serve"))
        children.start(
            "sim", "sim", "--devices", str(devices), "--compromise", str(compromised),
            "--server", f"https://127.0.0.1:{port}",
            "--device-endpoint", f"https://127.0.0.1:{device_port}",
            "--api-token", sim_token, "--transport", transport,
            "--broker", f"mqtts://127.0.0.1:{mqtt_port}",
            "--interval", str(interval), "--duration", str(duration or OPEN_ENDED_S),
            "--ground-truth", str(data_dir / "ground-truth.json"), "--ca-file", str(bundle),
        )
        console.print(f"\nfleetguard demo is running ({devices} simulated devices over "
                      f"{transport}, {compromised} of them compromised)")
        console.print(f"  dashboard        https://127.0.0.1:{port}/  (trust the fleet root "
                      "below in your browser)")
        console.print(f"  operator API     https://127.0.0.1:{port}/api/v1  (OpenAPI at "
                      "/api/v1/openapi.json after login)")
        console.print(f"  device endpoint  https://127.0.0.1:{device_port}")
        if transport == "mqtt":
            console.print(f"  MQTT broker      mqtts://127.0.0.1:{mqtt_port}")
        console.print(f"  trust            {bundle} (fleet root "
                      f"{installed.root_fingerprint[:16]}...)")
        if compromised:
            first, last = attack_window_s(interval, duration or OPEN_ENDED_S, compromised)
            console.print(f"  attacks          {compromised} devices, one after another from "
                          f"{_clock(first)} to {_clock(last)} after the fleet connects")
        console.print(f"  ground truth     {data_dir / 'ground-truth.json'} (which device, "
                      "which attack, when)")
        console.print(f"  logs             {children.logs}")
        print(f"admin username: {installed.admin_username}", flush=True)
        print(f"admin password: {installed.admin_password}", flush=True)
        console.print("The admin enrolls a TOTP authenticator at first login. Ctrl-C stops "
                      "everything.")
        children.watch(duration)


def attack_window_s(interval_s: float, duration_s: float, compromised: int) -> tuple[float, float]:
    """When the simulator starts its first and its last attack, in seconds after it connects."""
    from fleetguard.sim import SimSettings, SimTransport

    settings = SimSettings(transport=SimTransport.HTTPS, host="127.0.0.1", port=0,
                           interval_s=interval_s, duration_s=duration_s,
                           compromise=compromised)
    starts = settings.attack_starts_s(compromised)
    return starts[0], starts[-1]


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _demo_installation(data_dir: Path) -> tuple[InitResult, str]:
    """A fresh installation in ``data_dir``, and an API token for the simulator's operator."""
    from fleetguard.core.config import load_settings
    from fleetguard.install import init_installation, open_installation_database
    from fleetguard.operators import Role, tokens
    from fleetguard.operators import service as operators

    _fresh_demo_dir(data_dir)
    settings = load_settings(data_dir, f"sqlite:///{data_dir / 'fleetguard.db'}")
    result = init_installation(settings)
    db = open_installation_database(settings)
    try:
        with db.session() as session:
            operators.create_operator(
                session, username="simulator", password=_strong(), role=Role.OPERATOR,
                actor="demo", issuer=None,
            )
            sim_token = tokens.create_api_token(
                session, username="simulator", name="demo fleet", role=None,
                ttl=timedelta(days=1), actor="demo", issuer=None,
            ).token
    finally:
        db.dispose()
    return result, sim_token


class _DemoProcesses:
    """The processes the demo starts, each logging to its own file; on leaving (Ctrl-C, the
    duration over, a child failing) every one is stopped, and nothing is left running."""

    def __init__(self, data_dir: Path) -> None:
        self.env = demo_environment(data_dir)
        self.logs = data_dir / "logs"
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stopping = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _DemoProcesses:
        self.logs.mkdir(mode=0o700)
        self._previous = {s: signal.signal(s, self._stop) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *_: object) -> None:
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in reversed(self.children):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
                err_console.print(f"{name} had to be killed")
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        console.print("demo stopped; nothing left running")

    def _stop(self, *_: object) -> None:
        self.stopping = True

    def log_of(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.log_of(name).open("wb")
        # Our own interpreter and arguments only; nothing from outside reaches argv.
        proc = subprocess.Popen([*FLEETGUARD, *args], env=self.env, stdout=log,  # noqa: S603
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append((name, proc))
        return proc

    def watch(self, duration: float) -> None:
        """Until Ctrl-C, the duration, or the simulator's end; a child that dies is an error."""
        deadline = time.monotonic() + duration if duration else None
        while not self.stopping:
            if deadline is not None and time.monotonic() > deadline:
                return
            for name, proc in self.children:
                if proc.poll() is None:
                    continue
                if name == "sim" and proc.returncode == 0:
                    return
                raise ConfigurationError(f"{name} stopped unexpectedly; see {self.log_of(name)}")
            time.sleep(0.5)


def demo_environment(data_dir: Path) -> dict[str, str]:
    """The environment of the demo's processes: none of the caller's fleetguard settings,
    the demo's data dir, and the demo's short learning window."""
    from fleetguard.server.detection import LEARNING_WINDOW_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGUARD_")}
    env["FLEETGUARD_DATA_DIR"] = str(data_dir)
    env[LEARNING_WINDOW_ENV] = str(DEMO_LEARNING_WINDOW_S)
    return env


def _strong() -> str:
    import secrets

    return "Sim-" + secrets.token_urlsafe(24)
