"""Per-upstream Prometheus metrics for the router, registered on the app's registry when it has one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
_STATES = {"closed": 0, "half_open": 1, "open": 2}


class RouterMetrics:
    def __init__(self, registry: CollectorRegistry | None, status: Callable[[], list[dict[str, Any]]]) -> None:
        self.enabled = registry is not None
        if registry is None:
            return
        self.requests = Counter(
            "deskml_upstream_requests", "Requests the router sent to a backend (an upstream or 'local'), by "
            "outcome: ok, failed_before_reply (the next backend was tried), failed_mid_reply, cancelled.",
            ["upstream", "outcome"], registry=registry,
        )
        self.ttfb = Histogram(
            "deskml_upstream_first_event_seconds", "Time from sending a request to a backend to its first event.",
            ["upstream"], buckets=_TTFB_BUCKETS, registry=registry,
        )
        registry.register(_Live(status))

    def outcome(self, upstream: str, outcome: str) -> None:
        if self.enabled:
            self.requests.labels(upstream, outcome).inc()

    def first_event(self, upstream: str, seconds: float) -> None:
        if self.enabled:
            self.ttfb.labels(upstream).observe(seconds)


class _Live(Collector):
    def __init__(self, status: Callable[[], list[dict[str, Any]]]) -> None:
        self.status = status

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("deskml_upstream_up", "1 when the last health check of an upstream passed.",
                               labels=["upstream", "kind"])
        state = GaugeMetricFamily("deskml_upstream_circuit_state",
                                  "Circuit breaker per upstream: 0 closed, 1 half-open, 2 open.", labels=["upstream"])
        flight = GaugeMetricFamily("deskml_upstream_in_flight", "Requests running on each backend now.",
                                   labels=["upstream"])
        models = GaugeMetricFamily("deskml_upstream_models", "Models each upstream offers.", labels=["upstream"])
        for item in self.status():
            name = item["name"]
            if name != "local":
                up.add_metric([name, item["kind"]], 1.0 if item["up"] else 0.0)
                state.add_metric([name], _STATES.get(item["circuit"], 0))
                models.add_metric([name], len(item["models"]))
            flight.add_metric([name], item["in_flight"])
        yield from (up, state, flight, models)
