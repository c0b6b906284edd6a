"""The one prompt renderer of the platform: training, evaluation, serving and the prompts service render with it.

Templates are Jinja2 in the sandboxed, immutable environment (no attribute tricks such as ``__class__``, no file or
module access, no mutation of inputs) with strict undefined variables. A prompt is a text template or a chat template
(a list of messages, each a role and a content template). Input variables are declared with a JSON Schema per
variable; rendering checks every variable first and names each one that is missing, unknown or mistyped.
Compiled templates and validators are cached by content, so rendering a known template costs one Jinja render.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import fastjsonschema
import orjson
import re2
from jinja2 import TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SecurityError
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from llmops.prompt_sandbox import MAX_OUTPUT_CHARS, RENDER_SECONDS, BoundedSandbox, RenderLimit, start_budget

_ENV = BoundedSandbox(keep_trailing_newline=True)


#: Caps on what a template may hold: every version travels whole in an event (and is rendered on every request).
MAX_TEMPLATE_CHARS = 100_000  # the text, or all messages' contents together
MAX_MESSAGES = 100
MAX_VARIABLES = 100
MAX_SCHEMA_BYTES = 10_000  # one variable's JSON Schema (or a test case's), as JSON
MAX_REGEX_CHARS = 2_000  # a test case's regular expression


class ChatMessage(BaseModel):
    """One message of a chat template: a role and a Jinja2 content template."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=MAX_TEMPLATE_CHARS)


class PromptTemplate(BaseModel):
    """What a prompt version renders: a text template or a chat template, and its declared variables.

    ``variables`` maps each input variable to its JSON Schema (``{"type": "string", "maxLength": 2000}``). Sizes are
    capped (:data:`MAX_TEMPLATE_CHARS`, :data:`MAX_MESSAGES`, :data:`MAX_VARIABLES`, :data:`MAX_SCHEMA_BYTES`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["text", "chat"]
    text: str | None = Field(default=None, max_length=MAX_TEMPLATE_CHARS)
    messages: tuple[ChatMessage, ...] | None = Field(default=None, max_length=MAX_MESSAGES)
    variables: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=MAX_VARIABLES)
    _validators: dict[str, Any] = PrivateAttr(default_factory=dict)
    _all_valid: Any = PrivateAttr(default=None)

    @field_validator("messages")
    @classmethod
    def _messages_fit(cls, messages: tuple[ChatMessage, ...] | None) -> tuple[ChatMessage, ...] | None:
        if messages and sum(len(m.content) for m in messages) > MAX_TEMPLATE_CHARS:
            raise ValueError(f"the messages' contents together are over {MAX_TEMPLATE_CHARS} characters")
        return messages

    @field_validator("variables")
    @classmethod
    def _schemas_compile(cls, variables: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, schema in variables.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"variable name {name!r} is not an identifier")
            encoded = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
            if len(encoded) > MAX_SCHEMA_BYTES:
                raise ValueError(f"the JSON Schema of variable {name!r} is over {MAX_SCHEMA_BYTES} bytes")
            try:
                _validator(encoded)
            except (fastjsonschema.JsonSchemaDefinitionException, TypeError, ValueError) as exc:
                raise ValueError(f"the JSON Schema of variable {name!r} is invalid: {exc}") from exc
        return variables

    def model_post_init(self, _context: Any) -> None:
        if (self.kind == "text") != (self.text is not None) or (self.kind == "chat") != (self.messages is not None):
            raise ValueError("a text prompt has `text` and no `messages`; a chat prompt has `messages` and no `text`")
        for source in self.sources():
            try:
                _compiled(source)
            except TemplateSyntaxError as exc:
                raise ValueError(f"template syntax error at line {exc.lineno}: {exc.message}") from exc
        self._validators = {
            name: _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
            for name, schema in self.variables.items()
        }
        # One compiled check of all variables for the common case; the per-variable ones name what is wrong.
        # A `$ref` is relative to its variable's schema, so with refs only the per-variable checks run.
        if b'"$ref"' in orjson.dumps(self.variables):
            return
        whole = {
            "type": "object",
            "properties": self.variables,
            "required": sorted(self.variables),
            "additionalProperties": False,
        }
        self._all_valid = _validator(orjson.dumps(whole, option=orjson.OPT_SORT_KEYS))

    def sources(self) -> list[str]:
        return [self.text] if self.text is not None else [m.content for m in self.messages or ()]

    def content_hash(self) -> str:
        """sha256 of the template and its variables, in canonical JSON."""
        return hashlib.sha256(orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class VariableError:
    """One problem with one input variable."""

    variable: str
    message: str


class RenderError(ValueError):
    """The variables do not fit the template (``errors`` names each), or the template tried something forbidden."""

    def __init__(self, message: str, errors: list[VariableError]) -> None:
        super().__init__(message)
        self.errors = errors


@functools.lru_cache(maxsize=4096)
def _compiled(source: str):
    return _ENV.from_string(source)


@functools.lru_cache(maxsize=4096)
def _validator(schema_json: bytes):
    """A compiled JSON Schema given by a user: local ``$ref``s only, RE2 patterns, never a file or URL opened."""
    schema = orjson.loads(schema_json)
    patterns = _checked_schema(schema)
    validate = fastjsonschema.compile(schema, handlers=_NO_REMOTE_REFS)
    compiled = validate.__globals__.get("REGEX_PATTERNS", {})
    for pattern in patterns & compiled.keys():  # JSON Schema patterns search: RE2's `$` is Python's `\Z`
        compiled[pattern] = _re2(pattern, "pattern")
    return validate


class _RefuseEveryScheme(dict):
    """fastjsonschema ``handlers`` for every URI scheme, each refusing: no ``$ref`` ever reads a file or URL."""

    def __contains__(self, scheme: object) -> bool:
        return True

    def __getitem__(self, scheme: str):
        def refuse(uri: str):
            raise fastjsonschema.JsonSchemaDefinitionException(f"$ref {uri!r} is not local")

        return refuse


_NO_REMOTE_REFS = _RefuseEveryScheme()
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=1024)
def _re2(pattern: str, what: str = "regex"):
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"{what} {pattern!r} is not RE2 syntax (linear-time regular expressions: no backreferences or "
            f"lookarounds): {reason}"
        ) from exc


def _checked_schema(schema: Any) -> set[str]:
    """Refuse what a user's schema must not hold (a non-local ``$ref``, a pattern RE2 cannot run); its patterns."""
    patterns: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            raise ValueError(f"$ref {ref!r} is not local: only references within the schema (#/...) are allowed")
        if isinstance(pattern := node.get("pattern"), str):
            patterns.add(pattern)
        if isinstance(by_pattern := node.get("patternProperties"), dict):
            patterns.update(by_pattern)
            declared = node.get("properties") if isinstance(node.get("properties"), dict) else {}
            # fastjsonschema matches these with Python's re while compiling: declare them instead
            if node.get("additionalProperties") is False and any(p not in declared for p in node.get("required", ())):
                raise ValueError("with patternProperties and no additionalProperties, declare required ones")
        stack.extend(node.values())
    for pattern in patterns:
        _re2(pattern, "pattern")
    return patterns


def check_variables(template: PromptTemplate, variables: Mapping[str, Any]) -> list[VariableError]:
    """Every declared variable present and valid against its schema, and no undeclared one."""
    if (all_valid := template._all_valid) is not None:  # a private attribute: read once, it is not cheap
        try:
            all_valid(variables)
            return []
        except (fastjsonschema.JsonSchemaValueException, TypeError):
            pass
    errors = []
    validators = template._validators
    for name, validate in validators.items():
        if name not in variables:
            errors.append(VariableError(name, "missing"))
            continue
        try:
            validate(variables[name])
        except fastjsonschema.JsonSchemaValueException as exc:
            errors.append(VariableError(name, exc.message.replace("data", name, 1)))
    errors.extend(VariableError(name, "not declared by the prompt") for name in variables if name not in validators)
    return errors


def _rendered(compiled, context: dict[str, Any]) -> str:
    # Template.render without its copies of the variables (made once per render, in `context`) and traceback
    # rewriting (errors become RenderErrors anyway); templates cannot change `context` (immutable sandbox)
    return _ENV.concat(compiled.root_render_func(compiled.new_context(context, shared=True)))


def render(
    template: PromptTemplate, variables: Mapping[str, Any], *, seconds: float = RENDER_SECONDS
) -> str | list[dict[str, str]]:
    """Render a prompt: text, or a list of ``{"role", "content"}`` messages. Raises :class:`RenderError`.

    The render is bounded (:mod:`llmops.prompt_sandbox`): at most ``seconds`` and
    :data:`~llmops.prompt_sandbox.MAX_OUTPUT_CHARS` characters in all; operators and calls that would build huge
    values are refused before they build them.
    """
    errors = check_variables(template, variables)
    if errors:
        raise RenderError("; ".join(f"{e.variable}: {e.message}" for e in errors), errors)
    start_budget(seconds)
    context = {**_ENV.globals, **variables}
    try:
        if template.text is not None:
            return _rendered(_compiled(template.text), context)
        contents = [_rendered(_compiled(m.content), context) for m in template.messages]
    except RenderLimit as exc:
        raise RenderError(f"the template went over a render limit: {exc}", []) from exc
    except SecurityError as exc:
        raise RenderError(f"the template tried something the sandbox forbids: {exc}", []) from exc
    except UndefinedError as exc:
        raise RenderError(f"the template uses an undefined value: {exc.message}", []) from exc
    except Exception as exc:  # a template is user code: whatever it raises is its own error, not the caller's
        raise RenderError(f"the template failed: {type(exc).__name__}: {exc}", []) from exc
    if sum(map(len, contents)) > MAX_OUTPUT_CHARS:
        raise RenderError(
            f"the template went over a render limit: the messages are over {MAX_OUTPUT_CHARS:,} characters", []
        )
    return [{"role": m.role, "content": c} for m, c in zip(template.messages, contents, strict=True)]


# -- test cases --------------------------------------------------------------------------------------------------
class Expectation(BaseModel):
    """What a rendered prompt (or later, a model output) must satisfy. Exactly the fields given are checked."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    equals: str | None = Field(default=None, max_length=MAX_OUTPUT_CHARS)
    contains: list[Annotated[str, Field(max_length=MAX_REGEX_CHARS)]] = Field(default_factory=list, max_length=100)
    regex: str | None = Field(default=None, max_length=MAX_REGEX_CHARS, description="RE2 syntax, searched")
    json_schema: dict[str, Any] | None = Field(default=None, description="local $refs only, RE2 patterns")
    max_length: int | None = Field(default=None, ge=0)

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _re2(value)
        return value

    @field_validator("json_schema")
    @classmethod
    def _schema_compiles(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            user_schema_validator(schema)
        return schema


def user_regex(pattern: str, what: str = "regex"):
    """A regular expression given by a user, compiled by RE2 (linear time: no backreferences or lookarounds), cached.

    Raises ValueError naming the pattern when RE2 cannot compile it. Callers cap its length (:data:`MAX_REGEX_CHARS`).
    """
    return _re2(pattern, what)


def user_schema_validator(schema: dict[str, Any]):
    """A JSON Schema given by a user, compiled and cached: at most :data:`MAX_SCHEMA_BYTES`, local ``$ref``s only,
    RE2 patterns. The validator raises ``fastjsonschema.JsonSchemaValueException``; a bad schema, ValueError."""
    encoded = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    if len(encoded) > MAX_SCHEMA_BYTES:
        raise ValueError(f"the JSON Schema is over {MAX_SCHEMA_BYTES} bytes")
    try:
        return _validator(encoded)
    except (fastjsonschema.JsonSchemaDefinitionException, TypeError) as exc:
        raise ValueError(f"the JSON Schema is invalid: {exc}") from exc


def as_text(rendered: str | list[dict[str, str]]) -> str:
    """A rendered chat as text for checks: one ``role: content`` paragraph per message."""
    if isinstance(rendered, str):
        return rendered
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in rendered)


def failed_expectations(text: str, expect: Expectation) -> list[str]:
    """The expectations ``text`` does not meet (empty when all hold)."""
    failures = []
    if expect.equals is not None and text != expect.equals:
        failures.append("equals: the text differs")
    failures += [f"contains: {needle!r} is missing" for needle in expect.contains if needle not in text]
    if expect.regex is not None and _re2(expect.regex).search(text) is None:
        failures.append(f"regex: {expect.regex!r} does not match")
    if expect.max_length is not None and len(text) > expect.max_length:
        failures.append(f"max_length: {len(text)} > {expect.max_length}")
    if expect.json_schema is not None:
        try:
            _validator(orjson.dumps(expect.json_schema, option=orjson.OPT_SORT_KEYS))(orjson.loads(text))
        except orjson.JSONDecodeError:
            failures.append("json_schema: the text is not JSON")
        except fastjsonschema.JsonSchemaValueException as exc:
            failures.append(f"json_schema: {exc.message}")
    return failures
