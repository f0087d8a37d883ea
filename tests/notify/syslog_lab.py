"""A real rsyslogd on loopback ports, with its own config, writing what it receives to a
file; and a strict reader of RFC 5424 messages with a CEF payload."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.agent.pki import TestCA

RSYSLOGD = shutil.which("rsyslogd") or (
    "/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)
OSSL_DRIVER = Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_ossl.so")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_TLS_INPUT = """\
input(type="imtcp" address="127.0.0.1" port="{tls}" streamDriver.name="ossl"
      streamDriver.mode="1" streamDriver.authMode="anon"
      streamDriver.CAFile="{ca}" streamDriver.CertFile="{cert}" streamDriver.KeyFile="{key}")"""

_CONFIG = """\
global(workDirectory="{work}" maxMessageSize="64k")
module(load="imudp")
module(load="imtcp" maxSessions="50")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
{tls_input}
template(name="raw" type="string" string="%rawmsg%\\n")
template(name="fields" type="string"
         string="%syslogfacility%\\t%syslogseverity%\\t%app-name%\\t%procid%\\t%msgid%\\t%structured-data%\\n")
action(type="omfile" file="{raw}" template="raw")
action(type="omfile" file="{fields}" template="fields")
"""


@dataclass
class Rsyslog:
    process: subprocess.Popen[bytes]
    udp: int
    tcp: int
    tls: int
    raw: Path
    fields: Path
    ca_pem: str

    @classmethod
    def start(cls, directory: Path, ca: TestCA) -> Rsyslog:
        assert RSYSLOGD is not None
        directory.mkdir(parents=True, exist_ok=True)
        key, cert = ca.issue("syslog", server=True)
        (directory / "key.pem").write_bytes(key)
        (directory / "cert.pem").write_bytes(cert)
        (directory / "ca.pem").write_bytes(ca.pem)
        (directory / "work").mkdir(exist_ok=True)
        ports = {"udp": free_port(socket.SOCK_DGRAM), "tcp": free_port(), "tls": free_port()}
        raw, fields = directory / "received.log", directory / "fields.log"
        config = directory / "rsyslog.conf"
        files = {"ca": directory / "ca.pem", "cert": directory / "cert.pem",
                 "key": directory / "key.pem"}
        # TLS needs the OpenSSL network driver (Debian: rsyslog-openssl).
        tls_input = _TLS_INPUT.format(tls=ports["tls"], **files) if OSSL_DRIVER.exists() else ""
        config.write_text(_CONFIG.format(work=directory / "work", raw=raw, fields=fields,
                                         tls_input=tls_input, **ports))
        process = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(config), "-i", str(directory / "rsyslogd.pid")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lab = cls(process, ports["udp"], ports["tcp"], ports["tls"], raw, fields,
                  ca.pem.decode())
        lab._wait_listening()
        return lab

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                out = self.process.stdout.read().decode() if self.process.stdout else ""
                raise RuntimeError(f"rsyslogd exited: {out}")
            try:
                for port in (self.tcp, self.tls) if OSSL_DRIVER.exists() else (self.tcp,):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("rsyslogd did not listen within 15 s")

    def lines(self, path: Path, containing: str, count: int = 1, timeout: float = 15
              ) -> list[str]:
        """The lines of ``path`` that contain ``containing``, once there are ``count`` of
        them (or the timeout passed)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in (path.read_text().splitlines() if path.exists() else [])
                     if containing in line]
            if len(found) >= count or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- a strict reader ---------------------------------------------------------------------

_HEADER = re.compile(
    r"<(?P<pri>\d{1,3})>1 "
    r"(?P<timestamp>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)) "
    r"(?P<hostname>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) "
    r"(?P<msgid>[!-~]{1,32}) "
)
_SD_NAME = re.compile(r"[!#-<>-Z\\^-~]{1,32}")  # printable, no '=', ' ', ']', '"'


@dataclass
class Rfc5424:
    facility: int
    severity: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    structured_data: dict[str, dict[str, str]]
    msg: str


def _sd_value(text: str, i: int) -> tuple[str, int]:
    """A quoted PARAM-VALUE starting at text[i] == '"': only \\", \\\\ and \\] escape."""
    assert text[i] == '"', f"expected a quote at {i}: {text[i:i + 20]!r}"
    out, i = [], i + 1
    while text[i] != '"':
        if text[i] == "\\" and text[i + 1] in '"\\]':
            out.append(text[i + 1])
            i += 2
            continue
        assert text[i] not in '"]', f"unescaped {text[i]!r} in a param value"
        out.append(text[i])
        i += 1
    return "".join(out), i + 1


def _structured_data(text: str) -> tuple[dict[str, dict[str, str]], str]:
    if text.startswith("- "):
        return {}, text[2:]
    elements: dict[str, dict[str, str]] = {}
    i = 0
    while i < len(text) and text[i] == "[":
        name = _SD_NAME.match(text, i + 1)
        assert name, f"bad SD-ID at {i}"
        params: dict[str, str] = {}
        i = name.end()
        while text[i] == " ":
            param = _SD_NAME.match(text, i + 1)
            assert param and text[param.end()] == "=", f"bad SD-PARAM at {i}"
            params[param.group()], i = _sd_value(text, param.end() + 1)
        assert text[i] == "]", f"expected ']' at {i}: {text[i:i + 20]!r}"
        elements[name.group()] = params
        i += 1
    assert elements, "no structured data"
    assert text[i] == " ", "the message must follow the structured data after one space"
    return elements, text[i + 1:]


def parse_rfc5424(line: str) -> Rfc5424:
    header = _HEADER.match(line)
    assert header, f"not an RFC 5424 header: {line[:120]!r}"
    pri = int(header["pri"])
    assert 0 <= pri <= 191 and str(pri) == header["pri"], "PRI out of range or zero-padded"
    sd, msg = _structured_data(line[header.end():])
    return Rfc5424(pri // 8, pri % 8, header["timestamp"], header["hostname"], header["app"],
                   header["procid"], header["msgid"], sd, msg)


@dataclass
class Cef:
    version: str
    vendor: str
    product: str
    product_version: str
    signature: str
    name: str
    severity: int
    extensions: dict[str, str]


def _split_header(text: str) -> tuple[list[str], str]:
    """The seven header fields (``\\|`` and ``\\\\`` unescaped) and the extension."""
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while len(fields) < 7:
        char = text[i]
        if char == "\\":
            assert text[i + 1] in "|\\", f"bad escape in a CEF header: {text[i:i + 2]!r}"
            current.append(text[i + 1])
            i += 2
            continue
        assert char not in "\r\n", "a line break in a CEF header"
        if char == "|":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    return fields, text[i:]


_EXT_KEY = re.compile(r"(?:^| )([A-Za-z][A-Za-z0-9_]*)=")


def _unescape_extension(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\":
            nxt = value[i + 1]
            assert nxt in "\\=nr", f"bad escape in a CEF extension: \\{nxt}"
            out.append({"n": "\n", "r": "\r"}.get(nxt, nxt))
            i += 2
            continue
        assert value[i] != "=", "an unescaped '=' in a CEF extension value"
        out.append(value[i])
        i += 1
    return "".join(out)


def parse_cef(text: str) -> Cef:
    assert text.startswith("CEF:"), f"not CEF: {text[:40]!r}"
    fields, extension = _split_header(text)
    keys = [m for m in _EXT_KEY.finditer(extension)
            if m.start() == 0 or extension[m.start() - 1] != "\\"]
    values: dict[str, str] = {}
    for index, match in enumerate(keys):
        end = keys[index + 1].start() if index + 1 < len(keys) else len(extension)
        values[match.group(1)] = _unescape_extension(extension[match.end():end])
    return Cef(fields[0][4:], fields[1], fields[2], fields[3], fields[4], fields[5],
               int(fields[6]), values)
