"""The inference metrics as Prometheus text (exposition format 0.0.4), one series per group of buckets.

Written with prometheus_client (a collector of metric families on a private registry), which names, escapes and
formats. Counters are the summaries' totals, so they must be cumulative (since the service started, say) for
``rate()`` to mean anything; latency and time to first token are summaries whose quantiles come from the merged
sketches, in seconds as Prometheus has it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

PREFIX = "llmops_inference_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LABELS = ("project", "route", "deployment", "model_version")
_QUANTILES = (("p50", "0.5"), ("p95", "0.95"), ("p99", "0.99"))


class Group(NamedTuple):
    """The labels of one group's series ("" where a dimension is not grouped on)."""

    project: str = ""
    route: str = ""
    deployment: str = ""
    model_version: str = ""


def render(groups: Mapping[Group, Mapping[str, Any]]) -> str:
    """The summaries (``metrics.summarise``) of each group, as Prometheus text."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SummariesCollector(groups))
    return generate_latest(registry).decode()


class _SummariesCollector(Collector):
    def __init__(self, groups: Mapping[Group, Mapping[str, Any]]) -> None:
        self._groups = {Group(*labels): summary for labels, summary in groups.items()}

    def collect(self) -> Iterable[Metric]:
        yield self._counter("requests", "Inference requests answered or failed.", "requests")
        yield self._counter("tokens_in", "Prompt tokens.", "tokens_in")
        yield self._counter("tokens_out", "Completion tokens.", "tokens_out")
        yield self._counter("cost", "Cost of the requests, in the platform's currency.", "cost")
        yield self._by_kind("errors", "Failed requests by kind of error (http_<status>).", "errors_by_kind")
        yield self._by_kind("flags", "Unusual outputs by kind of anomaly flag.", "flags")
        yield self._summary("latency_seconds", "Request latency, end to end.", "latency_ms")
        yield self._summary("time_to_first_token_seconds", "Time to the first streamed token.", "ttft_ms")
        speed = GaugeMetricFamily(
            PREFIX + "tokens_per_second", "Completion tokens per second of completed requests.", labels=LABELS
        )
        for labels, summary in self._groups.items():
            if summary.get("tokens_per_second") is not None:
                speed.add_metric(labels, summary["tokens_per_second"])
        yield speed

    def _counter(self, name: str, documentation: str, field: str) -> Metric:
        family = CounterMetricFamily(PREFIX + name, documentation, labels=LABELS)
        for labels, summary in self._groups.items():
            family.add_metric(labels, summary[field])
        return family

    def _by_kind(self, name: str, documentation: str, field: str) -> Metric:
        family = CounterMetricFamily(PREFIX + name, documentation, labels=(*LABELS, "kind"))
        for labels, summary in self._groups.items():
            for kind, count in sorted(summary[field].items()):
                family.add_metric((*labels, kind), count)
        return family

    def _summary(self, name: str, documentation: str, field: str) -> Metric:
        family = SummaryMetricFamily(PREFIX + name, documentation, labels=LABELS)
        for labels, summary in self._groups.items():
            values = summary[field]
            if not values["count"]:
                continue
            label_values = dict(zip(LABELS, labels, strict=True))
            # SummaryMetricFamily takes only count and sum; its quantile samples are added as the client's own are
            for quantile_name, quantile in _QUANTILES:
                family.add_sample(family.name, {**label_values, "quantile": quantile}, values[quantile_name] / 1000)
            family.add_metric(labels, values["count"], values["sum"] / 1000)
        return family
