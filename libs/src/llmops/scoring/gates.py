"""Release gates: rules a run's metrics must meet, absolute or relative to the run of another model (an alias).

A rule is written ``bleu >= 20`` (absolute) or ``bleu >= production - 1.0`` / ``rouge_l >= production`` (relative
to the run of the model the alias ``production`` points at), with operator ``>=``, ``>``, ``<=`` or ``<``; or as a
mapping ``{"metric": "bleu", "op": ">=", "threshold": 20}`` / ``{"metric": "bleu", "op": ">=", "baseline":
"production", "margin": -1.0}``. Put spaces around the ``+``/``-`` of a margin: an alias may contain ``-``.

An absolute rule compares the metric's value (its mean, or its corpus value) with the threshold. A relative rule
``m >= alias + margin`` asks that candidate - baseline >= margin, and passes only when the whole paired interval
of the difference does: its lower bound (the upper one for ``<=`` and ``<``) must meet the margin, so a noisy tie
does not pass ``>= production``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmops.scoring.base import MetricName
from llmops.scoring.stats import Comparison, Interval

Operator = Literal[">=", ">", "<=", "<"]
OPERATORS: tuple[str, ...] = (">=", ">", "<=", "<")
#: An alias of a model version (``production``, ``champion``): the run of the version it points at is the baseline.
Alias = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]

_METRIC = re.compile(r"[a-z][a-z0-9_]{0,62}")
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_ALIAS = r"[a-z][a-z0-9_-]{0,62}"
_RELATIVE = re.compile(rf"(?P<alias>{_ALIAS})(?:\s*(?P<sign>[+-])\s*(?P<margin>{_NUMBER}))?")
_OPERATOR = re.compile(r"[<>=!]+")


def _number(value: float) -> str:
    """A number as rules are written: exact, without a trailing ``.0``."""
    return repr(float(value)).removesuffix(".0")


def _shown(value: float) -> str:
    return f"{value:.4g}"


class GateRule(BaseModel):
    """One gate: ``metric op threshold`` (absolute) or ``metric op baseline + margin`` (relative to an alias)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: MetricName
    op: Operator
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    baseline: Alias | None = None
    margin: float = Field(default=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _absolute_or_relative(self) -> GateRule:
        if (self.threshold is None) == (self.baseline is None):
            raise ValueError("give either a threshold (absolute rule) or a baseline alias (relative rule)")
        if self.threshold is not None and self.margin != 0:
            raise ValueError("a margin belongs to a relative rule (with a baseline), not to a threshold")
        return self

    @property
    def text(self) -> str:
        """The rule as it is written: ``bleu >= 20``, ``bleu >= production - 1``."""
        if self.baseline is None:
            return f"{self.metric} {self.op} {_number(self.threshold)}"
        if self.margin == 0:
            return f"{self.metric} {self.op} {self.baseline}"
        sign = "-" if self.margin < 0 else "+"
        return f"{self.metric} {self.op} {self.baseline} {sign} {_number(abs(self.margin))}"


def _parse_text(text: str) -> GateRule:
    found = _OPERATOR.search(text)
    if found is None:
        raise ValueError(f"rule {text!r} has no comparison operator (one of {', '.join(OPERATORS)})")
    if found.group() not in OPERATORS:
        raise ValueError(f"rule {text!r}: unknown operator {found.group()!r} (use one of {', '.join(OPERATORS)})")
    metric, right = text[: found.start()].strip(), text[found.end() :].strip()
    if not _METRIC.fullmatch(metric):
        raise ValueError(f"rule {text!r}: metric {metric!r} is not a metric name (a lower-case identifier)")
    op = found.group()
    if not right:
        raise ValueError(f"rule {text!r} has nothing after {op!r}: give a number or an alias")
    if re.fullmatch(_NUMBER, right):
        if not math.isfinite(float(right)):
            raise ValueError(f"rule {text!r}: threshold {right!r} is not a finite number")
        return GateRule(metric=metric, op=op, threshold=float(right))
    if relative := _RELATIVE.fullmatch(right):
        margin = relative["margin"]
        value = 0.0 if margin is None else float(f"{relative['sign']}{margin}")
        if not math.isfinite(value):
            raise ValueError(f"rule {text!r}: margin {margin!r} is not a finite number")
        return GateRule(metric=metric, op=op, baseline=relative["alias"], margin=value)
    raise ValueError(f"rule {text!r}: {_what_is_wrong(right)}")


def _what_is_wrong(right: str) -> str:
    """Why the right-hand side is neither a number nor ``alias [+/- number]``."""
    if right[0] in "+-.0123456789":
        number = re.match(_NUMBER, right)
        if number is None or not number.group().strip("+-"):
            return f"{right!r} is not a number"
        return f"trailing text {right[number.end() :]!r} after the number {number.group()!r}"
    alias = re.match(_ALIAS, right)
    if alias is None:
        return f"{right!r} is neither a number nor an alias (a lower-case name such as production)"
    rest = right[alias.end() :].strip()
    if rest[:1] in ("+", "-"):
        return f"margin {rest[1:].strip()!r} after {alias.group()!r} is not a number"
    return f"trailing text {rest!r} after the alias {alias.group()!r} (a margin is written `+ 0.5` or `- 1.0`)"


def parse_gate(value: str | Mapping[str, Any] | GateRule) -> GateRule:
    """A gate rule from its text (``bleu >= production - 1.0``) or mapping form; ValueError naming what is wrong."""
    if isinstance(value, GateRule):
        return value
    if isinstance(value, str):
        return _parse_text(value.strip())
    if isinstance(value, Mapping):
        try:
            return GateRule.model_validate(dict(value))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"] for e in exc.errors()
            )
            raise ValueError(problems) from None
    raise ValueError(f"a gate is a rule text or a mapping, not {type(value).__name__}")


def check_gates(rules: Sequence[str | Mapping[str, Any] | GateRule], metrics: set[str]) -> list[str]:
    """What is wrong with each rule, as ``gates[i]: ...``: a rule that does not parse, or a metric the suite's
    scorers do not compute (``metrics``). Empty when every rule is sound."""
    problems = []
    for index, value in enumerate(rules):
        try:
            rule = parse_gate(value)
        except ValueError as exc:
            problems.append(f"gates[{index}]: {exc}")
            continue
        if rule.metric not in metrics:
            computed = ", ".join(sorted(metrics)) or "none"
            problems.append(
                f"gates[{index}]: metric {rule.metric!r} is not computed by the suite (it computes: {computed})"
            )
    return problems


class MetricValue(BaseModel):
    """A run's value of one metric (a mean or a corpus value) and, where known, its interval."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: float | None
    low: float | None = None
    high: float | None = None


class GateResult(BaseModel):
    """One rule's outcome: the value it judged (the difference for a relative rule), the bound used, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str
    passed: bool
    value: float | None = None
    bound: float | None = None
    reason: str


class GateDecision(BaseModel):
    """All rules' outcomes; ``passed`` when every rule passed (no rules: passed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    passed: bool
    rules: list[GateResult]


_HOLDS = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
}
_FAILS_AS = {">=": "is below", ">": "is not above", "<=": "is above", "<": "is not below"}
_PASSES_AS = {">=": "is at least", ">": "is above", "<=": "is at most", "<": "is below"}


def _metric_value(found: MetricValue | Interval | float | int | None) -> float | None:
    if isinstance(found, MetricValue):
        return found.value
    if isinstance(found, Interval):
        return found.mean
    return None if found is None else float(found)


def _absolute(rule: GateRule, aggregates: Mapping[str, Any]) -> GateResult:
    if rule.metric not in aggregates:
        return GateResult(rule=rule.text, passed=False, reason=f"metric {rule.metric!r} was not computed in this run")
    value = _metric_value(aggregates[rule.metric])
    if value is None or not math.isfinite(value):
        return GateResult(rule=rule.text, passed=False, reason=f"metric {rule.metric!r} has no value in this run")
    passed = _HOLDS[rule.op](value, rule.threshold)
    verdict = (_PASSES_AS if passed else _FAILS_AS)[rule.op]
    reason = f"{rule.metric} {_shown(value)} {verdict} {_shown(rule.threshold)}"
    return GateResult(rule=rule.text, passed=passed, value=value, bound=value, reason=reason)


def _relative(
    rule: GateRule, comparisons: Mapping[str, Mapping[str, Comparison | None] | None], labels: Mapping[str, str]
) -> GateResult:
    alias = rule.baseline
    by_metric = comparisons.get(alias)
    if by_metric is None:
        return GateResult(rule=rule.text, passed=False, reason=f"no completed run of this suite for alias {alias!r}")
    versus = f"{alias} ({labels[alias]})" if alias in labels else alias
    comparison = by_metric.get(rule.metric)
    if comparison is None or comparison.n == 0 or comparison.low is None or comparison.high is None:
        reason = f"no example has metric {rule.metric!r} in both this run and the run of {versus}"
        return GateResult(rule=rule.text, passed=False, reason=reason)
    lower = rule.op in (">=", ">")
    bound = comparison.low if lower else comparison.high
    passed = _HOLDS[rule.op](bound, rule.margin)
    verdict = (_PASSES_AS if passed else _FAILS_AS)[rule.op]
    reason = (
        f"{'lower' if lower else 'upper'} bound {_shown(bound)} of the difference vs {versus} {verdict} "
        f"{_shown(rule.margin)} (mean difference {_shown(comparison.mean_difference)}, n={comparison.n})"
    )
    return GateResult(rule=rule.text, passed=passed, value=comparison.mean_difference, bound=bound, reason=reason)


def decide(
    rules: Sequence[str | Mapping[str, Any] | GateRule],
    *,
    aggregates: Mapping[str, MetricValue | Interval | float | None],
    comparisons: Mapping[str, Mapping[str, Comparison | None] | None],
    baseline_labels: Mapping[str, str] | None = None,
) -> GateDecision:
    """Judge each rule against this run.

    ``aggregates`` maps each metric to this run's value (a :class:`MetricValue`, an :class:`Interval` whose mean is
    the value, or a plain number; ``None`` when it has none). ``comparisons`` maps each baseline alias to, per
    metric, the :class:`Comparison` of this run against the alias's run (candidate = this run), or to ``None`` when
    the alias has no completed run of the suite. ``baseline_labels`` names each alias's run in reasons
    (``{"production": "v3"}``). A rule that cannot be judged fails with its reason; rules are parsed with
    :func:`parse_gate` (ValueError when one does not parse: validate them first with :func:`check_gates`).
    """
    labels = baseline_labels or {}
    results = []
    for value in rules:
        rule = parse_gate(value)
        if rule.baseline is None:
            results.append(_absolute(rule, aggregates))
        else:
            results.append(_relative(rule, comparisons, labels))
    return GateDecision(passed=all(r.passed for r in results), rules=results)
