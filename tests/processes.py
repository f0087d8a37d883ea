"""Child processes the tests start: a free loopback port, waiting until one listens, stopping."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until_listening(
    process: subprocess.Popen[bytes], port: int, *, describe: Callable[[], str],
    host: str = "127.0.0.1", timeout: float = 10.0,
) -> None:
    """Return once ``port`` accepts; fail with ``describe()`` (e.g. the log) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the process exited:\n{describe()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listened on {host}:{port}:\n{describe()}")


def stop_process(process: subprocess.Popen[bytes] | subprocess.Popen[str] | None) -> None:
    """SIGTERM, then SIGKILL if it does not end within 10 s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
