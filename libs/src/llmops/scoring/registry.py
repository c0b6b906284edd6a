"""Scorer configuration as users write it (in suites), validated, and the scorers built from it.

A configuration is a mapping with a ``type``: a built-in scorer (``bleu``, ``chrf``, ``rouge``, ``exact_match``,
``contains``, ``regex``, ``json_schema``, ``length``, ``judge``) with its options beside the type, or ``custom``
with the ``entry_point`` name of a scorer installed in group :data:`ENTRY_POINT_GROUP` and its ``options``. An
unknown type, option or entry point is a validation error that names it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, model_validator

from llmops.scoring.base import Scorer, ScorerOptions
from llmops.scoring.checks import (
    ContainsOptions,
    ContainsScorer,
    ExactMatchOptions,
    ExactMatchScorer,
    JsonSchemaOptions,
    JsonSchemaScorer,
    LengthOptions,
    LengthScorer,
    RegexOptions,
    RegexScorer,
)
from llmops.scoring.judge import JudgeOptions, JudgeScorer
from llmops.scoring.overlap import BleuOptions, BleuScorer, ChrfOptions, ChrfScorer, RougeOptions, RougeScorer

#: The entry-point group custom scorers register in (``[project.entry-points."llmops.scorers"]``).
ENTRY_POINT_GROUP = "llmops.scorers"

BUILT_IN: dict[str, type[Scorer]] = {
    scorer.name: scorer
    for scorer in (
        BleuScorer,
        ChrfScorer,
        RougeScorer,
        ExactMatchScorer,
        ContainsScorer,
        RegexScorer,
        JsonSchemaScorer,
        LengthScorer,
        JudgeScorer,
    )
}


def custom_scorer_names() -> list[str]:
    """The names of the custom scorers installed (entry points of group :data:`ENTRY_POINT_GROUP`)."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


@functools.cache  # a suite's config is validated, then built: one entry-point scan and import per name
def load_custom_scorer(name: str) -> type[Scorer]:
    """The scorer class registered as entry point ``name``; ValueError naming it when absent, ambiguous or broken."""
    found = list(entry_points(group=ENTRY_POINT_GROUP).select(name=name))
    if not found:
        installed = ", ".join(custom_scorer_names()) or "none"
        raise ValueError(f"no custom scorer {name!r} is installed (installed: {installed})")
    if len(found) > 1:
        raise ValueError(f"custom scorer {name!r} is registered {len(found)} times: {[ep.value for ep in found]}")
    where = found[0].value
    try:
        loaded = found[0].load()
    except Exception as exc:  # a third party's import error, reported as a configuration problem
        raise ValueError(f"custom scorer {name!r} ({where}) failed to load: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(loaded, type) and issubclass(loaded, Scorer)):
        raise ValueError(f"custom scorer {name!r} ({where}) is not a subclass of llmops.scoring.Scorer")
    return loaded


def _custom_options(scorer: type[Scorer], name: str, options: dict[str, Any]) -> ScorerOptions | Any | None:
    if scorer.Options is None:
        if options:
            raise ValueError(f"custom scorer {name!r} takes no options, got {sorted(options)}")
        return None
    try:
        return scorer.Options.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(f"options.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"custom scorer {name!r}: {problems}") from None


class CustomScorerConfig(ScorerOptions):
    """A scorer installed as an entry point, by name, with its options (validated by the scorer's ``Options``)."""

    type: Literal["custom"] = "custom"
    entry_point: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _installed_and_options_valid(self) -> CustomScorerConfig:
        _custom_options(load_custom_scorer(self.entry_point), self.entry_point, self.options)
        return self


ScorerConfig = Annotated[
    BleuOptions
    | ChrfOptions
    | RougeOptions
    | ExactMatchOptions
    | ContainsOptions
    | RegexOptions
    | JsonSchemaOptions
    | LengthOptions
    | JudgeOptions
    | CustomScorerConfig,
    Field(discriminator="type"),
]
_CONFIGS = TypeAdapter(list[ScorerConfig])


def parse_scorer_configs(data: Any) -> list[ScorerConfig]:
    """A list of scorer configurations from JSON-like data; pydantic's ValidationError names what is wrong."""
    return _CONFIGS.validate_python(data)


def build_scorer(config: ScorerConfig) -> Scorer:
    """The scorer a validated configuration describes."""
    if isinstance(config, CustomScorerConfig):
        scorer = load_custom_scorer(config.entry_point)
        options = _custom_options(scorer, config.entry_point, config.options)
        return scorer() if options is None else scorer(options)
    return BUILT_IN[config.type](config)


def build_scorers(configs: Sequence[ScorerConfig]) -> list[Scorer]:
    """The scorers of a suite; ValueError naming a metric that two of them would produce."""
    scorers = [build_scorer(config) for config in configs]
    seen: dict[str, str] = {}
    for scorer in scorers:
        for metric in scorer.metrics:
            if metric in seen:
                raise ValueError(
                    f"metric {metric!r} is produced by both {seen[metric]!r} and {scorer.name!r}: rename one (`metric`)"
                )
            seen[metric] = scorer.name
    return scorers
