"""What a suite is made of, as requests state it: the dataset version and split, the prompt version, generation
parameters, scorers, gates, attached models and triggers. Shapes are checked here (pydantic: 422 naming the field);
what needs the database (does the dataset version exist?) is checked by :mod:`llmops_evaluation.service`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from llmops.types import RequestBody, Version

NAME = r"^[a-z0-9][a-z0-9._-]{0,127}$"
Split = Literal["train", "validation", "test"]


class DatasetChoice(RequestBody):
    name: str = Field(pattern=NAME)
    version: Version
    split: Split = Field(default="test", description="the split evaluated on")


class PromptChoice(RequestBody):
    name: str = Field(pattern=NAME)
    version: Version


class Generation(RequestBody):
    """How outputs are generated: greedy (temperature 0) unless said otherwise."""

    max_new_tokens: int = Field(default=64, ge=1, le=32_768)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=8)
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="sampling seed (used when temperature > 0)")


class SuiteIn(RequestBody):
    """A suite's new version. The first names the suite; a later one with the same name is its next version."""

    name: str = Field(pattern=NAME)
    description: str = Field(default="", max_length=2000)
    dataset: DatasetChoice
    prompt: PromptChoice | None = Field(default=None, description="renders each row into the model's input")
    generation: Generation = Field(default_factory=Generation)
    scorers: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=32,
        description="scorer configurations keyed on `type` (bleu, chrf, rouge, exact_match, contains, regex, "
        "json_schema, length, judge, custom)",
    )
    gates: list[str | dict[str, Any]] = Field(
        default_factory=list,
        max_length=32,
        description="rules such as `bleu >= 20` or `bleu >= production - 1.0` (relative to an alias)",
    )
    models: list[Annotated[str, Field(pattern=NAME)]] = Field(
        default_factory=list, max_length=64, description="models whose new versions this suite evaluates by itself"
    )
    triggers: list[str] = Field(
        default=["model.version.registered"],
        max_length=8,
        description="event types that run the suite on the model they are about (for attached models)",
    )


class ModelChoice(RequestBody):
    name: str = Field(pattern=NAME)
    version: Version | None = None
    alias: str | None = Field(default=None, pattern=NAME, description="instead of a version: where it points")


class EndpointChoice(RequestBody):
    url: str = Field(max_length=2048, description="base URL of an OpenAI-compatible server (http or https)")
    model: str | None = Field(default=None, max_length=256, description="the model name the server is asked for")


class RunIn(RequestBody):
    """A run of a suite on exactly one of: a model version (or an alias), a base model, an endpoint."""

    suite: str = Field(pattern=NAME)
    suite_version: Version | None = Field(default=None, description="default: the latest")
    model: ModelChoice | None = None
    base_model: str | None = Field(default=None, pattern=NAME)
    endpoint: EndpointChoice | None = None
    pool: str = Field(default="cpu", pattern=NAME)
