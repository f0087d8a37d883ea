"""Prometheus metrics of the API, on a registry of the app's own (not the global one)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


@dataclass
class ApiMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "fleetguard_http_requests_total", "HTTP requests by route and status",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "fleetguard_http_request_seconds", "HTTP request latency by route",
            ["method", "route"], registry=self.registry,
        )
        self.login_failures = Counter(
            "fleetguard_login_failures_total", "Failed login steps by reason",
            ["reason"], registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
