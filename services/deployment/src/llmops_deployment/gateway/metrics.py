"""The gateway's counters in Prometheus text format (``GET /metrics``): requests, errors, records dropped and
buffered, latency sum and count. Plain integers on the hot path; the text is built when scraped."""

from __future__ import annotations

from llmops_deployment.gateway.records import Records


class Metrics:
    def __init__(self, records: Records) -> None:
        self.records = records
        self.requests = 0
        self.errors = 0
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe(self, seconds: float, *, error: bool) -> None:
        self.requests += 1
        self.errors += error
        self.latency_sum += seconds
        self.latency_count += 1

    def render(self) -> bytes:
        r = self.records
        lines = [
            ("llmops_gateway_requests_total", "counter", "Inference requests answered", self.requests),
            ("llmops_gateway_errors_total", "counter", "Inference requests answered with an error", self.errors),
            ("llmops_gateway_records_dropped_total", "counter", "Records dropped (buffer full)", r.dropped),
            ("llmops_gateway_records_published_total", "counter", "Records published to Kafka", r.published),
            ("llmops_gateway_records_buffered", "gauge", "Records waiting for Kafka", r.buffered),
            ("llmops_gateway_latency_seconds_sum", "counter", "Total request latency", self.latency_sum),
            ("llmops_gateway_latency_seconds_count", "counter", "Requests timed", self.latency_count),
        ]
        out = []
        for name, kind, help_, value in lines:
            out += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {value}"]
        return ("\n".join(out) + "\n").encode()
