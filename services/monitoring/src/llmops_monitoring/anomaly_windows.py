"""Unusual outputs per window: the flagged share of each (project, deployment) and kind in a window, the notices
(``monitoring.anomaly.detected``) it gives past its threshold, and their throttle (the flags themselves:
:mod:`llmops_monitoring.anomalies`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from llmops_monitoring.anomaly_settings import KINDS, AnomalySettings
from llmops_monitoring.records import NO_DEPLOYMENT
from llmops_schemas.events.monitoring import MonitoringAnomalyDetected, Window


class Group(NamedTuple):
    """Whose records: a project's deployment (``records.NO_DEPLOYMENT`` for records that name none)."""

    project: str
    deployment_id: str


@dataclass(frozen=True)
class Notice:
    """One kind past its threshold for one group in one window."""

    group: Group
    kind: str
    flagged: int
    records: int
    threshold: float
    examples: tuple[str, ...] = ()
    route: str | None = None
    model_version_id: str | None = None

    @property
    def share(self) -> float:
        return self.flagged / self.records

    @property
    def key(self) -> tuple[Group, str]:
        return self.group, self.kind

    def event(self, window: Window) -> MonitoringAnomalyDetected:
        """The ``monitoring.anomaly.detected`` payload (subject: the deployment id)."""
        return MonitoringAnomalyDetected(
            project=self.group.project,
            deployment_id=self.group.deployment_id,
            route=self.route,
            model_version_id=self.model_version_id,
            kind=self.kind,
            window=window,
            flagged=self.flagged,
            records=self.records,
            share=self.share,
            threshold=self.threshold,
            examples=list(self.examples),
        )


def assess(
    window_counts: Mapping[tuple[Group, str], int],
    records_in_window: Mapping[Group, int],
    settings: AnomalySettings,
    *,
    examples: Mapping[tuple[Group, str], Sequence[str]] | None = None,
    labels: Mapping[Group, tuple[str | None, str | None]] | None = None,
) -> list[Notice]:
    """The notices of one window: flagged counts per (group, kind) and completed records per group in; each kind
    whose share is past (``>``) its threshold in a group of at least ``min_records`` records out, sorted.
    ``labels`` gives a group's ``(route, model_version_id)`` for the event."""
    notices = []
    for (group, kind), flagged in window_counts.items():
        records = records_in_window.get(group, 0)
        threshold = settings.thresholds[kind]
        if flagged <= 0 or records < settings.min_records or flagged / records <= threshold:
            continue
        kept = tuple((examples or {}).get((group, kind), ()))[: settings.max_examples]
        route, model_version_id = (labels or {}).get(group, (None, None))
        notices.append(Notice(group, kind, min(flagged, records), records, threshold, kept, route, model_version_id))
    return sorted(notices, key=lambda n: (n.group, KINDS.index(n.kind)))


_MIXED = object()


@dataclass
class WindowCounter:
    """Counts one window's records as they are flagged: completed records per group, flagged per (group, kind),
    the first request ids of each, and the route and model version the group's records agree on (else ``None``)."""

    max_examples: int = 10  # the event's most; assess keeps settings.max_examples of them
    counts: Counter[tuple[Group, str]] = field(default_factory=Counter)
    records: Counter[Group] = field(default_factory=Counter)
    examples: dict[tuple[Group, str], list[str]] = field(default_factory=dict)
    _labels: dict[Group, list[Any]] = field(default_factory=dict)

    def add(self, record: Mapping[str, Any], flags: Iterable[str] | None = None) -> None:
        """Count ``record`` with ``flags`` (default: its ``flags`` column); failed records are not counted."""
        if record.get("outcome") != "completed":
            return
        group = Group(record["project"], record.get("deployment_id") or NO_DEPLOYMENT)
        self.records[group] += 1
        labels = self._labels.setdefault(group, [record.get("route"), record.get("model_version_id")])
        for i, name in enumerate(("route", "model_version_id")):
            if labels[i] is not _MIXED and labels[i] != record.get(name):
                labels[i] = _MIXED
        for kind in (record.get("flags") or ()) if flags is None else flags:
            self.counts[group, kind] += 1
            kept = self.examples.setdefault((group, kind), [])
            if len(kept) < self.max_examples and record.get("request_id"):
                kept.append(record["request_id"])

    def labels(self) -> dict[Group, tuple[str | None, str | None]]:
        return {g: tuple(None if v is _MIXED else v for v in values) for g, values in self._labels.items()}

    def notices(self, settings: AnomalySettings) -> list[Notice]:
        return assess(self.counts, self.records, settings, examples=self.examples, labels=self.labels())


@dataclass(frozen=True)
class Throttle:
    """At most one notice per (group, kind) every ``seconds``. Pure: the service keeps the last-sent times, and
    passes the window's end as ``now`` so that a replay decides the same."""

    seconds: float

    def allows(self, last_sent: datetime | None, now: datetime) -> bool:
        return last_sent is None or now - last_sent >= timedelta(seconds=self.seconds)

    def select(
        self, notices: Iterable[Notice], last_sent: Mapping[tuple[Group, str], datetime], now: datetime
    ) -> list[Notice]:
        """The notices that may be sent at ``now``."""
        return [notice for notice in notices if self.allows(last_sent.get(notice.key), now)]
