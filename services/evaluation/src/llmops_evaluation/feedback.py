"""Human feedback's use cases: record one (from the API or from ``feedback.submitted`` on the bus, counted once per
event id), summarise it per model version with bootstrap intervals, and export corrections as a dataset version.

A feedback's row is keyed on its event's id. The API writes the row and the event in one transaction, so when the
service's own consumer reads that event back its insert finds the row and changes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.bus import add_to_outbox
from llmops.errors import Problem, unprocessable
from llmops.runtime import Actor, Runtime
from llmops.scoring.stats import bootstrap_ci
from llmops_evaluation import queries, repository
from llmops_schemas import CloudEvent
from llmops_schemas.envelope import new_event_id
from llmops_schemas.events import DatasetImportRequested, FeedbackSubmitted

#: Idempotency keys become event ids in this namespace (with the project and the caller: keys are theirs).
KEY_NAMESPACE = uuid.UUID("5b0f2d1e-5c2a-4f57-9a53-8f2f7c1d6e41")


@dataclass(frozen=True)
class Export:
    import_id: str
    rows: int
    sha256: str
    uri: str
    #: Corrections left out: no input given, and none found in the run's artifact.
    skipped: int


# -- recording ---------------------------------------------------------------------------------------------------
def row_of(event: CloudEvent, v: FeedbackSubmitted) -> dict[str, Any]:
    """The feedback row of an event: the same whichever way it arrives (API or bus)."""
    values = v.model_dump(include=set(FeedbackSubmitted.model_fields) - {"source"})
    return values | {
        "id": event.id,
        "source": v.source or event.source,
        "actor": event.actor,
        "submitted_at": event.time,
    }


async def record_submitted(session: AsyncSession, event: CloudEvent, v: FeedbackSubmitted) -> bool:
    """A ``feedback.submitted`` arrived: stored once (False when its id is stored already)."""
    return await repository.insert_feedback(session, row_of(event, v))


def event_id_for(project: str, actor: Actor, feedback_id: str | None, idempotency_key: str | None) -> str:
    """The feedback's own ``id``, else one derived from the caller's idempotency key, else a fresh one."""
    if feedback_id is not None:
        return str(uuid.UUID(feedback_id))
    if idempotency_key is not None:
        return str(uuid.uuid5(KEY_NAMESPACE, f"{project}\n{actor.subject}\n{idempotency_key}"))
    return new_event_id()


def _checked(project: str, fields: dict[str, Any]) -> FeedbackSubmitted:
    # The event's rules, each answered as a 422 naming a field (the model's own error names none).
    given = {name: value for name, value in fields.items() if value is not None}
    if not given.keys() & {"rating", "thumb", "correction"}:
        raise unprocessable("a feedback needs a rating, a thumb or a correction", "rating")
    if not given.keys() & {"inference_id", "model_version_id", "run_id"}:
        detail = "a feedback is about an inference_id, a model_version_id or a run_id (with example_index)"
        raise unprocessable(detail, "inference_id")
    if ("run_id" in given) != ("example_index" in given):
        raise unprocessable("run_id and example_index go together", "example_index" if "run_id" in given else "run_id")
    try:
        return FeedbackSubmitted(project=project, **given)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise unprocessable(error["msg"], ".".join(str(p) for p in error["loc"]) or "body") from exc


async def give_feedback(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project: str,
    fields: dict[str, Any],
    actor: Actor,
    feedback_id: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[Row, bool]:
    """Record a feedback (``fields``: ``feedback.submitted``'s but the project) and publish ``feedback.submitted``,
    in one transaction; the stored row, and False when the same id was recorded before (a retry: nothing new is
    written or published)."""
    payload = _checked(project, fields)
    event_id = event_id_for(project, actor, feedback_id, idempotency_key)
    subject = payload.inference_id or payload.model_version_id or payload.run_id or project
    event = runtime.event(payload, subject=subject, actor=actor, project=project).model_copy(update={"id": event_id})
    created = await record_submitted(session, event, payload)
    if created:
        await add_to_outbox(session, event)
    row = await queries.find_feedback(session, event_id)
    if row is None or row.project != project:
        raise Problem(409, f"feedback id {event_id} is taken by another project's feedback")
    return row, created


# -- summary -----------------------------------------------------------------------------------------------------
def _interval(values: list[float], resamples: int) -> dict[str, Any]:
    ci = bootstrap_ci(values, resamples=resamples)
    return {"mean": ci.mean, "low": ci.low, "high": ci.high, "n": ci.n}


def summarise(rows: list[Row], resamples: int) -> list[dict[str, Any]]:
    """Per model version (None: feedback about no model version): counts, the mean rating and the share of thumbs
    up, each with its bootstrap 95% interval."""
    groups: dict[str | None, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row.model_version_id].append(row)
    summaries = []
    for model_version_id, group in sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or "")):
        ratings = [float(r.rating) for r in group if r.rating is not None]
        thumbs = [1.0 if r.thumb == "up" else 0.0 for r in group if r.thumb is not None]
        up = int(sum(thumbs))
        summaries.append(
            {
                "model_version_id": model_version_id,
                "count": len(group),
                "rating": _interval(ratings, resamples),
                "thumbs_up": up,
                "thumbs_down": len(thumbs) - up,
                "share_up": _interval(thumbs, resamples),
                "corrections": sum(1 for r in group if r.corrected),
            }
        )
    return summaries


async def summary(
    session: AsyncSession, project: str, model_version_id: str | None, *, resamples: int
) -> list[dict[str, Any]]:
    rows = await queries.feedback_judgements(session, project, model_version_id)
    return await asyncio.to_thread(summarise, rows, resamples)  # resampling is CPU work: off the event loop


# -- export ------------------------------------------------------------------------------------------------------
async def _inputs_from_artifacts(session: AsyncSession, runtime: Runtime, project: str, rows: list[Row]) -> dict:
    """(run id, example index) -> the example's input, read from each run's artifact (JSONL, one example a line,
    in index order; a line's own ``index`` wins) for the rows that have no input of their own."""
    wanted: dict[str, int] = {}
    for row in rows:
        if row.input is None and row.run_id is not None and row.example_index is not None:
            wanted[row.run_id] = max(wanted.get(row.run_id, -1), row.example_index)
    found: dict[tuple[str, int], str] = {}
    for run_id, last in wanted.items():
        try:
            run = await repository.find_run(session, project, str(uuid.UUID(run_id)))
        except ValueError:
            continue  # not a run id of this service: nothing to look up
        if run is None or run.artifact_sha256 is None or runtime.store is None:
            continue
        for position, line in enumerate(await runtime.store.first_lines(run.artifact_sha256, last + 1)):
            try:
                example = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            text = example.get("input") if isinstance(example, dict) else None
            if isinstance(text, str):
                found[(run_id, int(example.get("index", position)))] = text
    return found


async def export_corrections(
    session: AsyncSession,
    runtime: Runtime,
    *,
    project: str,
    dataset: str,
    actor: Actor,
    model_version_id: str | None = None,
    run_id: str | None = None,
    since: datetime | None = None,
) -> Export:
    """Write the corrections (``{"prompt": input, "completion": correction}``, each pair once) as JSONL into the
    object store and request its import as the dataset's next version (``dataset.import.requested``). The same
    content for the same dataset has the same import id, so exporting again makes no second version."""
    rows = await queries.corrections(session, project, model_version_id=model_version_id, run_id=run_id, since=since)
    filters = {"run_id": run_id, "model_version_id": model_version_id, "since": since}
    # A 422 names the narrowest filter given (the dataset when there is none).
    field = next((name for name, value in filters.items() if value is not None), "dataset")
    if not rows:
        raise unprocessable("no feedback with a correction matches", field)
    inputs = await _inputs_from_artifacts(session, runtime, project, rows)
    pairs: dict[tuple[str, str], None] = {}
    skipped = 0
    for row in rows:
        prompt = row.input if row.input is not None else inputs.get((row.run_id, row.example_index))
        if prompt is None:
            skipped += 1
            continue
        pairs[(prompt, row.correction)] = None
    if not pairs:
        raise unprocessable("no correction has an input (give input with the feedback)", field)
    content = b"".join(
        orjson.dumps({"prompt": p, "completion": c}, option=orjson.OPT_SORT_KEYS) + b"\n" for p, c in pairs
    )
    assert runtime.store is not None  # the service always has its store
    stored = await runtime.store.put_bytes(content, content_type="application/x-ndjson")
    import_id = "feedback-" + str(uuid.uuid5(KEY_NAMESPACE, "\n".join((project, dataset, stored.sha256))))
    request = DatasetImportRequested(
        import_id=import_id,
        project=project,
        dataset=dataset,
        format="instruction",
        uri=stored.uri,
        sha256=stored.sha256,
        file_type="jsonl",
        description="corrections from human feedback",
        requested_by=actor.subject,
    )
    await add_to_outbox(session, runtime.event(request, subject=dataset, actor=actor, project=project))
    return Export(import_id, len(pairs), stored.sha256, stored.uri, skipped)
