"""Prometheus metrics of one server process, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServingMetrics:
    """Requests, latency, batches, loaded versions, swaps and capture health."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "edgeloop_requests",
            "Inference requests by model and HTTP status",
            ["model", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "edgeloop_request_seconds",
            "Inference latency inside the server, by model",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "edgeloop_batch_rows",
            "Rows per model call (micro-batch size)",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
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
        self.upload_errors = Counter(
            "edgeloop_capture_upload_errors",
            "Failed uploads of capture batches (retried)",
            registry=r,
        )

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        return generate_latest(self.registry)
