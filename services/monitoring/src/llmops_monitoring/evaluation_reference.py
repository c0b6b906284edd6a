"""The evaluation that gated a model version, as a drift reference: the examples of the run whose gate decision passed
the version (or was overridden to pass), newest first, read from the run's artifact (JSONL: every example's input,
the model's output, its tokens) in the object store by its content address.

The projections keep what the evaluation events say (``evaluation.run.completed``: the run, its model version, its
artifact; ``evaluation.gate.decided`` and ``.overridden``: which runs passed which version); nothing is fetched from
the evaluation service. Only what an evaluation measures like serving does goes into the frame: input and output
texts, their lengths, the output tokens. Latency, time to first token, finish reason and flags are left out (the
evaluation ran in another place, under another load), and the report names them as dropped.
"""

from __future__ import annotations

from typing import Any

import orjson
import pandas as pd
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.storage import ObjectStore
from llmops_monitoring.drift import COLUMNS
from llmops_monitoring.models import evaluation_runs, gate_passes
from llmops_schemas import CloudEvent
from llmops_schemas.events import EvaluationGateDecided, EvaluationGateOverridden, EvaluationRunCompleted


class NoGatedEvaluation(LookupError):
    """The deployment's model version has no passed gate decision whose run the service knows."""


async def run_completed(session: AsyncSession, event: CloudEvent, v: EvaluationRunCompleted) -> None:
    await session.execute(
        insert(evaluation_runs)
        .values(
            run_id=v.run_id,
            project=v.project,
            model_version_id=v.target.model_version_id,
            suite_version_id=v.suite.version_id,
            artifact_sha256=v.artifact_sha256,
            examples=v.examples,
            completed_at=event.time,
        )
        .on_conflict_do_nothing(index_elements=["run_id"])
    )


async def gate_decided(session: AsyncSession, event: CloudEvent, v: EvaluationGateDecided | EvaluationGateOverridden):
    """A decision (or an admin's override) about a run of a model version; the latest by event time holds, whatever
    the order the events arrive in (an override replayed before the decision it overrides still wins)."""
    version = v.target.model_version_id
    if version is None:
        return
    statement = insert(gate_passes).values(
        model_version_id=version, run_id=v.run_id, project=v.project, decided_at=event.time, passed=v.passed
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["model_version_id", "run_id"],
            set_={"decided_at": statement.excluded.decided_at, "passed": statement.excluded.passed},
            where=gate_passes.c.decided_at <= statement.excluded.decided_at,
        )
    )


async def gating_run(session: AsyncSession, project: str, model_version_id: str | None) -> Any:
    """The newest passed run of ``model_version_id`` whose completion is known (run_id, artifact_sha256, examples)."""
    if model_version_id is None:
        raise NoGatedEvaluation("the deployment serves no registered model version")
    row = (
        await session.execute(
            select(evaluation_runs.c.run_id, evaluation_runs.c.artifact_sha256, evaluation_runs.c.examples)
            .join(gate_passes, gate_passes.c.run_id == evaluation_runs.c.run_id)
            .where(
                gate_passes.c.model_version_id == model_version_id,
                gate_passes.c.project == project,
                gate_passes.c.passed,
            )
            .order_by(gate_passes.c.decided_at.desc())
            .limit(1)
        )
    ).one_or_none()
    if row is None:
        raise NoGatedEvaluation(f"model version {model_version_id} has no passed evaluation gate known here")
    return row


async def reference_frame(store: ObjectStore, run: Any, *, max_rows: int, max_bytes: int) -> pd.DataFrame:
    """The drift frame of a gating run's examples (:data:`drift.COLUMNS`), from its artifact."""
    if run.examples > max_rows:
        raise NoGatedEvaluation(f"the gating run has {run.examples} examples, more than {max_rows} read at once")
    size = await store.size_of(run.artifact_sha256)
    if size > max_bytes:
        raise NoGatedEvaluation(f"the gating run's artifact is {size} bytes, more than {max_bytes} read at once")
    data = await store.get_bytes(run.artifact_sha256)
    return frame_of_examples(orjson.loads(line) for line in data.splitlines() if line.strip())


def served_text(value: Any) -> str | None:
    """An example's input as the gateway records a request's: a prompt as it is, a chat's message contents (and
    text parts) one per line, without the roles."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return None
    texts: list[str] = []
    for message in value:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return "\n".join(texts)


def frame_of_examples(examples) -> pd.DataFrame:
    rows = []
    for example in examples:
        text_in = served_text(example.get("input"))
        text_out = example.get("output") if isinstance(example.get("output"), str) else None
        tokens = example.get("tokens")
        rows.append(
            {
                "input_chars": None if text_in is None else float(len(text_in)),
                "output_chars": None if text_out is None else float(len(text_out)),
                "tokens_out": float(tokens) if isinstance(tokens, int | float) and tokens > 0 else None,
                "input": text_in,
                "output": text_out,
            }
        )
    frame = pd.DataFrame.from_records(rows, columns=["input_chars", "output_chars", "tokens_out", "input", "output"])
    for column in COLUMNS:  # what an evaluation does not measure as serving does: no values, dropped with the reason
        if column not in frame:
            frame[column] = pd.Series([None] * len(frame), dtype=object)
    for column in ("input_chars", "output_chars", "tokens_out", "tokens_in", "latency_ms", "ttft_ms"):
        frame[column] = frame[column].astype(float)
    return frame[list(COLUMNS)]
