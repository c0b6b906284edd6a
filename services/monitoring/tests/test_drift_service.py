"""Drift reports through the service: records of two windows published on Kafka, a report on request of the shifted
window against the stable one (drifted, the event published, HTML and JSON served, the numbers equal Evidently
run directly on the same records), scheduled reports that publish only after two drifted windows in a row, a window
with too few records skipped with its reason, and 422s naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from llmops.bus import outbox
from llmops_monitoring import drift_service, record_store, repository
from llmops_monitoring.drift import run_drift
from llmops_schemas import new_event, parse_payload
from llmops_schemas.events import DeploymentReady, DeploymentRequested

from . import events, traffic
from .conftest import ENGINEER, VIEWER, publish
from .ingest_support import wait_rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

HOUR = timedelta(hours=1)


async def deployed(service, deployment_id: str = "dep-1", *, ready_first: bool = False) -> None:
    """``deployment_id`` requested and ready in the service's projection (the ready event handled first when asked:
    a request dead-lettered and replayed after it)."""
    requested = new_event(
        DeploymentRequested(
            deployment_id=deployment_id,
            project="p1",
            name="assistant",
            pool="cpu",
            backend="external",
            requested_by="eve",
        ),
        subject=deployment_id,
        source="/llmops/deployment",
        project="p1",
    )
    ready = new_event(
        DeploymentReady(
            deployment_id=deployment_id,
            project="p1",
            replica=0,
            endpoint="http://127.0.0.1:9/v1",
            backend="external",
            served_model="assistant",
            worker="w1",
            attempt=1,
        ),
        subject=deployment_id,
        source="/llmops/deployment",
        project="p1",
    )
    handlers = [(requested, repository.deployment_requested), (ready, repository.deployment_status)]
    async with service.runtime.db.transaction() as session:
        for event, handler in reversed(handlers) if ready_first else handlers:
            await handler(session, event, parse_payload(event))


async def outbox_events(service, event_type: str) -> list[dict]:
    import json

    async with service.runtime.db.sessions() as session:
        payloads = (await session.execute(select(outbox.c.payload).order_by(outbox.c.id))).scalars()
    return [e for e in (json.loads(p) for p in payloads) if e["type"] == event_type]


async def test_a_shifted_window_drifts_and_the_report_is_served(client, monitoring, records_topic):
    await deployed(monitoring)
    now = datetime.now(UTC).replace(microsecond=0)
    stable = traffic.records(600, seed=1, start=now - 2 * HOUR, minutes=59)
    shifted = traffic.records(600, seed=2, start=now - HOUR, minutes=59, shift=traffic.ALL_SHIFTS)
    sent = [events.from_record(r, deployment_id="dep-1") for r in stable + shifted]
    await publish(records_topic, [e.to_bytes() for e in sent])
    await wait_rows(monitoring, len(sent))

    body = {"deployment_id": "dep-1", "start": (now - HOUR).isoformat(), "end": now.isoformat()}
    answer = await client.post("/projects/p1/monitoring/drift", json=body, headers=ENGINEER)
    assert answer.status_code == 201, answer.text
    report = answer.json()
    assert report["status"] == "done" and report["drifted"] and report["current_rows"] == 600
    assert report["reference_start"].startswith((now - 2 * HOUR).isoformat()[:16])
    [detected] = await outbox_events(monitoring, "monitoring.drift.detected")
    assert detected["data"]["report_id"] == report["id"] and detected["subject"] == "dep-1"

    html = await client.get(f"/projects/p1/monitoring/drift/{report['id']}/html", headers=VIEWER)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html") and b"<html" in html.content
    stored = await client.get(f"/projects/p1/monitoring/drift/{report['id']}/json", headers=VIEWER)
    assert stored.status_code == 200 and "metrics" in stored.json()
    listed = (await client.get("/projects/p1/monitoring/drift?deployment_id=dep-1", headers=VIEWER)).json()
    assert [r["id"] for r in listed["reports"]] == [report["id"]]

    # The stored numbers are Evidently's on the same records, run directly
    read = dict(project="p1", deployment_id="dep-1")
    db, store = monitoring.runtime.db, monitoring.store
    current = (await record_store.read_table(db, store, now - HOUR, now, **read)).to_pylist()
    reference = (await record_store.read_table(db, store, now - 2 * HOUR, now - HOUR, **read)).to_pylist()
    direct = run_drift(current, reference, monitoring.settings.drift, seed=0)
    assert report["drifted_share"] == direct.drifted_share
    assert {c["column"]: c["score"] for c in report["columns"]} == {c.column: c.score for c in direct.columns}


async def test_scheduled_reports_publish_after_two_drifted_windows_in_a_row(monitoring, records_topic):
    await deployed(monitoring)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    windows = [end - (4 - i) * HOUR for i in range(4)]  # reference, stable, shifted, shifted
    sent = []
    for i, start in enumerate(windows):
        shift = traffic.ALL_SHIFTS if i >= 2 else None
        sent += [
            events.from_record(r, deployment_id="dep-1")
            for r in traffic.records(300, seed=10 + i, start=start, minutes=59, shift=shift)
        ]
    await publish(records_topic, [e.to_bytes() for e in sent])
    await wait_rows(monitoring, len(sent))
    async with monitoring.runtime.db.transaction() as session:  # every scheduled report against the first window
        from sqlalchemy.dialects.postgresql import insert

        from llmops_monitoring.models import drift_baselines

        await session.execute(
            insert(drift_baselines).values(
                deployment_id="dep-1", project="p1", start=windows[0], end=windows[0] + HOUR, pinned_by="eve"
            )
        )
    made = []
    for start in windows[1:]:
        made.append(
            await drift_service.scheduled_pass(
                monitoring.runtime, monitoring.store, monitoring.settings, now=start + HOUR + timedelta(seconds=5)
            )
        )
        assert (
            await drift_service.scheduled_pass(
                monitoring.runtime, monitoring.store, monitoring.settings, now=start + HOUR + timedelta(seconds=9)
            )
            == 0
        )  # the same window again: nothing more
    assert made == [1, 1, 1]
    detected = await outbox_events(monitoring, "monitoring.drift.detected")
    assert len(detected) == 1
    assert detected[0]["data"]["current_window"]["start"].startswith(windows[3].isoformat()[:16])


async def test_a_window_with_too_few_records_is_skipped_with_its_reason(client, monitoring, records_topic):
    await deployed(monitoring)
    await publish(records_topic, [events.completed(deployment_id="dep-1").to_bytes() for _ in range(5)])
    await wait_rows(monitoring, 5)
    answer = await client.post("/projects/p1/monitoring/drift", json={"deployment_id": "dep-1"}, headers=ENGINEER)
    assert answer.status_code == 201
    assert answer.json()["status"] == "skipped" and "at least 200" in answer.json()["reason"]
    assert (
        await client.get(f"/projects/p1/monitoring/drift/{answer.json()['id']}/html", headers=VIEWER)
    ).status_code == 409


class TestBadInput:
    async def test_an_unknown_deployment_is_422_naming_it(self, client, monitoring):
        answer = await client.post("/projects/p1/monitoring/drift", json={"deployment_id": "nope"}, headers=ENGINEER)
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "deployment_id"

    async def test_a_window_older_than_the_retention_is_422_naming_start(self, client, monitoring):
        await deployed(monitoring)
        old = (datetime.now(UTC) - timedelta(days=365)).isoformat()
        body = {"deployment_id": "dep-1", "start": old}
        answer = await client.post("/projects/p1/monitoring/drift", json=body, headers=ENGINEER)
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "start"

    async def test_viewers_may_read_but_not_run_reports(self, client, monitoring):
        await deployed(monitoring)
        answer = await client.post("/projects/p1/monitoring/drift", json={"deployment_id": "dep-1"}, headers=VIEWER)
        assert answer.status_code == 403


async def test_a_report_keeps_its_snapshot_and_one_made_before_serves_its_stored_html(client, monitoring):
    import uuid

    from llmops_monitoring.models import drift_reports

    now = datetime.now(UTC).replace(microsecond=0)
    store = monitoring.store
    made_before = {
        "id": str(uuid.uuid4()),
        "project": "p1",
        "deployment_id": "dep-1",
        "trigger": "request",
        "reference": "window",
        "current_start": now - HOUR,
        "current_end": now,
        "status": "done",
        "requested_by": "eve",
        "html_key": f"{monitoring.settings.reports_prefix}/old/report.html",
    }
    await store.put_named(made_before["html_key"], b"<html>as it was stored</html>", content_type="text/html")
    async with monitoring.runtime.db.transaction() as session:
        await session.execute(drift_reports.insert().values(**made_before))
    html = await client.get(f"/projects/p1/monitoring/drift/{made_before['id']}/html", headers=VIEWER)
    assert html.status_code == 200 and html.content == b"<html>as it was stored</html>"

    # a new report stores Evidently's snapshot (compressed), a small part of the HTML rendered from it
    await deployed(monitoring)
    stable = traffic.records(300, seed=1, start=now - 2 * HOUR, minutes=59)
    shifted = traffic.records(300, seed=2, start=now - HOUR, minutes=59, shift=traffic.ALL_SHIFTS)
    for window in (stable, shifted):
        for record in window:
            record["project"] = "p1"
        files = await record_store.stage(store, monitoring.settings.records_prefix, window)
        async with monitoring.runtime.db.transaction() as session:
            await record_store.register(session, files)
    request = drift_service.DriftRequest(
        "p1", "dep-1", now - HOUR, now, "request", "eve", reference_start=now - 2 * HOUR, reference_end=now - HOUR
    )
    settings = monitoring.settings
    row = await drift_service.run_report(monitoring.runtime, store, settings, settings.drift, request)
    assert row["status"] == "done" and row.get("html_key") is None
    snapshot = await store.get_named(row["snapshot_key"])
    html = await client.get(f"/projects/p1/monitoring/drift/{row['id']}/html", headers=VIEWER)
    assert html.status_code == 200 and b"<html" in html.content[:300].lower()
    assert len(snapshot) * 5 < len(html.content)


async def test_two_replicas_make_one_scheduled_report_and_a_stale_claim_is_taken_over(monitoring):
    import asyncio

    from sqlalchemy import func

    from llmops_monitoring.models import drift_reports

    await deployed(monitoring)
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    for i, start in enumerate((end - 2 * HOUR, end - HOUR)):
        window = traffic.records(250, seed=20 + i, start=start, minutes=59)
        for record in window:
            record["project"] = "p1"
        files = await record_store.stage(monitoring.store, monitoring.settings.records_prefix, window)
        async with monitoring.runtime.db.transaction() as session:
            await record_store.register(session, files)
    passes = [
        drift_service.scheduled_pass(
            monitoring.runtime, monitoring.store, monitoring.settings, now=end + timedelta(seconds=5)
        )
        for _ in range(2)
    ]
    assert sorted(await asyncio.gather(*passes)) == [0, 1]  # the second replica found the window claimed
    async with monitoring.runtime.db.sessions() as session:
        rows = await session.execute(select(drift_reports.c.status, func.count()).group_by(drift_reports.c.status))
        assert dict(rows.all()) == {"done": 1}

    # a replica that died mid-report leaves its claim running: taken over once stale, not before
    db, earlier = monitoring.runtime.db, end - HOUR
    claim = await drift_service.claim_window(db, "p1", "dep-1", earlier - HOUR, earlier, stale_after=HOUR)
    assert claim is not None
    assert await drift_service.claim_window(db, "p1", "dep-1", earlier - HOUR, earlier, stale_after=HOUR) is None
    taken = await drift_service.claim_window(db, "p1", "dep-1", earlier - HOUR, earlier, stale_after=timedelta(0))
    assert taken == claim


async def test_reports_past_their_retention_are_removed_with_their_objects(monitoring):
    import uuid

    from llmops_monitoring.models import drift_reports

    now = datetime.now(UTC)
    store, prefix = monitoring.store, monitoring.settings.reports_prefix
    rows = []
    for age in (timedelta(days=100), timedelta(days=1)):
        report_id = str(uuid.uuid4())
        keys = {"json_key": f"{prefix}/dep-1/{report_id}.json", "snapshot_key": f"{prefix}/dep-1/{report_id}.gz"}
        for key in keys.values():
            await store.put_named(key, b"{}")
        rows.append({"id": report_id, **keys})
        async with monitoring.runtime.db.transaction() as session:
            await session.execute(
                drift_reports.insert().values(
                    id=report_id,
                    project="p1",
                    deployment_id="dep-1",
                    trigger="request",
                    reference="window",
                    current_start=now - age - HOUR,
                    current_end=now - age,
                    status="done",
                    requested_by="eve",
                    created_at=now - age,
                    **keys,
                )
            )
    removed = await drift_service.drop_reports_before(monitoring.runtime.db, store, now - timedelta(days=90))
    assert removed == 1
    async with monitoring.runtime.db.sessions() as session:
        kept = set((await session.execute(select(drift_reports.c.id))).scalars())
    assert kept == {rows[1]["id"]}
    listed = {key for key, _, _ in await store.list_named(f"{prefix}/dep-1/")}
    assert listed == {rows[1]["json_key"], rows[1]["snapshot_key"]}
