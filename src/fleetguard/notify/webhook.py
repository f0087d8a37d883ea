"""Webhooks: an HTTPS POST of the event's JSON, signed with HMAC-SHA256.

Headers (see docs/notifications.md for the receiver's recipe)::

    X-Fleetguard-Event-Id:   the event's stable id (a receiver deduplicates on it)
    X-Fleetguard-Timestamp:  Unix seconds when this attempt was signed
    X-Fleetguard-Signature:  sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

A 2xx is delivered; 408, 429 and 5xx, timeouts and connection errors are retried (after
Retry-After when given); any other answer (4xx, and 3xx: redirects are not followed) is a
permanent failure. The connection goes to an address checked by :mod:`.addresses`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import ssl
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from fleetguard import __version__
from fleetguard.core.clock import utcnow
from fleetguard.core.errors import ValidationFailedError
from fleetguard.core.tls import MINIMUM_VERSION
from fleetguard.notify.addresses import (
    UNRESOLVABLE,
    IPAddress,
    first_connectable,
    literal_address,
)
from fleetguard.notify.addresses import resolve_checked as _resolve
from fleetguard.notify.errors import invalid_destination
from fleetguard.notify.models import Attempt, NotificationEvent, WebhookSettings

TIMEOUT_S = 5.0
SIGNATURE_HEADER = "X-Fleetguard-Signature"
TIMESTAMP_HEADER = "X-Fleetguard-Timestamp"
EVENT_ID_HEADER = "X-Fleetguard-Event-Id"
MAX_RETRY_AFTER_S = 3600.0
_RETRY_STATUSES = frozenset({408, 429})


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over ``timestamp + "." + body``, keyed with the secret's UTF-8."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def event_body(event: NotificationEvent) -> bytes:
    return json.dumps(event.to_json(), separators=(",", ":"), sort_keys=True).encode()


def validate_url(settings: WebhookSettings) -> None:
    """Refuse a URL fleetguard would not POST to (scheme, credentials, literal address);
    names are resolved and checked at each delivery."""
    parts = urlsplit(settings.url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise invalid_destination("url must be an https:// URL with a host", "url")
    if parts.scheme == "http" and not settings.allow_http:
        raise invalid_destination(
            "url must be https:// (set allow_http to send in clear text)", "url")
    if parts.username is not None or parts.password is not None:
        raise invalid_destination("put no credentials in the URL: the request is signed",
                                  "url")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise invalid_destination("url has an invalid port", "url") from None
    literal = literal_address(parts.hostname)
    if literal is not None:
        _resolve(parts.hostname, 443, allow_private=settings.allow_private_network,
                 field="url")


def shown_url(url: str) -> str:
    """The URL as the API and logs show it: any query string (a token, often) hidden."""
    parts = urlsplit(url)
    return parts._replace(query="REDACTED" if parts.query else "", fragment="").geturl()


class _PinnedConnection(http.client.HTTPSConnection):
    """HTTPS to a checked address, verifying the certificate for the URL's host name."""

    def __init__(self, host: str, port: int, addresses: list[IPAddress],
                 context: ssl.SSLContext | None, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._addresses = addresses
        self._tls = context is not None

    def connect(self) -> None:
        raw = first_connectable(self._addresses, self.port, self.timeout or TIMEOUT_S)
        if not self._tls:
            self.sock = raw
            return
        try:
            self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]
        except BaseException:
            raw.close()
            raise


def _context(settings: WebhookSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=settings.ca_pem) if settings.ca_pem \
        else ssl.create_default_context()
    context.minimum_version = MINIMUM_VERSION
    return context


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, (when - utcnow()).total_seconds()), MAX_RETRY_AFTER_S)


def classify(status: int, retry_after: str | None) -> Attempt:
    if 200 <= status < 300:
        return Attempt(delivered=True, retry=False, status=status)
    if status in _RETRY_STATUSES or status >= 500:
        return Attempt(delivered=False, retry=True, status=status,
                       error=f"the receiver answered {status}",
                       retry_after=retry_after_seconds(retry_after))
    if 300 <= status < 400:
        return Attempt(delivered=False, retry=False, status=status,
                       error=f"the receiver answered {status}: redirects are not followed")
    return Attempt(delivered=False, retry=False, status=status,
                   error=f"the receiver refused the event with {status}")


def send_webhook(
    settings: WebhookSettings, secret: str, event: NotificationEvent, *,
    timeout: float = TIMEOUT_S, attempt: int = 1,
) -> Attempt:
    """One POST of ``event``; never raises for the receiver's or the network's faults."""
    parts = urlsplit(settings.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        validate_url(settings)
        addresses = _resolve(host, port, allow_private=settings.allow_private_network,
                             field="url")
    except ValidationFailedError as exc:  # refused now: permanent, unless DNS failed
        return Attempt(delivered=False, retry=exc.code == UNRESOLVABLE, error=exc.message)
    body = event_body(event)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json", "User-Agent": f"fleetguard/{__version__}",
        EVENT_ID_HEADER: event.id, "X-Fleetguard-Event-Kind": event.kind,
        TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body),
        "X-Fleetguard-Attempt": str(attempt),
    }  # fmt: skip
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        context = _context(settings) if parts.scheme == "https" else None
        connection = _PinnedConnection(host, port, addresses, context, timeout)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read(65536)
            return classify(response.status, response.getheader("Retry-After"))
        finally:
            connection.close()
    except TimeoutError:
        return Attempt(delivered=False, retry=True, error=f"no answer within {timeout:g} s")
    except ssl.SSLError as exc:
        return Attempt(delivered=False, retry=True, error=f"TLS failed: {exc.reason or exc}")
    except (OSError, http.client.HTTPException) as exc:
        return Attempt(delivered=False, retry=True,
                       error=f"connection failed: {type(exc).__name__}: {exc}"[:300])


__all__ = [
    "EVENT_ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "classify",
    "event_body",
    "retry_after_seconds",
    "send_webhook",
    "shown_url",
    "signature",
    "validate_url",
]
