"""Prometheus metrics of the gateway (one registry per application, so tests and reloads never clash)."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)


class GatewayMetrics:
    """Requests by service and status, latency, upstream errors, token failures, rate-limit refusals."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_requests", "Requests answered, by target service, method and status",
            ["service", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_request_duration_seconds", "Time to answer, by target service", ["service"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors", "Upstream failures, by service and kind (unavailable, timeout, broken mid-answer)",
            ["service", "kind"], registry=self.registry,
        )
        self.token_failures = Counter(
            "gateway_token_failures", "Refused platform tokens, by problem code", ["code"], registry=self.registry,
        )
        self.rate_limited = Counter(
            "gateway_rate_limited", "Requests refused by a rate limit, by scope (principal, address)",
            ["scope"], registry=self.registry,
        )
        self.client_timeouts = Counter(
            "gateway_client_body_timeouts", "Requests answered 408: the client's body did not arrive in time",
            registry=self.registry,
        )
        self.replica_up = Gauge(
            "gateway_upstream_replica_up", "1 while a service replica takes requests, 0 while it is out",
            ["service", "replica"], registry=self.registry,
        )
        self.jwks_fetches = Counter(
            "gateway_jwks_loads", "Issuer key sets loaded, by issuer", ["issuer"], registry=self.registry,
        )

        # Labelled children looked up once: `labels()` validates and locks on every call.
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[str, Any] = {}

    def answered(self, service: str, method: str, status: int, seconds: float) -> None:
        """Count one forwarded request and its time to answer."""
        key = (service, method, status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.requests.labels(service, method, str(status))
        counter.inc()
        histogram = self._latency.get(service)
        if histogram is None:
            histogram = self._latency[service] = self.latency.labels(service)
        histogram.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
