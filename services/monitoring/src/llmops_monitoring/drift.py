"""Drift of a deployment's traffic: a current window of inference records against a reference (a pinned baseline
window, or the evaluation dataset that gated the model), measured by Evidently 0.7.

The frame holds what needs no download: input and output lengths, token counts, latency, time to first token, the
finish reason, the unusual-output kinds found (one category), and the texts themselves where the producer sent them
redacted (Evidently's text drift: a TF-IDF domain classifier, its ROC AUC the score). Both windows are sampled down
(seeded) to bound the time; Evidently's per-column verdicts give the drifted share. False alarms are held down by a
minimum window size, distances rather than p-values (which flag any difference on large samples), and
:class:`Consecutive`, which publishes only after N drifted windows in a row.
"""

from __future__ import annotations

import os

# Evidently sends usage telemetry unless told not to; set before it is imported
os.environ.setdefault("DO_NOT_TRACK", "1")

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.metrics import ValueDrift

from llmops_monitoring.drift_settings import DriftSettings
from llmops_schemas.events.monitoring import DriftColumn

__all__ = ["Consecutive", "DriftResult", "DriftSettings", "TooFewRows", "frame_of", "run_drift"]

NUMERICAL = ("input_chars", "output_chars", "tokens_in", "tokens_out", "latency_ms", "ttft_ms")
CATEGORICAL = ("finish_reason", "flags")
TEXT = ("input", "output")
COLUMNS = (*NUMERICAL, *CATEGORICAL, *TEXT)

Records = Sequence[Mapping[str, Any]]


class TooFewRows(ValueError):
    """A window holds fewer records than a drift report needs to mean anything."""

    def __init__(self, window: str, rows: int, minimum: int) -> None:
        super().__init__(f"the {window} window has {rows} records; a drift report needs at least {minimum}")
        self.window = window
        self.rows = rows
        self.minimum = minimum


@dataclass(frozen=True)
class ColumnDrift:
    """Evidently's verdict on one column: its method's score against the threshold."""

    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass
class DriftResult:
    """One drift report: Evidently's numbers, its JSON and HTML, and what was left out and why."""

    drifted_share: float
    drifted: bool
    threshold: float
    columns: list[ColumnDrift]
    rows_reference: int
    rows_current: int
    dropped_columns: dict[str, str]
    report_json: str = field(repr=False)
    #: Evidently's whole snapshot (its widgets' data): what the HTML is rendered from, when someone opens it
    snapshot: str = field(repr=False)
    #: The (sampled) frames Evidently was given, to check or re-run it
    current_frame: pd.DataFrame = field(repr=False)
    reference_frame: pd.DataFrame = field(repr=False)

    def html(self) -> str:
        return render_html(self.snapshot)

    def to_event_columns(self) -> list[DriftColumn]:
        return [
            DriftColumn(column=c.column, method=c.method, score=c.score, threshold=c.threshold, drifted=c.drifted)
            for c in self.columns
        ]


#: The record columns a drift frame is made of (what the service reads of the record store)
READ_COLUMNS = (
    "outcome",
    "latency_ms",
    "time_to_first_token_ms",
    "tokens_in",
    "tokens_out",
    "finish_reason",
    "text_mode",
    "input",
    "output",
    "flags",
)


def frame_of(records: Records | pa.Table) -> pd.DataFrame:
    """The drift frame of inference records (dicts with ``records.SCHEMA``'s columns, or the record store's Arrow
    table of them, read without a Python object per record): one row per record."""
    if isinstance(records, pa.Table):
        raw = records.select(list(READ_COLUMNS)).to_pandas()
    else:
        raw = pd.DataFrame.from_records(records, columns=list(READ_COLUMNS))
    redacted = raw["text_mode"] == "redacted"
    texts = {name: raw[name].where(redacted & raw[name].notna(), None).astype(object) for name in TEXT}
    frame = pd.DataFrame(
        {
            "input_chars": texts["input"].str.len().astype(float),
            "output_chars": texts["output"].str.len().astype(float),
            "tokens_in": pd.to_numeric(raw["tokens_in"], errors="coerce").astype(float),
            "tokens_out": pd.to_numeric(raw["tokens_out"], errors="coerce").astype(float),
            "latency_ms": pd.to_numeric(raw["latency_ms"], errors="coerce").astype(float),
            "ttft_ms": pd.to_numeric(raw["time_to_first_token_ms"], errors="coerce").astype(float),
            # a failed request has no finish reason: its outcome is the category
            "finish_reason": raw["finish_reason"].where(raw["finish_reason"].notna(), raw["outcome"]).astype(str),
        }
    )
    # the unusual-output kinds of a record as one category ("none", "truncated", "pii+truncated"): a column per kind
    # would mostly hold zeros and dilute the drifted share
    frame["flags"] = raw["flags"].map(
        lambda kinds: "+".join(sorted(kinds)) if kinds is not None and len(kinds) else "none"
    )
    for name in TEXT:
        frame[name] = texts[name]
    return frame


def run_drift(
    current: Records | pa.Table | pd.DataFrame,
    reference: Records | pa.Table | pd.DataFrame,
    settings: DriftSettings | None = None,
    *,
    seed: int = 0,
) -> DriftResult:
    """Evidently's drift report of ``current`` against ``reference`` (records or :func:`frame_of` frames).

    Raises :class:`TooFewRows` when either window is under ``settings.min_rows``. Columns Evidently cannot test
    (no values in a window; text that is missing, hashed or constant) are left out and named in ``dropped_columns``.
    """
    settings = settings or DriftSettings()
    frames = {}
    for window, data in (("current", current), ("reference", reference)):
        if len(data) < settings.min_rows:
            raise TooFewRows(window, len(data), settings.min_rows)
        frames[window] = _sample(data, settings.sample_size, seed)[list(COLUMNS)]
    current_frame, reference_frame = frames["current"], frames["reference"]
    kinds, dropped = _testable(current_frame, reference_frame, settings)
    try:
        snapshot = _report(current_frame, reference_frame, kinds, settings)
    except ValueError as error:
        # the TF-IDF vocabulary can still come out empty (every term in over half the texts, or stop words only);
        # Evidently runs every column in one report, so the text columns go together
        if not any(kind == "text" for kind in kinds.values()) or not _no_terms(error):
            raise
        for column in [c for c, kind in kinds.items() if kind == "text"]:
            del kinds[column]
            dropped[column] = f"text drift found no terms to compare ({error})"
        snapshot = _report(current_frame, reference_frame, kinds, settings)
    columns, report = _columns_of(snapshot)
    share = sum(c.drifted for c in columns) / len(columns) if columns else 0.0
    return DriftResult(
        drifted_share=share,
        drifted=bool(columns) and share >= settings.drift_share,
        threshold=settings.drift_share,
        columns=columns,
        rows_reference=len(reference_frame),
        rows_current=len(current_frame),
        dropped_columns=dropped,
        report_json=report,
        snapshot=snapshot.dumps(),
        current_frame=current_frame[list(kinds)],
        reference_frame=reference_frame[list(kinds)],
    )


class Consecutive:
    """Whether to publish: only when the last ``required`` windows all drifted, and once per run of drifted
    windows (the next event needs a window without drift first)."""

    def __init__(self, required: int) -> None:
        if required < 1:
            raise ValueError("required must be at least 1")
        self.required = required
        self.streak = 0

    def observe(self, drifted: bool) -> bool:
        """Record one window's verdict; True when this window completes a publishable run."""
        self.streak = self.streak + 1 if drifted else 0
        return self.streak == self.required

    @classmethod
    def of_history(cls, history: Sequence[bool], required: int) -> bool:
        """Whether the newest verdict in ``history`` (oldest first) completes a publishable run."""
        gate = cls(required)
        return [gate.observe(drifted) for drifted in history][-1] if history else False


def _definition_of(kinds: Mapping[str, str]) -> DataDefinition:
    by_kind = {kind: [c for c, k in kinds.items() if k == kind] for kind in ("numerical", "categorical", "text")}
    return DataDefinition(
        numerical_columns=by_kind["numerical"],
        categorical_columns=by_kind["categorical"],
        text_columns=by_kind["text"],
    )


def _sample(data: Records | pa.Table | pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """``size`` rows of ``data`` at random (seeded), in their order; records are sampled before their frame is built,
    the same rows a frame of them would give."""
    if len(data) <= size:
        return data if isinstance(data, pd.DataFrame) else frame_of(data)
    if isinstance(data, pd.DataFrame):
        return data.sample(n=size, random_state=seed).sort_index()
    rows = pd.RangeIndex(len(data)).to_series().sample(n=size, random_state=seed).sort_index().index
    if isinstance(data, pa.Table):
        return frame_of(data.take(pa.array(rows.to_numpy()))).set_axis(rows)
    return frame_of([data[row] for row in rows]).set_axis(rows)


def _testable(
    current: pd.DataFrame, reference: pd.DataFrame, settings: DriftSettings
) -> tuple[dict[str, str], dict[str, str]]:
    kinds: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for column in current.columns:
        kind = "text" if column in TEXT else "numerical" if column in NUMERICAL else "categorical"
        if kind == "text" and not settings.text:
            dropped[column] = "text drift is off"
            continue
        reason = None
        for window, frame in (("current", current), ("reference", reference)):
            values = frame[column].dropna()
            if kind == "text" and not values.empty:
                values = values[values.astype(str).str.len() > 0]
            if values.empty:
                reason = f"no values in the {window} window" + (" (hashed or absent text)" if kind == "text" else "")
            elif kind == "text" and not (values != values.iloc[0]).any():
                # TF-IDF keeps no term of a constant text ("After pruning, no terms remain")
                reason = f"the same text in every record of the {window} window"
            if reason:
                break
        if reason:
            dropped[column] = reason
        else:
            kinds[column] = kind
    return kinds, dropped


def _no_terms(error: ValueError) -> bool:
    return "no terms remain" in str(error) or "empty vocabulary" in str(error)


def render_html(snapshot: str) -> str:
    """The HTML page of a stored snapshot, as Evidently renders it (about 4 MB, most of it Evidently's scripts: made
    when a report is opened, not stored with every report)."""
    return Snapshot.loads(snapshot).get_html_str(as_iframe=False)


def _report(
    current: pd.DataFrame, reference: pd.DataFrame, kinds: Mapping[str, str], settings: DriftSettings
) -> Snapshot:
    definition = _definition_of(kinds)
    columns = list(kinds)
    metrics = []
    for column, kind in kinds.items():
        method, threshold = settings.test_of(column, kind)
        metrics.append(ValueDrift(column=column, method=method, threshold=threshold))
    # One ValueDrift per column, its test the verdict: DataDriftPreset computes every column twice more
    # (DriftedColumnsCount and its summary table), the same numbers at three times the cost
    return Report(metrics, include_tests=True).run(
        Dataset.from_pandas(current[columns], data_definition=definition),
        Dataset.from_pandas(reference[columns], data_definition=definition),
    )


def _columns_of(snapshot: Snapshot) -> tuple[list[ColumnDrift], str]:
    report = snapshot.dict()
    verdicts = {test["metric_config"]["metric_id"]: test["status"] == "FAIL" for test in report["tests"]}
    columns = [
        ColumnDrift(
            column=metric["config"]["column"],
            method=metric["config"]["method"],
            score=float(metric["value"]),
            threshold=float(metric["config"]["threshold"]),
            drifted=verdicts[metric["id"]],
        )
        for metric in report["metrics"]
    ]
    return columns, snapshot.json()
