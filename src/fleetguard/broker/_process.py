"""Mosquitto as a child process: start, wait for its TLS port, SIGHUP, stop."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from fleetguard.broker.errors import BrokerError, BrokerStartError
from fleetguard.broker.models import BrokerFiles

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class BrokerProcess:
    """One ``mosquitto -c <config>`` child, in its own session (Ctrl-C reaches us, not it).

    Its stderr (the broker's log) goes to ``files.log_file``, appended; ``log_offset`` is
    where this run's lines start.
    """

    def __init__(self, files: BrokerFiles, executable: Path) -> None:
        self.files = files
        self.executable = executable
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_offset = 0

    def __enter__(self) -> BrokerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.running:
            return
        host, port = self.files.connect_host, self.files.port
        if port_accepts(host, port):
            raise BrokerStartError(f"something already listens on {host}:{port}")
        self._log = open(self.files.log_file, "ab")  # noqa: SIM115 - closed in stop()
        os.chmod(self.files.log_file, 0o600)
        self.log_offset = os.fstat(self._log.fileno()).st_size
        self._proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [str(self.executable), "-c", str(self.files.config_file)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            start_new_session=True, close_fds=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self._close_log()
                self._proc = None
                raise BrokerStartError(
                    f"mosquitto exited with status {code} at start; its log "
                    f"({self.files.log_file}) ends with:\n{_tail(self.files.log_file)}"
                )
            if port_accepts(host, port):
                log.info("mosquitto %s listening on %s:%d (pid %d)",
                         self.executable, self.files.host, port, self._proc.pid)
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerStartError(f"mosquitto did not open {host}:{port} within {timeout:g} s")

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads the CRL (for new connections only) and its own
        certificate and key (for new connections too)."""
        if not self.running or self._proc is None:
            raise BrokerError("the broker is not running")
        self._proc.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (mosquitto saves its state), then SIGKILL after ``timeout``."""
        proc, self._proc = self._proc, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    code = proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("mosquitto ignored SIGTERM for %g s; killing it", timeout)
                    proc.kill()
                    code = proc.wait()
            else:
                code = proc.returncode
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
