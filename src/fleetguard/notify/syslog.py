"""Syslog: RFC 5424 messages with a CEF payload, over UDP (RFC 5426), TCP with octet
counting (RFC 6587) or TLS (RFC 5425).

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [fleetguard@32473 ...] CEF:0|...

PRI is facility * 8 + the syslog severity of the event's severity. The structured data's
enterprise number, 32473, is the one RFC 5612 reserves for documentation: fleetguard has
none registered. Over TCP and TLS a delivery is done when the peer accepted every byte
(syslog has no acknowledgement of its own); over UDP when the datagram was sent.
"""

from __future__ import annotations

import os
import socket
import ssl
from datetime import UTC, datetime

from fleetguard import __version__
from fleetguard.core.severity import Severity
from fleetguard.core.tls import MINIMUM_VERSION
from fleetguard.notify.addresses import first_connectable, resolve_checked
from fleetguard.notify.models import (
    SYSLOG_FACILITIES,
    Attempt,
    NotificationEvent,
    SyslogSettings,
    SyslogTransport,
)

TIMEOUT_S = 5.0
SD_ID = "fleetguard@32473"
#: Our severities as syslog severities (RFC 5424 table 2).
SYSLOG_SEVERITY: dict[Severity, int] = {
    Severity.CRITICAL: 2, Severity.HIGH: 3, Severity.MEDIUM: 4, Severity.LOW: 5,
    Severity.INFO: 6,
}  # fmt: skip
MAX_UDP_BYTES = 8192  # a datagram this size reaches rsyslog and syslog-ng whole on loopback


def _printusascii(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces (33-126), at most ``limit``; "-"
    when nothing is left."""
    kept = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return kept or "-"


def cef_header_field(value: str) -> str:
    """A CEF header field: backslash and pipe escaped; line breaks become spaces."""
    value = value.replace("\\", "\\\\").replace("|", "\\|")
    return value.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def cef_extension_value(value: str) -> str:
    """A CEF extension value: backslash and equals escaped, line breaks as \\n and \\r."""
    value = value.replace("\\", "\\\\").replace("=", "\\=")
    return value.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def sd_param_value(value: str) -> str:
    """An RFC 5424 SD-PARAM value: '"', '\\' and ']' escaped with a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def cef_line(event: NotificationEvent) -> str:
    header = "|".join(cef_header_field(part) for part in (
        "CEF:0", "fleetguard", "fleetguard", __version__, event.signature_id,
        event.cef_name, str(event.cef_level),
    ))  # fmt: skip
    fields: dict[str, str] = {
        "rt": str(int(event.occurred_at.timestamp() * 1000)),
        "externalId": event.id, "cat": event.kind, "msg": event.title,
    }  # fmt: skip
    if event.device_id:
        fields["cs1Label"] = "fleetguardDeviceId"
        fields["cs1"] = event.device_id
    fields.update(event.extensions)
    extension = " ".join(f"{key}={cef_extension_value(value)}" for key, value in fields.items())
    # "CEF:0" is the version field, which is not escaped (it holds no pipe).
    return f"{header}|{extension}"


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc5424_message(
    event: NotificationEvent, settings: SyslogSettings, *, hostname: str | None = None,
    procid: int | None = None,
) -> bytes:
    pri = SYSLOG_FACILITIES[settings.facility] * 8 + SYSLOG_SEVERITY[event.severity]
    params = [("eventId", event.id), ("kind", event.kind), ("severity", event.severity.value)]
    if event.device_id:
        params.append(("deviceId", event.device_id))
    data = "[" + SD_ID + "".join(f' {k}="{sd_param_value(v)}"' for k, v in params) + "]"
    head = " ".join((
        f"<{pri}>1", _timestamp(event.occurred_at),
        _printusascii(hostname if hostname is not None else socket.gethostname(), 255),
        _printusascii(settings.app_name, 48),
        _printusascii(str(procid if procid is not None else os.getpid()), 128),
        _printusascii(event.kind, 32), data,
    ))  # fmt: skip
    return f"{head} {cef_line(event)}".encode()


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet-counting framing: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode() + b" " + message


def _tls_context(settings: SyslogSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=settings.ca_pem) if settings.ca_pem \
        else ssl.create_default_context()
    context.minimum_version = MINIMUM_VERSION
    return context


def _send(settings: SyslogSettings, message: bytes, timeout: float) -> None:
    addresses = resolve_checked(settings.host, settings.port, allow_private=True)
    if settings.transport is SyslogTransport.UDP:
        address = addresses[0]
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.sendto(message[:MAX_UDP_BYTES], (str(address), settings.port))
        return
    with first_connectable(addresses, settings.port, timeout) as raw:
        if settings.transport is SyslogTransport.TLS:
            with _tls_context(settings).wrap_socket(raw, server_hostname=settings.host) as tls:
                tls.sendall(octet_counted(message))
                tls.unwrap()
            return
        raw.sendall(octet_counted(message))
        raw.shutdown(socket.SHUT_WR)


def send_syslog(
    settings: SyslogSettings, event: NotificationEvent, *, timeout: float = TIMEOUT_S
) -> Attempt:
    """One message of ``event``; never raises for the collector's or the network's faults."""
    from fleetguard.core.errors import ValidationFailedError

    message = rfc5424_message(event, settings)
    try:
        _send(settings, message, timeout)
    except ValidationFailedError as exc:
        return Attempt(delivered=False, retry=exc.code == "destination_unresolvable",
                       error=exc.message)
    except TimeoutError:
        return Attempt(delivered=False, retry=True, error=f"no answer within {timeout:g} s")
    except ssl.SSLError as exc:
        return Attempt(delivered=False, retry=True, error=f"TLS failed: {exc.reason or exc}")
    except OSError as exc:
        return Attempt(delivered=False, retry=True,
                       error=f"connection failed: {type(exc).__name__}: {exc}"[:300])
    return Attempt(delivered=True, retry=False)


__all__ = [
    "SD_ID",
    "SYSLOG_SEVERITY",
    "cef_extension_value",
    "cef_header_field",
    "cef_line",
    "octet_counted",
    "rfc5424_message",
    "sd_param_value",
    "send_syslog",
]
