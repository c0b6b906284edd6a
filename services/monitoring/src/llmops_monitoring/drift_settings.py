"""How drift reports are run and judged (imports no Evidently: the service's settings hold one)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DriftSettings(BaseModel):
    """How a drift report is run and judged, the defaults chosen by measurement. On stable synthetic traffic, 200
    windows of 200 to 400 records against a 2,000-record reference: normed Wasserstein distances had a 99th
    percentile of 0.15 to 0.18 and a largest of 0.22 (0.11 in windows of 300 to 1,000), Jensen-Shannon distances
    stayed under 0.12 and the text classifier's ROC AUC under 0.55; one window in 200 had two numerical columns at
    0.2 or more. A planted change moves its columns far past these (lengths 2.4 stds, latency 0.8, AUC 0.7 to 1.0).
    Of ten columns, input length and input tokens move together (so do output length and output tokens), so a
    share of 0.2 is one change: longer inputs, another topic or slower answers each drift two or three columns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_rows: int = Field(default=200, ge=10, description="fewer records in either window: no report (TooFewRows)")
    sample_size: int = Field(
        default=5_000, ge=100, description="either window above this is sampled down to it (seeded): bounds the time"
    )
    drift_share: float = Field(
        default=0.2, gt=0, le=1, description="the window drifted when this share of its columns drifted (or more)"
    )
    consecutive: int = Field(default=2, ge=1, description="drifted windows in a row before an event is published")
    text: bool = Field(default=True, description="Evidently's text drift on input and output (the slow part)")
    # Distances, not p-values: with thousands of rows a K-S or chi-squared test flags any difference at all
    numerical_method: str = "wasserstein"
    numerical_threshold: float = Field(default=0.2, gt=0, description="Wasserstein distance in reference stds")
    categorical_method: str = "jensenshannon"
    categorical_threshold: float = Field(default=0.1, gt=0)
    text_method: str = "abs_text_content_drift"
    text_threshold: float = Field(default=0.6, gt=0, description="the domain classifier's ROC AUC")
    column_methods: dict[str, str] = Field(default_factory=dict, description="per-column method, over the above")
    column_thresholds: dict[str, float] = Field(default_factory=dict, description="per-column threshold")

    def test_of(self, column: str, kind: str) -> tuple[str, float]:
        """The method and threshold for ``column`` of ``kind`` (numerical, categorical or text)."""
        method, threshold = {
            "numerical": (self.numerical_method, self.numerical_threshold),
            "categorical": (self.categorical_method, self.categorical_threshold),
            "text": (self.text_method, self.text_threshold),
        }[kind]
        return self.column_methods.get(column, method), self.column_thresholds.get(column, threshold)
