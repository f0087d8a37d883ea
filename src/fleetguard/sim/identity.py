"""Virtual device identities: a key per device, made here, and a real enrollment.

Devices are registered through the operator REST API (``POST /api/v1/devices``, then
``POST /api/v1/devices/{id}/enrollment-token``) and each enrolls over the device
endpoint with its own CSR, exactly as the agent does (``POST /v1/enroll``). Keys and
certificates stay in memory; Python's ``ssl`` can load a certificate chain only from a
file, so each one passes through one private temporary file that is removed at once.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from fleetguard.core.errors import FleetError
from fleetguard.core.tls import client_context
from fleetguard.protocol import ENROLL_PATH, CertificateResponse, EnrollRequest, new_key_and_csr


class ProvisioningError(FleetError):
    code = "sim_provisioning_failed"


@dataclass(frozen=True, slots=True)
class SimIdentity:
    device_id: str
    name: str
    key_pem: bytes
    chain_pem: bytes


class ContextFactory:
    """Builds one client SSLContext per device, trusting only the fleet CA."""

    def __init__(self, ca_pem: bytes) -> None:
        self._ca = ca_pem.decode()
        self._dir = Path(tempfile.mkdtemp(prefix="fleetguard-sim-"))
        os.chmod(self._dir, 0o700)

    def __call__(self, identity: SimIdentity) -> ssl.SSLContext:
        context = client_context(ca_pem=self._ca)
        path = self._dir / "device.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, identity.key_pem + identity.chain_pem)
        finally:
            os.close(fd)
        try:
            context.load_cert_chain(path)
        finally:
            path.unlink(missing_ok=True)
        return context

    def close(self) -> None:
        for child in self._dir.iterdir():
            child.unlink(missing_ok=True)
        self._dir.rmdir()


async def _call(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        response = await client.post(path, json=body)
    except httpx.HTTPError as exc:
        raise ProvisioningError(f"{path}: {exc}") from exc
    if response.status_code != 201:
        raise ProvisioningError(f"{path}: HTTP {response.status_code} {response.text[:300]}")
    data: dict[str, Any] = response.json()
    return data


async def _enroll(client: httpx.AsyncClient, body: EnrollRequest) -> CertificateResponse:
    answer = await _call(client, ENROLL_PATH, body.model_dump(exclude_none=True))
    try:
        return CertificateResponse.model_validate(answer)
    except ValidationError as exc:
        raise ProvisioningError(f"{ENROLL_PATH}: not a certificate response: {exc}") from None


async def provision_fleet(
    *,
    server: str,
    device_endpoint: str,
    api_token: str,
    ca_pem: bytes,
    names: list[str],
    labels: Callable[[int], dict[str, str]] | None = None,
    hardware_models: Callable[[int], str | None] | None = None,
    concurrency: int = 16,
    progress: Callable[[int], None] | None = None,
) -> list[SimIdentity]:
    """Register, get a token for, and enroll each named device; returns identities in order.

    ``hardware_models`` names each device's model: detection compares a device with the
    others of its model, so a simulated camera is judged among cameras, not gateways.
    """
    tls = client_context(ca_pem=ca_pem)
    limit = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {api_token}"}
    done = 0
    async with (
        httpx.AsyncClient(base_url=server.rstrip("/"), verify=tls, headers=headers,
                          timeout=60) as api,
        httpx.AsyncClient(base_url=device_endpoint.rstrip("/"), verify=tls, timeout=60) as dev,
    ):
        async def one(index: int, name: str) -> SimIdentity:
            nonlocal done
            async with limit:
                body: dict[str, object] = {
                    "name": name, "serial": name, "vendor": "fleetguard-sim",
                    "labels": labels(index) if labels else {"sim": "true"},
                }
                model = hardware_models(index) if hardware_models else None
                if model is not None:
                    body["hardware_model"] = model
                device = await _call(api, "/api/v1/devices", body)
                token = await _call(api, f"/api/v1/devices/{device['id']}/enrollment-token",
                                    {"ttl_hours": 1})
                key_pem, csr = await asyncio.to_thread(new_key_and_csr)
                result = await _enroll(dev, EnrollRequest(csr=csr, token=token["token"]))
            done += 1
            if progress is not None:
                progress(done)
            return SimIdentity(result.device_id, name, key_pem, result.chain_pem.encode())

        return list(await asyncio.gather(*(one(i, n) for i, n in enumerate(names))))
