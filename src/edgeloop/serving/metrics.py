"""Prometheus metrics of one server process, in a registry of its own."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class _CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _HistogramChild:
    __slots__ = ("counts", "sum", "uppers")

    def __init__(self, uppers: Sequence[float]) -> None:
        self.uppers = uppers
        self.counts = [0] * (len(uppers) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.uppers, value)] += 1
        self.sum += value


class HotCounter:
    """A labelled counter for the request path: a plain float add, no lock (the event loop
    thread is its only writer); Prometheus reads it through `collect`."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.children: dict[tuple[str, ...], _CounterChild] = {}

    def labels(self, *values: str) -> _CounterChild:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = _CounterChild()
        return child

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self.children.items()):
            family.add_metric(list(values), child.value)
        yield family


class HotHistogram:
    """A labelled histogram for the request path, same idea as HotCounter."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, list(labelnames)
        self.uppers = [float(b) for b in buckets]
        self.children: dict[tuple[str, ...], _HistogramChild] = {}

    def labels(self, *values: str) -> _HistogramChild:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = _HistogramChild(self.uppers)
        return child

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self.children.items()):
            cumulative, buckets = 0, []
            for upper, count in zip([*self.uppers, float("inf")], child.counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if upper == float("inf") else repr(upper), cumulative))
            family.add_metric(list(values), buckets, child.sum)
        yield family


class ServingMetrics:
    """Requests, latency, batches, loaded versions, swaps and capture health."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = HotCounter(
            "edgeloop_requests", "Inference requests by model and HTTP status", ["model", "status"]
        )
        self.latency = HotHistogram(
            "edgeloop_request_seconds",
            "Inference latency inside the server, by model",
            ["model"],
            LATENCY_BUCKETS,
        )
        self.batch_size = HotHistogram(
            "edgeloop_batch_rows",
            "Rows per model call (micro-batch size)",
            ["model"],
            BATCH_BUCKETS,
        )
        for hot in (self.requests, self.latency, self.batch_size):
            r.register(hot)
        self.loaded = Gauge(
            "edgeloop_model_loaded",
            "1 for each model version taking traffic",
            ["model", "version"],
            registry=r,
        )
        self.swaps = Counter(
            "edgeloop_swaps",
            "Hot swaps by model and result (ok, failed)",
            ["model", "result"],
            registry=r,
        )
        self.overloaded = Counter(
            "edgeloop_overloaded",
            "Requests refused with 503 because the queue was full",
            ["model"],
            registry=r,
        )
        self.capture_queue = Gauge(
            "edgeloop_capture_queue_depth", "Capture records waiting for the spool", registry=r
        )
        self.spool_bytes = Gauge(
            "edgeloop_capture_spool_bytes", "Bytes in the on-disk capture spool", registry=r
        )
        self.captured = Counter(
            "edgeloop_capture_acknowledged", "Records fsynced to the spool", registry=r
        )
        self.uploaded = Counter(
            "edgeloop_capture_uploaded", "Records written to the store as Parquet", registry=r
        )
        self.dropped = Counter(
            "edgeloop_capture_dropped",
            "Capture records dropped, by reason",
            ["reason"],
            registry=r,
        )
        self.uploads_deferred = Gauge(
            "edgeloop_capture_uploads_deferred",
            "1 while capture uploads wait for the serving CPUs to be less busy",
            registry=r,
        )
        self.upload_errors = Counter(
            "edgeloop_capture_upload_errors",
            "Failed uploads of capture batches (retried)",
            registry=r,
        )

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)
