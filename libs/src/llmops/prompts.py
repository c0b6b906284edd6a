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
from typing import Any, Literal

import fastjsonschema
import orjson
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


#: Caps on what a template may hold: every version travels whole in an event (and is rendered on every request).
MAX_TEMPLATE_CHARS = 100_000  # the text, or all messages' contents together
MAX_MESSAGES = 100
MAX_VARIABLES = 100
MAX_SCHEMA_BYTES = 10_000  # one variable's JSON Schema, as JSON


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
    return fastjsonschema.compile(orjson.loads(schema_json))


def check_variables(template: PromptTemplate, variables: Mapping[str, Any]) -> list[VariableError]:
    """Every declared variable present and valid against its schema, and no undeclared one."""
    try:
        template._all_valid(variables)
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


def render(template: PromptTemplate, variables: Mapping[str, Any]) -> str | list[dict[str, str]]:
    """Render a prompt: text, or a list of ``{"role", "content"}`` messages. Raises :class:`RenderError`."""
    errors = check_variables(template, variables)
    if errors:
        raise RenderError("; ".join(f"{e.variable}: {e.message}" for e in errors), errors)
    try:
        if template.text is not None:
            return _compiled(template.text).render(variables)
        return [{"role": m.role, "content": _compiled(m.content).render(variables)} for m in template.messages or ()]
    except SecurityError as exc:
        raise RenderError(f"the template tried something the sandbox forbids: {exc}", []) from exc
    except UndefinedError as exc:
        raise RenderError(f"the template uses an undefined value: {exc.message}", []) from exc


# -- test cases --------------------------------------------------------------------------------------------------
class Expectation(BaseModel):
    """What a rendered prompt (or later, a model output) must satisfy. Exactly the fields given are checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    equals: str | None = None
    contains: list[str] = Field(default_factory=list)
    regex: str | None = None
    json_schema: dict[str, Any] | None = None
    max_length: int | None = Field(default=None, ge=0)

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from exc
        return value


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
    if expect.regex is not None and re.search(expect.regex, text) is None:
        failures.append(f"regex: {expect.regex!r} does not match")
    if expect.max_length is not None and len(text) > expect.max_length:
        failures.append(f"max_length: {len(text)} > {expect.max_length}")
    if expect.json_schema is not None:
        try:
            fastjsonschema.validate(expect.json_schema, orjson.loads(text))
        except orjson.JSONDecodeError:
            failures.append("json_schema: the text is not JSON")
        except fastjsonschema.JsonSchemaValueException as exc:
            failures.append(f"json_schema: {exc.message}")
    return failures
