"""The shipped list of default credentials and the SNMP communities tried.

``data/default_credentials.json`` holds the pairs with their sources and licences (facts only;
see its ``sources`` block and ``docs/scan-checks.md``). A user list can replace it: a JSON file
of the same shape, or a text file with one ``user:password`` per line.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fleetguard.scan.errors import CredentialListError
from fleetguard.scan.models import Service

#: Community strings tried (v1 and v2c): the two factory defaults of nearly every SNMP agent
#: (``public`` read, ``private`` write) and the usual vendor variants.
SNMP_COMMUNITIES: tuple[str, ...] = (
    "public",
    "private",
    "community",
    "manager",
    "admin",
    "default",
    "cisco",
    "monitor",
    "snmp",
    "secret",
)


@dataclass(frozen=True, slots=True)
class Credential:
    username: str
    password: str
    services: frozenset[str]
    weight: int = 1

    def applies_to(self, service: Service) -> bool:
        name = "http" if service is Service.HTTPS else service.value
        return not self.services or name in self.services

    def __str__(self) -> str:  # evidence never shows the password itself
        return f"{self.username}:{mask(self.password)}"


def mask(password: str) -> str:
    """Show a default password in evidence only by a hint: it is public, but logs travel."""
    if not password:
        return "(empty)"
    if len(password) <= 2:
        return "*" * len(password)
    return password[0] + "*" * (len(password) - 2) + password[-1]


def random_credential() -> Credential:
    """A credential no device has: the control for "does it accept anything?"."""
    return Credential("fg" + secrets.token_hex(4), secrets.token_urlsafe(12), frozenset())


def _parse_json(doc: Any, origin: str) -> list[Credential]:
    if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
        raise CredentialListError(f"{origin}: expected an object with an 'entries' list")
    out: list[Credential] = []
    for i, e in enumerate(doc["entries"]):
        if not isinstance(e, dict):
            raise CredentialListError(f"{origin}: entry {i} is not an object")
        user, pw = e.get("username"), e.get("password")
        services = e.get("services", [])
        weight = e.get("weight", 1)
        if not isinstance(user, str) or not isinstance(pw, str):
            raise CredentialListError(f"{origin}: entry {i} needs string username and password")
        if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
            raise CredentialListError(f"{origin}: entry {i} has a bad 'services' list")
        if not isinstance(weight, int):
            raise CredentialListError(f"{origin}: entry {i} has a bad 'weight'")
        out.append(Credential(user, pw, frozenset(services), weight))
    out.sort(key=lambda c: -c.weight)  # stable: file order within a weight
    return out


def _parse_text(text: str, origin: str) -> list[Credential]:
    out: list[Credential] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if ":" not in line:
            raise CredentialListError(f"{origin}:{n}: expected user:password")
        user, _, pw = line.partition(":")
        out.append(Credential(user, pw, frozenset()))
    return out


@cache
def shipped_credentials() -> tuple[Credential, ...]:
    try:
        text = (
            resources.files("fleetguard.scan")
            .joinpath("data/default_credentials.json")
            .read_text(encoding="utf-8")
        )
        return tuple(_parse_json(json.loads(text), "default_credentials.json"))
    except (OSError, ValueError) as exc:
        raise CredentialListError(f"shipped credential list unreadable: {exc}") from exc


def load_credentials(path: str | Path | None = None) -> tuple[Credential, ...]:
    """The shipped list, or the list in ``path`` (JSON like the shipped one, or user:pass)."""
    if path is None:
        return shipped_credentials()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialListError(f"cannot read credential list {str(p)!r}: {exc}") from exc
    if text.lstrip().startswith("{"):
        try:
            return tuple(_parse_json(json.loads(text), str(p)))
        except ValueError as exc:
            raise CredentialListError(f"{p}: not valid JSON: {exc}") from exc
    return tuple(_parse_text(text, str(p)))


def for_service(creds: tuple[Credential, ...], service: Service) -> list[Credential]:
    return [c for c in creds if c.applies_to(service)]


__all__ = [
    "SNMP_COMMUNITIES",
    "Credential",
    "for_service",
    "load_credentials",
    "mask",
    "random_credential",
    "shipped_credentials",
]
