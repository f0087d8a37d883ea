"""How simulated devices send telemetry: a choice list with nothing behind it, so the
command line can offer it without loading the simulator."""

from __future__ import annotations

from enum import StrEnum


class SimTransport(StrEnum):
    HTTPS = "https"
    MQTT = "mqtt"


__all__ = ["SimTransport"]
