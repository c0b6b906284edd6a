"""Traces across hops with OpenTelemetry: an HTTP request, the events it writes to the outbox, the consumers and
workers that handle them, and the events those write in turn, form one trace.

The context travels in the event envelope's ``traceparent`` (W3C trace context, CloudEvents' distributed-tracing
extension): :func:`stamp` sets it on events written while a span is current (``add_to_outbox`` calls it), and
:func:`consuming` opens a consumer span whose parent is the event's ``traceparent``. Over HTTP the ``traceparent``
header carries it (:class:`TracingMiddleware` for servers, :func:`inject` for outgoing calls).

Nothing is recorded unless a process calls :func:`configure_tracing` with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set: spans are then exported by OTLP over HTTP in batches, off the request
path, to any collector (Jaeger, Tempo, an OpenTelemetry Collector). Without it, OpenTelemetry's API is a no-op and an
event's ``traceparent`` is left as its publisher set it. The standard ``OTEL_*`` variables (service name, batch
delay, sampler) apply.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_configured: str | None = None


def tracer() -> trace.Tracer:
    return trace.get_tracer("llmops")


def configure_tracing(service_name: str) -> bool:
    """Export this process's spans by OTLP/HTTP as ``service_name`` (``OTEL_SERVICE_NAME`` wins) when an OTLP
    endpoint is set; returns whether it does. Once per process (the first name stays)."""
    global _configured
    if _configured is not None:
        return True
    if not any(os.environ.get(name) for name in _ENDPOINT_VARIABLES):
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = name
    return True


def enabled() -> bool:
    """Whether this process records spans (:func:`configure_tracing` found an endpoint)."""
    return _configured is not None


def flush(timeout_millis: int = 5000) -> None:
    """Export the spans still buffered (a process about to end; the SDK also does it at exit)."""
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush(timeout_millis)


def current_traceparent() -> str | None:
    """The ``traceparent`` of the current span, or None when no span is recording."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def stamp(events: Any) -> list[Any]:
    """``events`` with the current ``traceparent`` set on those that carry none (the others as they are)."""
    traceparent = current_traceparent() if _configured is not None else None
    if traceparent is None:
        return list(events)
    return [e if e.traceparent else e.model_copy(update={"traceparent": traceparent}) for e in events]


def inject(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with the current ``traceparent`` added (an outgoing HTTP call continues the trace)."""
    _PROPAGATOR.inject(headers)
    return headers


def context_of(traceparent: str | None) -> Context | None:
    return _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None


@contextmanager
def consuming(event: Any, *, consumer: str, topic: str | None = None) -> Iterator[trace.Span]:
    """A consumer span for handling ``event``, a child of the span that wrote it (its ``traceparent``); nothing
    at all (not even a no-op span) in a process that does not record."""
    if _configured is None:
        yield trace.INVALID_SPAN
        return
    attributes = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.consumer.group.name": consumer,
        "cloudevents.event_id": str(event.id),
        "cloudevents.event_type": event.type,
    }
    if topic:
        attributes["messaging.destination.name"] = topic
    with tracer().start_as_current_span(
        f"process {event.type}", context=context_of(event.traceparent), kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


def started_span(name: str, *, parent: str | None = None, **attributes: Any) -> trace.Span:
    """A span of the trace ``parent`` names, started now and ended by whoever holds it (``span.end()``), for work
    that outlives the block that begins it; make it current with ``trace.use_span(span, end_on_exit=False)``. The
    invalid span (whose ``end`` does nothing) in a process that does not record. ``within(span)`` makes it the
    current span of a block."""
    if _configured is None:
        return trace.INVALID_SPAN
    return tracer().start_span(name, context=context_of(parent), attributes=attributes)


def end_once(span: trace.Span) -> None:
    """End ``span`` unless it has ended already (OpenTelemetry warns at a second end)."""
    if span.is_recording():
        span.end()


def within(span: trace.Span):
    """A block in which ``span`` (of :func:`started_span`) is current, left without ending it: tasks created there
    and events written there belong to it."""
    return trace.use_span(span, end_on_exit=False)


@contextmanager
def span(
    name: str, *, parent: str | None = None, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any
) -> Iterator[trace.Span]:
    """A span of the current trace, or of the trace ``parent`` (a ``traceparent`` kept with a row a worker claims)
    names; nothing in a process that does not record."""
    if _configured is None:
        yield trace.INVALID_SPAN
        return
    with tracer().start_as_current_span(name, context=context_of(parent), kind=kind, attributes=attributes) as current:
        yield current


class TracingMiddleware:
    """ASGI middleware: a server span per HTTP request, continuing the caller's ``traceparent`` header; named after
    the matched route's template once routing has run (``POST /projects/{project}/deployments``)."""

    def __init__(self, app: Any, *, skip: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.skip = skip

    async def __call__(self, scope: Mapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in self.skip:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"traceparent"}
        parent = _PROPAGATOR.extract(headers) if headers else None
        method = scope.get("method", "GET")
        status: list[int] = []

        async def sending(message: Mapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        with tracer().start_as_current_span(
            f"{method} {scope.get('path', '')}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope.get("path", "")},
        ) as current:
            try:
                await self.app(scope, receive, sending)
            finally:
                route = scope.get("route")
                if route is not None and getattr(route, "path", None):
                    current.update_name(f"{method} {route.path}")
                    current.set_attribute("http.route", route.path)
                if status:
                    current.set_attribute("http.response.status_code", status[0])
                    if status[0] >= 500:
                        current.set_status(Status(StatusCode.ERROR))


__all__ = [
    "TracingMiddleware",
    "configure_tracing",
    "consuming",
    "context_of",
    "current_traceparent",
    "enabled",
    "flush",
    "inject",
    "span",
    "stamp",
    "tracer",
]
