"""Feedback in the metrics: a rating (1 to 5; a thumb without one counts as 5 up, 1 down) is counted in the minute
and hour buckets of the feedback's time, under the dimensions of the request it is about (found in the request
index while the minute buckets live), else under the model version it names."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from llmops_monitoring import metrics_store, repository
from llmops_monitoring.metrics import RESOLUTIONS, Bucket, BucketKey
from llmops_schemas import CloudEvent
from llmops_schemas.events import FeedbackSubmitted

THUMBS = {"up": 5, "down": 1}


async def count(session: AsyncSession, event: CloudEvent, v: FeedbackSubmitted) -> bool:
    """Count one feedback; False when it says nothing the metrics keep (no rating or thumb, nothing to attach to)."""
    rating = v.rating if v.rating is not None else THUMBS.get(v.thumb or "")
    if rating is None:
        return False
    dimensions = None
    if v.inference_id is not None:
        dimensions = await repository.request_dimensions(session, v.project, v.inference_id)
    if dimensions is None:
        if v.model_version_id is None:
            return False
        dimensions = {"model_version_id": v.model_version_id}
    buckets = {}
    users = {"", dimensions.pop("user", "")}  # the buckets of all users, and the user's own when there is one
    for resolution in RESOLUTIONS:
        for user in users:
            bucket = Bucket()
            bucket.add_feedback(rating)
            buckets[BucketKey(resolution, event.time, project=v.project, user=user, **dimensions)] = bucket
    await metrics_store.merge_buckets(session, buckets)
    return True
