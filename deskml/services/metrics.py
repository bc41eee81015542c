"""Prometheus metrics: one registry per app (never the global default), fed by finished request
records, plus gauges read from the live state (loaded models, slots, queues) at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from deskml.core.context import RequestRecord
from deskml.services.drain import Drain
from deskml.services.history import HistoryWriter

PREFIX = "deskml"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
_TPOT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1)


class Loaded(Protocol):
    """What the live gauges read from the model manager and the service-model manager: what is loaded now."""

    def loaded(self) -> Sequence[Any]: ...


WeightBytes = Callable[[Any], int]  # a service model's spec -> the bytes of its weight files (0 if unknown)


def _no_weights(_spec: Any) -> int:
    return 0


class Metrics:
    """The app's metrics. `observe` is a record sink; the collector reads the loaded models, the
    history writer and the drain when scraped."""

    def __init__(self, models: Loaded, services: Loaded, history: HistoryWriter | None, drain: Drain,
                 weight_bytes: WeightBytes = _no_weights) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests finished, by route, dialect, model and status.",
            ["route", "method", "dialect", "model", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds", "Time from request start to the last byte of the reply.",
            ["route", "dialect", "model"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.ttft = Histogram(
            f"{PREFIX}_time_to_first_token_seconds", "Time from admission to the first generated token.",
            ["model"], buckets=_TTFT_BUCKETS, registry=self.registry,
        )
        self.tpot = Histogram(
            f"{PREFIX}_time_per_output_token_seconds", "Generation time divided by generated tokens, per request.",
            ["model"], buckets=_TPOT_BUCKETS, registry=self.registry,
        )
        self.queue_wait = Histogram(
            f"{PREFIX}_queue_wait_seconds", "Time a request waited for a decoding slot.",
            ["model"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.tokens = Counter(
            f"{PREFIX}_tokens", "Tokens processed, by model and kind (prompt or completion).",
            ["model", "kind"], registry=self.registry,
        )
        self.drafted = Counter(
            f"{PREFIX}_speculative_drafted_tokens", "Tokens speculative decoding proposed, by model.",
            ["model"], registry=self.registry,
        )
        self.accepted = Counter(
            f"{PREFIX}_speculative_accepted_tokens", "Proposed tokens the model accepted, by model.",
            ["model"], registry=self.registry,
        )
        self.cache = Counter(
            f"{PREFIX}_cache_requests", "Cacheable requests by result (hit or miss).", ["result"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            f"{PREFIX}_rate_limited", "Requests refused with 429, by the limit that was reached.", ["limit"],
            registry=self.registry,
        )
        self.registry.register(_LiveState(models, services, history, drain, weight_bytes))
        for result in ("hit", "miss"):
            self.cache.labels(result)  # present from the start, so rate() works on the first scrape

    def observe(self, record: RequestRecord) -> None:
        model = record.model or ""
        route = record.extra.get("route") or "unmatched"
        self.requests.labels(route, record.method, record.dialect, model, str(record.status)).inc()
        self.latency.labels(route, record.dialect, model).observe(record.elapsed_ns / 1e9)
        if record.model and record.cache != "hit":
            if record.ttft_ns is not None:
                self.ttft.labels(model).observe(record.ttft_ns / 1e9)
            if record.completion_tokens > 0 and record.eval_ns > 0:
                self.tpot.labels(model).observe(record.eval_ns / 1e9 / record.completion_tokens)
            if record.queue_ns:
                self.queue_wait.labels(model).observe(record.queue_ns / 1e9)
            if record.prompt_tokens:
                self.tokens.labels(model, "prompt").inc(record.prompt_tokens)
            if record.completion_tokens:
                self.tokens.labels(model, "completion").inc(record.completion_tokens)
            if record.draft_tokens:
                self.drafted.labels(model).inc(record.draft_tokens)
                self.accepted.labels(model).inc(record.draft_accepted_tokens)
        if record.cache in {"hit", "miss"}:
            self.cache.labels(record.cache).inc()
        limited = record.extra.get("rate_limited")
        if limited:
            self.rate_limited.labels(str(limited)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveState(Collector):
    """Gauges that are facts about now: loaded models, their memory, slots, queues, history drops."""

    def __init__(self, models: Loaded, services: Loaded, history: HistoryWriter | None, drain: Drain | None,
                 weight_bytes: WeightBytes = _no_weights) -> None:
        self.models = models
        self.services = services
        self.history = history
        self.drain = drain
        self.weight_bytes = weight_bytes

    def describe(self) -> list[Metric]:
        return []  # collected fresh at every scrape; nothing to pre-describe

    def collect(self) -> Iterator[Metric]:
        loaded = GaugeMetricFamily(f"{PREFIX}_models_loaded", "Models loaded now.")
        memory = GaugeMetricFamily(
            f"{PREFIX}_model_memory_bytes", "Estimated memory of a loaded model.", labels=["model", "kind"]
        )
        running = GaugeMetricFamily(
            f"{PREFIX}_running_requests", "Requests decoding now, per loaded model.", labels=["model", "kind"]
        )
        queued = GaugeMetricFamily(
            f"{PREFIX}_queued_requests", "Requests waiting for a slot, per loaded model.", labels=["model", "kind"]
        )
        slots = GaugeMetricFamily(f"{PREFIX}_slots", "Decoding slots per loaded model.", labels=["model", "kind"])
        vram = GaugeMetricFamily(
            f"{PREFIX}_model_device_memory_bytes", "Estimated GPU memory of a loaded model (0 on the CPU).",
            labels=["model", "kind", "device"],
        )
        models = self.models.loaded()
        for model in models:
            labels = [model.name, model.kind]
            memory.add_metric(labels, model.size_bytes)
            running.add_metric(labels, model.scheduler.running)
            queued.add_metric(labels, model.scheduler.queued)
            slots.add_metric(labels, model.scheduler.slots)
            gpu = getattr(model, "gpu", None)
            device = gpu.devices[0].name if gpu is not None and gpu.n_gpu_layers > 0 and gpu.devices else "cpu"
            vram.add_metric([*labels, device], getattr(model, "size_vram", 0))
        # vision, embedding and other service models (no slots or queue of their own)
        others = self.services.loaded()
        for item in others:
            running.add_metric([item.spec.name, str(item.spec.kind)], getattr(item, "active", 0))
            device = str(getattr(getattr(item, "engine", None), "device", "cpu"))
            if device != "cpu":  # its weights live on the device: their size is the estimate
                vram.add_metric([item.spec.name, str(item.spec.kind), device], self.weight_bytes(item.spec))
        loaded.add_metric([], len(models) + len(others))
        yield from (loaded, memory, running, queued, slots, vram)
        history = self.history
        if history is not None:
            drops = CounterMetricFamily(
                f"{PREFIX}_history_dropped",
                "Request records never written: the history buffer was full, or the database refused the row.",
            )
            drops.add_metric([], history.dropped)
            yield drops
            failed = CounterMetricFamily(
                f"{PREFIX}_history_write_errors", "History write attempts that failed, whatever the reason."
            )
            failed.add_metric([], history.write_errors)
            yield failed
            yield GaugeMetricFamily(
                f"{PREFIX}_history_buffered_records", "Request records waiting to be written.", value=history.pending
            )
        if self.drain is not None:
            yield GaugeMetricFamily(f"{PREFIX}_requests_in_flight", "HTTP requests running now.",
                                    value=len(self.drain.active))
