"""Traces (OpenTelemetry), off unless OTEL_EXPORTER_OTLP_ENDPOINT (or its traces-only variant
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set.

`setup()` is called once where each process starts (gateway/wsgi.py, gateway/asgi.py, the
`run_worker`, `serve` and `deliver_webhooks` commands). With the endpoint unset it does nothing:
the SDK is never imported, no instrumentation is applied, and everything below costs one check of
a module variable. With it set, it installs a TracerProvider exporting over OTLP/HTTP (the
standard OTEL_* variables: OTEL_SERVICE_NAME, default `whatsapp-gateway`, headers, sampling…)
and OpenTelemetry's instrumentations of Django, psycopg, Redis and aiohttp's client (which puts a
`traceparent` header on every request it makes, webhooks included).

A trace crosses processes through the database: `context()` is the current span's W3C trace
context as one short string (`traceparent`, then a space and `tracestate` when there is one),
stored with each accepted message and each outbox row, and `span(…, stored=…)` starts a span as
the child of such a stored context (the worker's send, the webhook delivery), so they join the
trace of the API request that caused them. With tracing off nothing is stored, and nothing is
sent on: a row stored while tracing was on is delivered without a `traceparent` by a process
where it is off.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.util.types import AttributeValue

__all__ = ["SpanKind", "context", "enabled", "headers", "reset", "setup", "span"]

DEFAULT_SERVICE_NAME = "whatsapp-gateway"
# Either turns tracing on (the second is OpenTelemetry's variable for traces alone).
ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# Probes and scrapes every few seconds would drown the traces that matter.
EXCLUDED_URLS = "/health/,/metrics"
# A stored context: `traceparent` is 55 characters; a `tracestate` that would make it longer than
# this is left out (the trace still joins).
MAX_STORED = 600

_W3C = TraceContextTextMapPropagator()
_OFF: AbstractContextManager[None] = contextlib.nullcontext()
_tracer: trace.Tracer | None = None


def enabled() -> bool:
    return _tracer is not None


def _instrumentors() -> tuple:
    """OpenTelemetry's instrumentations: Django (one span per request), psycopg, Redis, aiohttp's
    client."""
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    return (
        DjangoInstrumentor(),
        PsycopgInstrumentor(),
        RedisInstrumentor(),
        AioHttpClientInstrumentor(),
    )


def setup(provider: trace.TracerProvider | None = None) -> bool:
    """Turn tracing on for this process, once (before Django loads its middleware: the Django
    instrumentation adds one). Without `provider`, only when an OTLP endpoint is set (`ENDPOINTS`):
    an SDK provider exporting over OTLP/HTTP in batches becomes the global one. Tests pass their
    own provider (an in-memory exporter), which is used as it is. Returns whether tracing is on."""
    global _tracer
    if _tracer is not None:
        return True
    if provider is None:
        if not any(os.environ.get(name) for name in ENDPOINTS):
            return False
        provider = _otlp_provider()
        trace.set_tracer_provider(provider)
    django, *others = _instrumentors()
    # The instrumentation's own variables, when set, say which URLs are not traced.
    own = os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") or os.environ.get(
        "OTEL_PYTHON_EXCLUDED_URLS"
    )
    django.instrument(tracer_provider=provider, excluded_urls=None if own else EXCLUDED_URLS)
    for instrumentor in others:
        instrumentor.instrument(tracer_provider=provider)
    _tracer = provider.get_tracer("whatsapp-gateway")
    return True


def _otlp_provider() -> trace.TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def reset() -> None:
    """Tracing off again (tests): the instrumentations removed, no more spans."""
    global _tracer
    if _tracer is None:
        return
    for instrumentor in _instrumentors():
        instrumentor.uninstrument()
    _tracer = None


def span(
    name: str,
    *,
    stored: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> AbstractContextManager[Span | None]:
    """A span around a block, current inside it (None when tracing is off). Its parent is the
    current span; with `stored` (a row's `context()`), that stored context instead, and a new
    trace when the row stored none."""
    if _tracer is None:
        return _OFF
    parent = None if stored is None else _W3C.extract(_carrier(stored))
    return _tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes)


def context(otherwise: str = "") -> str:
    """The current span's trace context to store with a row; `otherwise` (the stored context of
    what caused it) when no span is current; "" when tracing is off."""
    if _tracer is None:
        return ""
    carrier = headers()
    if not carrier:
        return otherwise
    stored = carrier["traceparent"]
    if "tracestate" in carrier and len(stored) + 1 + len(carrier["tracestate"]) <= MAX_STORED:
        stored += " " + carrier["tracestate"]
    return stored


def headers() -> dict[str, str]:
    """The current span's `traceparent` (and `tracestate`) headers, for a message that leaves
    (a broker's); none when tracing is off or no span is current."""
    if _tracer is None or not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier


def _carrier(stored: str) -> dict[str, str]:
    traceparent, _, tracestate = stored.partition(" ")
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return carrier
