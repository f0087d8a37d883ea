"""Send a scan report to a fleetguard server (``fleetguard scan --server URL``)."""

from __future__ import annotations

import gzip
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from fleetguard.core.errors import (
    AuthenticationError,
    DependencyError,
    FleetError,
    ValidationFailedError,
)

if TYPE_CHECKING:
    from fleetguard.protocol.scan_report import ScanReportDocument

TOKEN_ENV = "FLEETGUARD_API_TOKEN"  # noqa: S105  (the name of a variable)
TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class UploadResult:
    scan_id: str
    outcome: dict[str, int]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server(url: str, token: str | None) -> str:
    """The API base URL, or an error before any scanning is done."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValidationFailedError("--server must be a URL such as https://fleet.example:8443",
                                    field="server")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ValidationFailedError(
            "--server over plain http sends the API token in the clear: use https",
            field="server",
        )
    if not token:
        raise AuthenticationError(f"--server needs an API token (--api-token or {TOKEN_ENV})")
    return url.strip().rstrip("/")


def upload_report(
    base_url: str, token: str, report: ScanReportDocument, *, ports: str,
    ca_file: Path | None = None,
) -> UploadResult:
    """POST the report (gzip-encoded) to ``/api/v1/scans``, as the body the route reads
    (``{"report": <fleetguard.scan/1>, "ports": <--ports>}``); returns the stored scan."""
    import ssl

    import httpx

    from fleetguard.core.tls import client_context

    verify: ssl.SSLContext | bool = True
    if ca_file is not None:
        try:
            verify = client_context(ca_file=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValidationFailedError(f"cannot read --ca-file {ca_file}: {exc}",
                                        field="ca-file") from None
    body = gzip.compress(
        json.dumps({"report": report.to_json_dict(), "ports": ports}).encode(), mtime=0
    )
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
    try:
        with httpx.Client(verify=verify, timeout=TIMEOUT_S) as client:
            response = client.post(f"{base_url}/api/v1/scans", content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DependencyError(f"could not reach {base_url}: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code != 201:
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        message = error.get("message") or response.reason_phrase
        raise FleetError(f"the server refused the report ({response.status_code}): {message}",
                         code=str(error.get("code") or "upload_failed"))
    return UploadResult(scan_id=str(answer["id"]), outcome=dict(answer.get("outcome") or {}))


__all__ = ["TOKEN_ENV", "UploadResult", "check_server", "upload_report"]
