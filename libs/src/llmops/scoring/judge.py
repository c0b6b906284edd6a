"""An LLM as judge: a model behind an OpenAI-compatible chat completions endpoint scores each output with a rubric.

The rubric is a prompt template (:class:`llmops.prompts.PromptTemplate`, as the prompts service stores it) that
declares some of the variables ``input``, ``output`` and ``reference`` (``output`` at least); it is rendered per
example with the one renderer of the platform and sent as the chat's messages (a text template as one user message).
The judge is asked for a JSON object: the first object in its answer holding ``score_field`` (surrounding text and
code fences are tolerated) gives the score, which must be a number within ``[min_score, max_score]``. An answer
without one is *unparseable*: recorded as such with the reason (:meth:`ExampleScore.unparsed`), never as a zero;
a failed call (HTTP error, timeout) is that example's error. Each example's raw answer and the judge's model are in
its ``details``.

Calls go through huggingface_hub's ``AsyncInferenceClient`` (``base_url`` = the endpoint, ``/v1/chat/completions``
appended as that client does), at most ``concurrency`` at once. :meth:`JudgeScorer.score_examples` keeps the
synchronous :class:`Scorer` interface by running the batch on an event loop of its own (in a new thread when the
calling thread already runs one); :meth:`JudgeScorer.judge_examples` is the same batch for async callers.

The endpoint is checked here only for its form (``http``/``https``, a host, no credentials, query or fragment):
which hosts a judge may call (an allow-list against SSRF) is the evaluation service's decision, and as
huggingface_hub's client follows redirects, only endpoints the platform trusts belong on it. The API key is
read from the environment variable named by ``api_key_env`` when scoring, so a configuration never holds it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from llmops.prompts import PromptTemplate, render
from llmops.scoring.base import ExampleScore, MetricName, Scorer, ScorerOptions

#: The variables a rubric may declare, and the one it must.
RUBRIC_VARIABLES = frozenset({"input", "output", "reference"})
#: How much of an answer is searched for its score, and how much of it is kept in an example's details.
MAX_ANSWER_CHARS = 20_000
STORED_ANSWER_CHARS = 2_000
#: At most this many ``{`` of an answer are tried as the start of a JSON object.
MAX_OBJECT_STARTS = 100
# Without an explicit key huggingface_hub sends the machine's own Hugging Face token, which must never reach a
# user-chosen endpoint: with no api_key_env this placeholder is sent instead (servers without auth ignore it).
_NO_KEY = "no-key"


class JudgeOptions(ScorerOptions):
    """An LLM judge: where it is, which model, the rubric, how its answer is read, and how it is called."""

    type: Literal["judge"] = "judge"
    metric: MetricName = "judge_score"
    endpoint: str = Field(max_length=2_000, description="base URL of an OpenAI-compatible server, http(s)")
    model: str | None = Field(default=None, min_length=1, max_length=200)
    rubric: PromptTemplate
    score_field: str = Field(default="score", min_length=1, max_length=100)
    min_score: float = Field(default=1.0, allow_inf_nan=False)
    max_score: float = Field(default=5.0, allow_inf_nan=False)
    max_tokens: int = Field(default=256, ge=1, le=8_192)
    temperature: float = Field(default=0.0, ge=0, le=2)
    timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    concurrency: int = Field(default=4, ge=1, le=64)
    api_key_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

    @field_validator("endpoint")
    @classmethod
    def _plain_http_url(cls, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"the endpoint's scheme must be http or https, not {parts.scheme or 'none'!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("the endpoint must not hold credentials: name an environment variable in api_key_env")
        if not parts.hostname:
            raise ValueError("the endpoint has no host")
        if parts.query or parts.fragment:
            raise ValueError("the endpoint is a base URL: no query or fragment")
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number or out of range
        return endpoint

    @field_validator("rubric")
    @classmethod
    def _declares_its_variables(cls, rubric: PromptTemplate) -> PromptTemplate:
        declared = set(rubric.variables)
        if unknown := declared - RUBRIC_VARIABLES:
            raise ValueError(f"the rubric may declare only input, output and reference, not {sorted(unknown)}")
        if "output" not in declared:
            raise ValueError("the rubric must declare the variable output (what it judges)")
        return rubric

    @model_validator(mode="after")
    def _score_range(self) -> JudgeOptions:
        if self.min_score >= self.max_score:
            raise ValueError("min_score must be below max_score")
        return self


def read_score(answer: str, *, score_field: str = "score", min_score: float = 1, max_score: float = 5) -> float:
    """The score in a judge's answer: ``score_field`` of the first JSON object holding it (text and code fences
    around it are skipped). ValueError saying why when there is none, or it is not a number within the range."""
    text = answer[:MAX_ANSWER_CHARS]
    decoder = json.JSONDecoder()
    start, tries = text.find("{"), 0
    while start != -1 and tries < MAX_OBJECT_STARTS:
        tries += 1
        try:
            found, _ = decoder.raw_decode(text, start)
        except ValueError:
            found = None
        if isinstance(found, dict) and score_field in found:
            value = found[score_field]
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{score_field!r} is {value!r}, not a number")
            if not min_score <= value <= max_score:
                raise ValueError(f"{score_field!r} {value} is outside [{min_score:g}, {max_score:g}]")
            return float(value)
        start = text.find("{", start + 1)
    raise ValueError(f"the answer holds no JSON object with {score_field!r}")


class JudgeScorer(Scorer):
    """Scores each output with an LLM judge (metric ``judge_score`` by default); the corpus value is the mean."""

    name = "judge"
    Options = JudgeOptions

    def __init__(self, options: JudgeOptions) -> None:
        self.options = options
        self.metrics = (options.metric,)

    def score_examples(
        self,
        outputs: Sequence[str],
        references: Sequence[str | None],
        inputs: Sequence[str | None] | None = None,
    ) -> list[ExampleScore]:
        """Every example judged, in order, on an event loop of its own (a new thread when this one runs a loop)."""
        batch = self.judge_examples(outputs, references, inputs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(batch)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge") as pool:
            return pool.submit(asyncio.run, batch).result()

    async def judge_examples(
        self,
        outputs: Sequence[str],
        references: Sequence[str | None],
        inputs: Sequence[str | None] | None = None,
    ) -> list[ExampleScore]:
        """Every example judged, in order; the rubric is rendered off the event loop (it is bounded but not free)."""
        prompts = await asyncio.to_thread(self._prompts, outputs, references, inputs)
        return await self._judge(prompts)

    def _prompts(self, outputs, references, inputs) -> list[list[dict[str, str]] | ExampleScore]:
        rubric, declared = self.options.rubric, self.options.rubric.variables
        prompts: list[list[dict[str, str]] | ExampleScore] = []
        for output, reference, input in zip(outputs, references, inputs or [None] * len(outputs), strict=True):
            given = {"input": input, "output": output, "reference": reference}
            try:
                rendered = render(rubric, {name: value for name, value in given.items() if name in declared})
            except ValueError as exc:  # RenderError: the example does not fit the rubric (a missing reference)
                prompts.append(ExampleScore.failed(f"the rubric did not render: {exc}"))
                continue
            prompts.append([{"role": "user", "content": rendered}] if isinstance(rendered, str) else rendered)
        return prompts

    async def _judge(self, prompts: list[list[dict[str, str]] | ExampleScore]) -> list[ExampleScore]:
        from huggingface_hub import AsyncInferenceClient  # its import takes ~0.6 s: only when a judge runs

        options = self.options
        key = _NO_KEY
        if options.api_key_env is not None:
            # the one environment read outside settings: which variable holds the key is the suite's choice
            key = os.environ.get(options.api_key_env) or ""
            if not key:
                raise ValueError(f"environment variable {options.api_key_env} (api_key_env) is not set")
        semaphore = asyncio.Semaphore(options.concurrency)
        async with AsyncInferenceClient(
            base_url=options.endpoint, api_key=key, timeout=options.timeout_seconds
        ) as client:

            async def one(prompt: list[dict[str, str]] | ExampleScore) -> ExampleScore:
                if isinstance(prompt, ExampleScore):
                    return prompt
                async with semaphore:
                    try:
                        reply = await client.chat_completion(
                            prompt,
                            model=options.model,
                            max_tokens=options.max_tokens,
                            temperature=options.temperature,
                        )
                        answer = reply.choices[0].message.content or ""
                    except Exception as exc:  # the call failed (HTTP error, timeout, a reply without choices)
                        return ExampleScore.failed(exc)
                return self._scored(answer, reply.model or options.model)

            return list(await asyncio.gather(*(one(prompt) for prompt in prompts)))

    def _scored(self, answer: str, model: str | None) -> ExampleScore:
        options = self.options
        details: dict[str, Any] = {"answer": answer[:STORED_ANSWER_CHARS], "model": model}
        try:
            value = read_score(
                answer, score_field=options.score_field, min_score=options.min_score, max_score=options.max_score
            )
        except ValueError as exc:
            return ExampleScore.unparsed(str(exc), details)
        return ExampleScore({self.metrics[0]: value}, details=details)
