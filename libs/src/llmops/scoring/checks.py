"""Checks of an output, each a metric of 1.0 (holds) or 0.0 (does not): exact match, contains, regex, JSON Schema,
length bounds. Their corpus value is the share of examples that pass.

User regexes and schemas are compiled the way the prompts' test cases compile them (:mod:`llmops.prompts`): RE2
(linear time, so no timeout is needed), patterns of at most :data:`~llmops.prompts.MAX_REGEX_CHARS`, schemas of at
most :data:`~llmops.prompts.MAX_SCHEMA_BYTES` with local ``$ref``s only. An output over
:data:`~llmops.prompt_sandbox.MAX_OUTPUT_CHARS` is an error for its example rather than scanned.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import fastjsonschema
import orjson
import re2
from pydantic import Field, field_validator, model_validator

from llmops.prompt_sandbox import MAX_OUTPUT_CHARS
from llmops.prompts import MAX_REGEX_CHARS, user_regex, user_schema_validator
from llmops.scoring.base import MAX_ERROR_CHARS, ExampleScore, MetricName, Scorer, ScorerOptions

Needle = Annotated[str, Field(min_length=1, max_length=MAX_REGEX_CHARS)]
# Unicode punctuation (category P) and the ASCII symbols of string.punctuation (which are category S)
_PUNCTUATION = re2.compile("[\\pP" + "".join(f"\\x{ord(c):02x}" for c in string.punctuation) + "]+")
_WHITESPACE = re2.compile(r"\s+")


def _bounded(text: str) -> str:
    if len(text) > MAX_OUTPUT_CHARS:
        raise ValueError(f"the output is over {MAX_OUTPUT_CHARS:,} characters")
    return text


class _Check(Scorer):
    """A single-metric check: ``holds`` says whether one output passes."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.metrics = (options.metric,)

    def holds(self, output: str, reference: str | None) -> bool:
        raise NotImplementedError

    def score_example(self, output: str, reference: str | None, input: str | None) -> Mapping[str, float]:
        return {self.metrics[0]: 1.0 if self.holds(_bounded(output), reference) else 0.0}


class ExactMatchOptions(ScorerOptions):
    """Exact match of output and reference after normalisation: punctuation removed (Unicode P and ASCII symbols),
    case folded, whitespace stripped (``strip``) or also runs collapsed to one space (``collapse``), in that order."""

    type: Literal["exact_match"] = "exact_match"
    metric: MetricName = "exact_match"
    ignore_case: bool = False
    ignore_punctuation: bool = False
    whitespace: Literal["exact", "strip", "collapse"] = "strip"


def normalized(text: str, options: ExactMatchOptions) -> str:
    """``text`` normalised as ``options`` say (what exact match compares)."""
    if options.ignore_punctuation:
        text = _PUNCTUATION.sub("", text)
    if options.ignore_case:
        text = text.casefold()
    if options.whitespace == "collapse":
        text = _WHITESPACE.sub(" ", text)
    return text if options.whitespace == "exact" else text.strip()


class ExactMatchScorer(_Check):
    """1.0 when the normalised output equals the normalised reference."""

    name = "exact_match"
    Options = ExactMatchOptions

    def holds(self, output: str, reference: str | None) -> bool:
        if reference is None:
            raise ValueError("the example has no reference")
        return normalized(output, self.options) == normalized(reference, self.options)


class ContainsOptions(ScorerOptions):
    """The output contains ``all`` (or ``any``) of ``substrings``; with none given, it contains the reference."""

    type: Literal["contains"] = "contains"
    metric: MetricName = "contains"
    substrings: tuple[Needle, ...] = Field(default=(), max_length=100)
    mode: Literal["all", "any"] = "all"
    ignore_case: bool = False


class ContainsScorer(_Check):
    """1.0 when the output contains the substrings (or the reference)."""

    name = "contains"
    Options = ContainsOptions

    def __init__(self, options: ContainsOptions) -> None:
        super().__init__(options)
        fold = str.casefold if options.ignore_case else str
        self._fold = fold
        self._needles = tuple(fold(s) for s in options.substrings)
        self._combine = all if options.mode == "all" else any

    def holds(self, output: str, reference: str | None) -> bool:
        needles = self._needles
        if not needles:
            if not reference:
                raise ValueError("no substrings are configured and the example has no reference")
            needles = (self._fold(reference),)
        text = self._fold(output)
        return self._combine(needle in text for needle in needles)


class RegexOptions(ScorerOptions):
    """The output matches an RE2 ``pattern``: anywhere in it (``search``) or as a whole (``fullmatch``)."""

    type: Literal["regex"] = "regex"
    metric: MetricName = "regex"
    pattern: str = Field(max_length=MAX_REGEX_CHARS, description="RE2 syntax")
    mode: Literal["search", "fullmatch"] = "search"

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        user_regex(pattern)
        return pattern


class RegexScorer(_Check):
    """1.0 when the output matches the pattern."""

    name = "regex"
    Options = RegexOptions

    def __init__(self, options: RegexOptions) -> None:
        super().__init__(options)
        compiled = user_regex(options.pattern)
        self._match = compiled.search if options.mode == "search" else compiled.fullmatch

    def holds(self, output: str, reference: str | None) -> bool:
        return self._match(output) is not None


class JsonSchemaOptions(ScorerOptions):
    """The output is JSON valid against ``json_schema`` (local ``$ref``s only, RE2 patterns)."""

    type: Literal["json_schema"] = "json_schema"
    metric: MetricName = "json_valid"
    json_schema: dict[str, Any]

    @field_validator("json_schema")
    @classmethod
    def _compiles(cls, schema: dict[str, Any]) -> dict[str, Any]:
        user_schema_validator(schema)
        return schema


class JsonSchemaScorer(Scorer):
    """1.0 when the output parses as JSON and is valid against the schema; why not, in the example's ``detail``."""

    name = "json_schema"
    Options = JsonSchemaOptions

    def __init__(self, options: JsonSchemaOptions) -> None:
        self.metrics = (options.metric,)
        self._validate = user_schema_validator(options.json_schema)

    def score_examples(self, outputs, references, inputs=None) -> list[ExampleScore]:
        return [self._one(output) for output in outputs]

    def _one(self, output: str) -> ExampleScore:
        metric = self.metrics[0]
        try:
            self._validate(orjson.loads(_bounded(output)))
        except orjson.JSONDecodeError:
            return ExampleScore({metric: 0.0}, detail="the output is not JSON")
        except fastjsonschema.JsonSchemaValueException as exc:
            return ExampleScore({metric: 0.0}, detail=exc.message[:MAX_ERROR_CHARS])
        except Exception as exc:  # e.g. an output over the size limit
            return ExampleScore.failed(exc)
        return ExampleScore({metric: 1.0})


class LengthOptions(ScorerOptions):
    """The output's length is within bounds: characters and/or words (whitespace-separated), each bound inclusive."""

    type: Literal["length"] = "length"
    metric: MetricName = "length_ok"
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=0)
    min_words: int | None = Field(default=None, ge=0)
    max_words: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounded(self) -> LengthOptions:
        bounds = (self.min_chars, self.max_chars, self.min_words, self.max_words)
        if all(b is None for b in bounds):
            raise ValueError("give at least one of min_chars, max_chars, min_words, max_words")
        for unit in ("chars", "words"):
            low, high = getattr(self, f"min_{unit}"), getattr(self, f"max_{unit}")
            if low is not None and high is not None and low > high:
                raise ValueError(f"min_{unit} is over max_{unit}")
        return self


class LengthScorer(_Check):
    """1.0 when the output's length is within every configured bound."""

    name = "length"
    Options = LengthOptions

    def holds(self, output: str, reference: str | None) -> bool:
        o = self.options
        chars = len(output)
        if (o.min_chars is not None and chars < o.min_chars) or (o.max_chars is not None and chars > o.max_chars):
            return False
        if o.min_words is None and o.max_words is None:
            return True
        words = len(output.split())
        return (o.min_words is None or words >= o.min_words) and (o.max_words is None or words <= o.max_words)
