"""Trace context across hops (llmops.tracing) without a collector: spans go to an in-memory exporter of this test's
own provider (the process's global provider is left alone), and a process that does not record changes nothing."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from llmops import tracing
from llmops_schemas import new_event

from .conftest import ThingHappened

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def thing(traceparent: str | None = None):
    return new_event(ThingHappened(sequence=1), subject="t", source="/tests", traceparent=traceparent)


@pytest.fixture
def recorded(monkeypatch) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_configured", "tests")
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer("llmops"))
    return exporter


def test_a_process_that_does_not_record_leaves_events_and_spans_alone():
    assert not tracing.enabled()
    events = [thing(), thing(CALLER)]
    assert tracing.stamp(events) == events
    with tracing.consuming(events[0], consumer="c") as span:
        assert not span.is_recording()
    with tracing.span("work", parent=CALLER) as span:
        assert not span.is_recording()
    assert tracing.current_traceparent() is None


def test_a_consumer_span_continues_the_event_and_stamps_what_it_writes(recorded):
    with tracing.consuming(thing(CALLER), consumer="monitoring", topic="llmops.things") as span:
        written = tracing.stamp([thing(), thing("00-" + "1" * 32 + "-" + "2" * 16 + "-01")])
        context = span.get_span_context()
    (finished,) = recorded.get_finished_spans()
    assert finished.name == "process tests.thing.happened" and finished.kind is SpanKind.CONSUMER
    assert format(finished.context.trace_id, "032x") == CALLER.split("-")[1], "the event's trace"
    assert format(finished.parent.span_id, "016x") == CALLER.split("-")[2], "a child of the writer's span"
    assert finished.attributes["messaging.consumer.group.name"] == "monitoring"
    assert finished.attributes["messaging.destination.name"] == "llmops.things"
    # what it writes carries its own span; an event that came with a context keeps it
    assert written[0].traceparent == f"00-{context.trace_id:032x}-{context.span_id:016x}-01"
    assert written[1].traceparent.startswith("00-" + "1" * 32)


def test_a_span_of_a_claimed_row_joins_the_trace_it_names(recorded):
    with tracing.span("serve replica", parent=CALLER, **{"llmops.deployment_id": "d1"}):
        pass
    (finished,) = recorded.get_finished_spans()
    assert format(finished.context.trace_id, "032x") == CALLER.split("-")[1]
    assert finished.attributes["llmops.deployment_id"] == "d1"


async def test_a_started_span_outlives_its_block_and_what_runs_within_it_is_its_child(recorded, caplog):
    started = tracing.started_span("serve replica", parent=CALLER, **{"llmops.deployment_id": "d1"})
    with tracing.within(started):
        task = asyncio.create_task(asyncio.sleep(0))  # a task created within it: its context holds the span
    await task
    assert recorded.get_finished_spans() == ()  # not ended by leaving the block
    with tracing.within(started), tracing.span("report"):
        pass
    tracing.end_once(started)
    tracing.end_once(started)  # a replica ready again after a restart: no second end
    assert "Calling end() on an ended span." not in caplog.text
    report, replica = recorded.get_finished_spans()
    assert (report.name, replica.name) == ("report", "serve replica")
    assert report.parent.span_id == replica.context.span_id
    assert format(replica.context.trace_id, "032x") == CALLER.split("-")[1]
    assert replica.end_time > replica.start_time


async def test_the_middleware_names_the_server_span_after_the_route_and_passes_the_trace_on(recorded):
    seen: list[str | None] = []

    async def item(request: Request) -> JSONResponse:
        seen.append(tracing.inject({}).get("traceparent"))
        return JSONResponse(
            {"id": request.path_params["item"]}, status_code=503 if request.path_params["item"] == "x" else 200
        )

    app = tracing.TracingMiddleware(Starlette(routes=[Route("/items/{item}", item)]), skip=frozenset({"/healthz"}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/items/7", headers={"traceparent": CALLER})).status_code == 200
        assert (await http.get("/items/x")).status_code == 503
        assert (await http.get("/healthz")).status_code == 404
    first, second = recorded.get_finished_spans()  # nothing for the skipped path
    assert first.name == "GET /items/{item}" and first.kind is SpanKind.SERVER
    assert first.attributes["http.route"] == "/items/{item}" and first.attributes["http.response.status_code"] == 200
    assert format(first.parent.span_id, "016x") == CALLER.split("-")[2], "the caller's trace continued"
    assert seen[0] == f"00-{first.context.trace_id:032x}-{first.context.span_id:016x}-01", "outgoing calls carry it"
    assert second.parent is None and not second.status.is_ok, "a new trace; a 5xx marks the span an error"
