"""Feedback in the metrics: a rating (1 to 5; a thumb without one counts as 5 up, 1 down) is counted in the minute
and hour buckets of the feedback's time, under the dimensions of the request it is about (found in the request
index while the minute buckets live), else under the model version it names.

Feedback and the record it is about travel on different topics, read by different consumers: feedback may come
first (the records consumer lags, or the record's batch was dead-lettered and is replayed later). Such feedback
waits in ``pending_feedback`` and is counted by :func:`settle` once the record is indexed (in the ingest's
transaction, or at a maintenance pass for one that raced it), or, after ``feedback_wait_seconds``, under its model
version; each feedback is counted once either way (the pending row is deleted in the transaction that counts it).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from llmops.logging import get_logger
from llmops_monitoring import metrics_store, repository
from llmops_monitoring.metrics import RESOLUTIONS, Bucket, BucketKey, add_feedback
from llmops_monitoring.models import pending_feedback
from llmops_schemas import CloudEvent
from llmops_schemas.events import FeedbackSubmitted

log = get_logger(__name__)

THUMBS = {"up": 5, "down": 1}


async def count(session: AsyncSession, event: CloudEvent, v: FeedbackSubmitted) -> bool:
    """Count one feedback, or keep it until its request's record is ingested; False when it says nothing the metrics
    keep (no rating or thumb, nothing to attach to)."""
    rating = v.rating if v.rating is not None else THUMBS.get(v.thumb or "")
    if rating is None:
        return False
    if v.inference_id is not None:
        dimensions = await repository.request_dimensions(session, v.project, v.inference_id)
        if dimensions is None:
            await session.execute(
                insert(pending_feedback)
                .values(
                    event_id=event.id,
                    project=v.project,
                    request_id=v.inference_id,
                    rating=rating,
                    time=event.time,
                    model_version_id=v.model_version_id,
                )
                .on_conflict_do_nothing(index_elements=["event_id"])
            )
            return True
    elif v.model_version_id is not None:
        dimensions = {"model_version_id": v.model_version_id}
    else:
        return False
    buckets: dict[BucketKey, Bucket] = {}
    add(buckets, rating, event.time, v.project, dimensions)
    await metrics_store.merge_buckets(session, buckets)
    return True


def add(buckets: dict[BucketKey, Bucket], rating: int, at: datetime, project: str, dimensions: dict) -> None:
    """Add one rating to ``buckets``: minute and hour, of all users and of the request's user when there is one."""
    dimensions = dict(dimensions)
    users = {"", dimensions.pop("user", "") or ""}
    for resolution in RESOLUTIONS:
        for user in users:
            add_feedback(buckets, BucketKey(resolution, at, project=project, user=user, **dimensions), rating)


_SETTLE = text(
    "DELETE FROM pending_feedback p USING request_index r"
    " WHERE r.project = p.project AND r.request_id = p.request_id"
    ' RETURNING p.project, p.rating, p.time, r.route, r.deployment_id, r.model_version_id, r."user"'
)
_GIVE_UP = text(
    "DELETE FROM pending_feedback WHERE received_at < :before RETURNING project, rating, time, model_version_id"
)


async def settle(
    session: AsyncSession, buckets: dict[BucketKey, Bucket], *, give_up_before: datetime | None = None
) -> None:
    """Add to ``buckets`` the waiting feedback whose request is now indexed (and, with ``give_up_before``, the
    feedback that waited since before it: under its model version, or dropped without one), its rows deleted; the
    caller merges ``buckets`` in the same transaction."""
    for row in (await session.execute(_SETTLE)).all():
        dimensions = {"route": row.route, "deployment_id": row.deployment_id, "model_version_id": row.model_version_id}
        add(buckets, row.rating, row.time, row.project, dimensions | {"user": row.user})
    if give_up_before is not None:
        dropped = 0
        for row in (await session.execute(_GIVE_UP, {"before": give_up_before})).all():
            if row.model_version_id is None:
                dropped += 1
            else:
                add(buckets, row.rating, row.time, row.project, {"model_version_id": row.model_version_id})
        if dropped:
            log.warning("monitoring.feedback_dropped", count=dropped, reason="its request never arrived")
