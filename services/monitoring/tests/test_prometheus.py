"""The Prometheus text of the metrics, read back with prometheus_client's own parser; and the Grafana dashboard, whose
every query names only metrics that text has."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmops_monitoring.metrics import aggregate, summarise
from llmops_monitoring.prometheus import PREFIX, Group, render

DASHBOARD = Path(__file__).parents[3] / "infra" / "grafana" / "llmops-monitoring.json"
START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def record(i: int, **overrides) -> dict:
    return {
        "time": START + timedelta(seconds=i),
        "outcome": "completed",
        "latency_ms": 100.0 * (i + 1),
        "time_to_first_token_ms": 10.0 * (i + 1),
        "tokens_in": 10,
        "tokens_out": 20,
        "cost": 0.5,
        "flags": ["repetition"] if i % 2 else [],
        "status": None,
        **overrides,
    }


@pytest.fixture
def summary() -> dict:
    records = [record(i) for i in range(9)] + [
        record(9, outcome="failed", status=502, time_to_first_token_ms=None, tokens_out=0, cost=0.0)
    ]
    return summarise(aggregate(records).values())


def samples_of(text: str) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


class TestRender:
    def test_counters_and_quantiles_read_back_as_given(self, summary):
        group = Group("proj", "chat", "dep-a", "mv-1")

        samples = samples_of(render({group: summary}))

        labels = (("deployment", "dep-a"), ("model_version", "mv-1"), ("project", "proj"), ("route", "chat"))
        assert samples[(PREFIX + "requests_total", labels)] == 10
        assert samples[(PREFIX + "errors_total", tuple(sorted((*labels, ("kind", "http_502")))))] == 1
        assert samples[(PREFIX + "flags_total", tuple(sorted((*labels, ("kind", "repetition")))))] == 5
        assert samples[(PREFIX + "tokens_in_total", labels)] == 100
        assert samples[(PREFIX + "tokens_out_total", labels)] == 180
        assert samples[(PREFIX + "cost_total", labels)] == 4.5
        for quantile, name in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
            key = (PREFIX + "latency_seconds", tuple(sorted((*labels, ("quantile", quantile)))))
            assert samples[key] == pytest.approx(summary["latency_ms"][name] / 1000)
        assert samples[(PREFIX + "latency_seconds_count", labels)] == 10
        assert samples[(PREFIX + "latency_seconds_sum", labels)] == pytest.approx(5.5)
        assert samples[(PREFIX + "time_to_first_token_seconds_count", labels)] == 9
        assert samples[(PREFIX + "tokens_per_second", labels)] == pytest.approx(summary["tokens_per_second"])

    def test_metric_types_are_declared(self, summary):
        types = {f.name: f.type for f in text_string_to_metric_families(render({Group("p"): summary}))}

        assert types[PREFIX + "requests"] == "counter"
        assert types[PREFIX + "latency_seconds"] == "summary"
        assert types[PREFIX + "tokens_per_second"] == "gauge"

    def test_label_values_with_quotes_backslashes_and_newlines_are_escaped(self, summary):
        route = 'odd "route"\\ with\na newline, {braces} and ünicode'

        text = render({Group("p", route, "d", ""): summary})

        assert '\\"route\\"\\\\ with\\na newline' in text
        routes = {dict(labels)["route"] for _, labels in samples_of(text)}
        assert routes == {route}

    def test_groups_are_series_of_their_own(self, summary):
        text = render({Group("p", "r", "dep-a", ""): summary, Group("p", "r", "dep-b", ""): summarise([])})
        requests = {
            dict(labels)["deployment"]: value
            for (name, labels), value in samples_of(text).items()
            if name == PREFIX + "requests_total"
        }

        assert requests == {"dep-a": 10, "dep-b": 0}
        # a group with no latencies has no quantiles rather than made-up ones
        assert "dep-b" not in {dict(lb)["deployment"] for n, lb in samples_of(text) if n == PREFIX + "latency_seconds"}

    def test_no_groups_render_as_declared_empty_families(self):
        assert list(samples_of(render({}))) == []


# PromQL words that are not metric names: functions and aggregations are followed by "(", these are not
_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
}


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, ranges and grouping labels taken out first)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    words = re.findall(r"(?<![\w$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expr)
    return {w for w in words if w not in _PROMQL_WORDS}


def series_of(variable_query: str) -> str:
    """The series selector of a Grafana ``label_values(<selector>, <label>)`` variable query."""
    match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable_query.strip())
    assert match, variable_query
    return match.group(1)


class TestDashboard:
    @pytest.fixture
    def dashboard(self) -> dict:
        return json.loads(DASHBOARD.read_text())

    @pytest.fixture
    def rendered_names(self, summary) -> set[str]:
        families = text_string_to_metric_families(render({Group("p", "r", "d", "m"): summary}))
        return {sample.name for family in families for sample in family.samples}

    def test_every_panel_query_reads_only_metrics_that_render_emits(self, dashboard, rendered_names):
        exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
        exprs += [series_of(v["query"]["query"]) for v in dashboard["templating"]["list"] if v["type"] == "query"]

        read = set().union(*(metric_names_in(e) for e in exprs))

        assert read <= rendered_names, read - rendered_names
        assert all(name.startswith(PREFIX) for name in read)
        assert {PREFIX + "requests_total", PREFIX + "latency_seconds", PREFIX + "flags_total"} <= read

    def test_the_dashboard_has_its_panels_and_variables(self, dashboard):
        titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
        variables = {v["name"] for v in dashboard["templating"]["list"]}

        assert dashboard["schemaVersion"] >= 39
        for word in ("requests", "error rate", "latency", "first token", "tokens per second", "cost", "flags"):
            assert word in titles, word
        assert {"datasource", "project", "route", "deployment"} <= variables
        assert all(panel["datasource"]["uid"] == "${datasource}" for panel in dashboard["panels"])

    def test_the_name_reader_finds_names_and_skips_labels_and_functions(self):
        expr = 'sum by (kind) (rate(a_total{kind="x y", route=~"$route"}[5m])) / on (p) b_count * 3600'

        assert metric_names_in(expr) == {"a_total", "b_count"}
