"""The service's Prometheus metrics, in a registry of its own (`GET /metrics`).

    bigbird_pegasus_requests_total{endpoint, status}      requests answered, by endpoint and HTTP status
    bigbird_pegasus_request_seconds{endpoint}             time from arrival to answer (histogram)
    bigbird_pegasus_queue_requests / _queue_documents     requests / documents waiting for the model
    bigbird_pegasus_running_documents                     documents in the batch the model runs (0: idle)
    bigbird_pegasus_batch_documents                       documents per batch run (histogram)
    bigbird_pegasus_batch_seconds                         model time per batch (histogram)
    bigbird_pegasus_documents_total                       documents summarized
    bigbird_pegasus_input_tokens_total                    tokens of the documents summarized
    bigbird_pegasus_output_tokens_total                   tokens of their summaries
    process_*                                             the process's memory, CPU time, open files

`endpoint` is one of the service's paths, or "other" for any path it does not have, so that the label set stays
bounded whatever paths clients ask for.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "bigbird_pegasus"
OTHER_ENDPOINT = "other"
DISCONNECTED = 499  # the status nginx logs for a client that left before its answer; never sent
# Request times span a health check (milliseconds) to a long paper on a CPU (minutes).
REQUEST_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000)
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


class ServiceMetrics:
    """The metrics of one service; `endpoints` are the paths it answers."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, endpoints: tuple[str, ...]):
        self.endpoints = endpoints
        self.registry = CollectorRegistry()
        self.requests = Counter(f"{PREFIX}_requests", "Requests answered, by endpoint and HTTP status",
                                ("endpoint", "status"), registry=self.registry)
        self.request_seconds = Histogram(f"{PREFIX}_request_seconds", "Seconds from a request's arrival to its answer",
                                         ("endpoint",), buckets=REQUEST_SECONDS_BUCKETS, registry=self.registry)
        self.queue_requests = Gauge(f"{PREFIX}_queue_requests", "Requests waiting for the model",
                                    registry=self.registry)
        self.queue_documents = Gauge(f"{PREFIX}_queue_documents", "Documents waiting for the model",
                                     registry=self.registry)
        self.running_documents = Gauge(f"{PREFIX}_running_documents", "Documents in the batch the model runs",
                                       registry=self.registry)
        self.batch_documents = Histogram(f"{PREFIX}_batch_documents", "Documents per batch run by the model",
                                         buckets=BATCH_SIZE_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram(f"{PREFIX}_batch_seconds", "Model seconds per batch",
                                       buckets=REQUEST_SECONDS_BUCKETS, registry=self.registry)
        self.documents = Counter(f"{PREFIX}_documents", "Documents summarized", registry=self.registry)
        self.input_tokens = Counter(f"{PREFIX}_input_tokens", "Tokens of the documents summarized",
                                    registry=self.registry)
        self.output_tokens = Counter(f"{PREFIX}_output_tokens", "Tokens of the summaries made",
                                     registry=self.registry)
        ProcessCollector(registry=self.registry)

    def watch_queue(self, *, requests: Callable[[], int], documents: Callable[[], int],
                    running: Callable[[], int]) -> None:
        """Read the queue's depth and the running batch's size from these functions at each scrape."""
        self.queue_requests.set_function(requests)
        self.queue_documents.set_function(documents)
        self.running_documents.set_function(running)

    def record_request(self, path: str, *, status: int, seconds: float) -> None:
        endpoint = path if path in self.endpoints else OTHER_ENDPOINT
        self.requests.labels(endpoint, str(status)).inc()
        self.request_seconds.labels(endpoint).observe(seconds)

    def record_batch(self, documents: int, *, seconds: float) -> None:
        self.batch_documents.observe(documents)
        self.batch_seconds.observe(seconds)

    def record_summaries(self, *, documents: int, input_tokens: int, output_tokens: int) -> None:
        self.documents.inc(documents)
        self.input_tokens.inc(input_tokens)
        self.output_tokens.inc(output_tokens)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)
