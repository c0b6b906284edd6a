"""The cleaning and split settings of a new version, as an upload's query parameters or an import's options."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from llmops.errors import Problem
from llmops.pii import parse_kinds, parse_locales
from llmops_datasets.ingest import CleaningConfig
from llmops_schemas.splits import SplitConfig


class UploadOptions(BaseModel):
    """Cleaning and split settings of an upload (query parameters), recorded with the version."""

    model_config = {"extra": "forbid"}

    normalize: bool = True
    drop_empty: bool = True
    dedupe: bool = True
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=1)
    redact_pii: str = Field(default="", description="comma-separated kinds, 'all', or empty for none")
    pii_locales: str = Field(
        default="", description="comma-separated locales (en_US, de_DE ...) redaction reads; empty or 'all' for all"
    )
    train: float = Field(default=0.8, ge=0, le=1)
    validation: float = Field(default=0.1, ge=0, le=1)
    test: float = Field(default=0.1, ge=0, le=1, validate_default=True)  # so the sum is checked with defaults too
    seed: int = Field(default=42, ge=0, le=2**63 - 1)
    keep_valid: bool = Field(default=False, description="store the valid rows when some are invalid")
    delimiter: Literal[",", ";", "\t", "|"] | None = Field(
        default=None, description="a CSV file's delimiter (a tab is %09); by default the one its header shows"
    )

    @field_validator("redact_pii")
    @classmethod
    def _kinds(cls, value: str) -> str:
        return ",".join(sorted(parse_kinds(value)))

    @field_validator("pii_locales")
    @classmethod
    def _locales(cls, value: str) -> str:
        return ",".join(parse_locales(value))

    @field_validator("test")
    @classmethod
    def _ratios(cls, value: float, info) -> float:
        if abs(info.data.get("train", 0) + info.data.get("validation", 0) + value - 1) > 1e-9:
            raise ValueError("train + validation + test must be 1")
        return value

    def configs(self, location: str = "query") -> tuple[CleaningConfig, SplitConfig]:
        try:
            cleaning = CleaningConfig(
                normalize=self.normalize,
                drop_empty=self.drop_empty,
                dedupe=self.dedupe,
                min_chars=self.min_chars,
                max_chars=self.max_chars,
                redact_pii=frozenset(k for k in self.redact_pii.split(",") if k),
                pii_locales=parse_locales(self.pii_locales),
            )
        except ValidationError as exc:
            # the only rule CleaningConfig adds to the query model's own checks: max_chars >= min_chars
            raise Problem(
                422,
                f"invalid input: max_chars: {exc.errors()[0]['msg']}",
                type_="urn:llmops:problem:validation",
                errors=[{"field": "max_chars", "location": location, "message": e["msg"]} for e in exc.errors()],
            ) from exc
        return cleaning, SplitConfig(train=self.train, validation=self.validation, test=self.test, seed=self.seed)
