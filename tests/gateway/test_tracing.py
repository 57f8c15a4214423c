"""Tracing's floor (gateway/core/tracing.py): off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (then
nothing is set up at all), the stored trace context and the spans started from it, and the trace
ids on log lines."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from gateway.core import tracing
from gateway.core.logging import ContextFilter, RedactingJsonFormatter
from tests.gateway.test_settings import GATEWAY_VARS, ROOT

# What gunicorn does (imports the WSGI application), one request through it, then what is set up.
PROBE = """
import json, sys
import gateway.wsgi
from django.conf import settings
from django.test import Client
Client().get("/health", HTTP_HOST="localhost")
sdk = "opentelemetry.sdk" in sys.modules  # before the instrumentations are imported to ask them
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from gateway.core import tracing
print(json.dumps({
    "sdk": sdk,
    "enabled": tracing.enabled(),
    "provider": type(trace.get_tracer_provider()).__name__,
    "instrumented": [
        i().is_instrumented_by_opentelemetry
        for i in (DjangoInstrumentor, PsycopgInstrumentor, RedisInstrumentor,
                  AioHttpClientInstrumentor)
    ],
    "middleware": [m for m in settings.MIDDLEWARE if "opentelemetry" in m],
}))
"""


class Collector:
    """An OTLP/HTTP collector on loopback: keeps the spans of every export it is sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict, object]] = []  # (resource attributes, span)
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest()
                request.ParseFromString(self.rfile.read(int(self.headers["content-length"])))
                for resource_spans in request.resource_spans:
                    resource = {
                        a.key: a.value.string_value for a in resource_spans.resource.attributes
                    }
                    for scope_spans in resource_spans.scope_spans:
                        collector.spans += [(resource, span) for span in scope_spans.spans]
                collector.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def probe(tmp_path, **variables: str) -> dict:
    environment = {k: v for k, v in os.environ.items() if k not in GATEWAY_VARS}
    environment.update(GATEWAY_VAR_DIR=str(tmp_path / "var"), **variables)
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_without_an_endpoint_nothing_is_set_up(tmp_path) -> None:
    off = probe(tmp_path)
    assert off == {
        "sdk": False,
        "enabled": False,
        "provider": "ProxyTracerProvider",
        "instrumented": [False, False, False, False],
        "middleware": [],
    }


def test_with_an_endpoint_requests_are_exported_over_otlp_http(tmp_path) -> None:
    collector = Collector()
    try:
        on = probe(
            tmp_path,
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
            OTEL_PYTHON_DJANGO_EXCLUDED_URLS="/nothing",  # /health is left out by default
        )
    finally:
        collector.close()  # the process flushed its spans as it exited
    assert on["sdk"] and on["enabled"] and on["provider"] == "TracerProvider"
    assert on["instrumented"] == [True, True, True, True] and len(on["middleware"]) == 1
    assert collector.paths == ["/v1/traces"]
    [(resource, span)] = collector.spans
    assert resource["service.name"] == "whatsapp-gateway"
    assert span.name == "GET health" and span.kind == span.SPAN_KIND_SERVER


def test_off_stores_nothing_and_starts_no_span() -> None:
    assert not tracing.enabled()
    with tracing.span("work") as span:
        assert span is None
        assert tracing.context() == "" and tracing.headers() == {}
        assert tracing.context(otherwise="00-" + "1" * 32 + "-" + "2" * 16 + "-01") == ""


def test_a_stored_context_parents_the_span_started_from_it(spans) -> None:
    caller = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "opaque value")]),
    )
    with trace.use_span(NonRecordingSpan(caller)):
        stored = tracing.context()
    assert stored == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 vendor=opaque value"

    with tracing.span("outer"), tracing.span("from the row", stored=stored) as child:
        assert child is not None
        assert tracing.headers()["traceparent"].startswith("00-0af7651916cd43dd8448eb211c80319c-")
        assert tracing.headers()["tracestate"] == "vendor=opaque value"
    [row_child, outer] = spans.get_finished_spans()
    assert row_child.parent == caller  # the row's context, not the span that was current
    assert outer.parent is None

    with tracing.span("outer"), tracing.span("a row without one", stored=""):
        pass
    root = spans.get_finished_spans()[2]
    assert root.parent is None and root.context.trace_id != caller.trace_id  # a new trace

    # A current span wins over what caused it; with none, the cause's is kept.
    assert tracing.context(otherwise=stored) == stored
    with tracing.span("current") as current:
        assert tracing.context(otherwise=stored).split("-")[2] == (
            f"{current.get_span_context().span_id:016x}"
        )


def test_log_lines_carry_the_current_trace_and_span_ids(spans) -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(ContextFilter())
    handler.setFormatter(RedactingJsonFormatter())
    logger = logging.getLogger("tests.tracing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("outside")
        with tracing.span("work") as span:
            logger.info("inside")
    finally:
        logger.removeHandler(handler)
    outside, inside = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert "trace_id" not in outside and "span_id" not in outside
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"


def test_log_lines_carry_no_ids_with_tracing_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), tracing.span("work"):
        logging.getLogger("tests.tracing").info("off")
    [record] = caplog.records
    assert not hasattr(record, "trace_id") and not hasattr(record, "span_id")
