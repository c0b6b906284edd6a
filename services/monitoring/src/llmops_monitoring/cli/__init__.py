"""``llmops monitor metrics|anomalies|drift|alerts|rules|policies ...``: the monitoring service's HTTP API
(``LLMOPS_CLIENT_MONITORING_URL``, ``LLMOPS_CLIENT_TOKEN``) as tables."""

from __future__ import annotations

from llmops_monitoring.cli.drift import drift_app
from llmops_monitoring.cli.metrics import monitor_app
from llmops_monitoring.cli.rules import alerts, policies_app, rules_app

monitor_app.add_typer(drift_app, name="drift")
monitor_app.add_typer(rules_app, name="rules")
monitor_app.add_typer(policies_app, name="policies")
monitor_app.command("alerts")(alerts)

__all__ = ["monitor_app"]
