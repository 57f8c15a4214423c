"""Traces across processes' boundaries, in process: the API request (the real Django stack), the
worker's send and engine call, and the webhook delivery to a real HTTP receiver share one trace,
linked through the context stored with the message and outbox rows (gateway/core/tracing.py);
and with tracing off, nothing is stored or sent."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from opentelemetry.trace import SpanKind

from gateway.core import tracing
from gateway.outbox import endpoints
from gateway.outbox.models import Event, WebhookDelivery
from messaging.models import Message
from tests.workers.runtime.test_endpoints import endpoint_for
from tests.workers.runtime.test_messages import TO, post
from tests.workers.runtime.test_runtime import linked, until
from tests.workers.runtime.test_webhooks import Receiver

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
DJANGO = "opentelemetry.instrumentation.django"
INSTRUMENTATIONS = {
    f"opentelemetry.instrumentation.{name}"
    for name in ("django", "psycopg", "redis", "aiohttp_client")
}


@pytest.fixture(autouse=True)
def _local_and_unpaced(local_endpoints, settings) -> None:
    settings.SEND_INTERVAL_MIN_SECONDS = settings.SEND_INTERVAL_MAX_SECONDS = 0
    settings.SEND_MAX_PER_MINUTE = 0


@pytest.fixture
def receiver():
    receiver = Receiver(endpoints.new_secret())
    yield receiver
    receiver.close()


def delivered(receiver: Receiver, message_id: str) -> tuple[dict, dict] | None:
    """The `message.status` webhook that says `delivered` for `message_id`, once received."""
    for headers, body in receiver.received:
        if body["message"]["id"] == message_id and body["message"]["status"] == "delivered":
            return headers, body
    return None


def hex_ids(span_context) -> tuple[str, str]:
    return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"


async def test_one_trace_from_the_api_request_to_the_delivered_webhook(
    spans, start_worker, api, receiver
) -> None:
    # The worker and its tasks (sender, dispatcher) start before the request: they have no
    # context of it to inherit, so only the stored rows can link them to its trace.
    runtime = await start_worker()
    session = await linked(runtime)
    await sync_to_async(endpoint_for)(receiver, events=["message.status"])
    response = await post(api, session, {"to": TO, "type": "text", "text": "traced"})
    assert response.status_code == 202, response.json()
    message_id = response.json()["id"]
    headers, body = await until(lambda: delivered(receiver, message_id), what="delivered webhook")
    event_id = body["id"]

    def delivery_span(finished, event_id: str):
        return next(
            (
                s
                for s in finished
                if s.name == "deliver message.status"
                and s.attributes["gateway.event.id"] == event_id
            ),
            None,
        )

    # The delivery's span ends once the outcome is recorded, just after the receiver answered.
    await until(lambda: delivery_span(spans.get_finished_spans(), event_id), what="its span")
    finished = spans.get_finished_spans()

    [request] = [s for s in finished if s.instrumentation_scope.name == DJANGO]
    assert request.kind == SpanKind.SERVER and request.attributes["http.method"] == "POST"
    trace_id, request_span_id = hex_ids(request.context)
    flags = f"{request.context.trace_flags:02x}"  # sampled (and the trace id is random)

    # The message row stored the request's span as the send's parent.
    row = await sync_to_async(Message.objects.get)(pk=message_id)
    assert row.trace_context == f"00-{trace_id}-{request_span_id}-{flags}"

    # The worker's send: a child of that stored context (remote: read from the row, not a
    # span of this task), and the engine call inside it.
    [send] = [s for s in finished if s.name == "message send"]
    assert send.attributes["gateway.message.id"] == message_id
    assert send.parent is not None and send.parent.is_remote
    assert hex_ids(send.parent) == (trace_id, request_span_id)
    [engine] = [s for s in finished if s.name == "engine send"]
    assert engine.parent.span_id == send.context.span_id and engine.kind == SpanKind.CLIENT
    assert engine.attributes["gateway.engine"] == "sandbox"

    # Every status event of the message went out in that trace: `sent` as a child of the send
    # (written inside it), the receipt's `delivered` as one of the request (the message's
    # stored context: no span is current where receipts are applied).
    statuses = {
        d.payload["message"]["status"]: d
        for d in await sync_to_async(list)(
            WebhookDelivery.objects.filter(event_type="message.status")
        )
        if d.payload["message"]["id"] == message_id
    }
    assert {"sending", "sent", "delivered"} <= set(statuses)
    sent = await until(
        lambda: delivery_span(spans.get_finished_spans(), str(statuses["sent"].event_id)),
        what="the sent event's delivery span",
    )
    assert sent.parent.is_remote and sent.parent.span_id == send.context.span_id
    delivery = delivery_span(finished, event_id)
    assert delivery.parent.is_remote and hex_ids(delivery.parent) == (trace_id, request_span_id)
    assert delivery.kind == SpanKind.PRODUCER
    assert statuses["delivered"].trace_context == row.trace_context
    event_row = await sync_to_async(Event.objects.get)(event_id=event_id)
    assert event_row.trace_context == row.trace_context

    # The receiver got the trace: aiohttp's client span under the delivery's, in the header.
    version, header_trace, header_span, header_flags = headers["traceparent"].split("-")
    assert (version, header_trace, header_flags) == ("00", trace_id, flags)
    [client] = [s for s in finished if f"{s.context.span_id:016x}" == header_span]
    assert client.kind == SpanKind.CLIENT and client.parent.span_id == delivery.context.span_id

    # One trace throughout, with a span of each instrumentation in it.
    in_trace = [s for s in finished if s.context.trace_id == request.context.trace_id]
    assert {request, send, engine, delivery, client} <= set(in_trace)
    assert INSTRUMENTATIONS <= {s.instrumentation_scope.name for s in in_trace}


async def test_an_engine_call_from_the_api_joins_the_request_s_trace(
    spans, start_worker, api
) -> None:
    runtime = await start_worker()
    session = await linked(runtime)
    response = await sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/check-numbers",
        {"phone_numbers": ["+4915100000003"]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    finished = spans.get_finished_spans()
    [request] = [s for s in finished if s.instrumentation_scope.name == DJANGO]
    [call] = [s for s in finished if s.name == "engine check_numbers"]
    assert call.parent.is_remote and call.parent.span_id == request.context.span_id
    assert call.context.trace_id == request.context.trace_id and call.kind == SpanKind.SERVER


async def test_with_tracing_off_nothing_is_stored_or_sent(start_worker, api, receiver) -> None:
    assert not tracing.enabled()
    runtime = await start_worker()
    session = await linked(runtime)
    await sync_to_async(endpoint_for)(receiver, events=["message.status"])
    response = await post(api, session, {"to": TO, "type": "text", "text": "untraced"})
    assert response.status_code == 202, response.json()
    message_id = response.json()["id"]
    headers, _ = await until(lambda: delivered(receiver, message_id), what="delivered webhook")
    assert "traceparent" not in headers and "tracestate" not in headers
    assert (await sync_to_async(Message.objects.get)(pk=message_id)).trace_context == ""
    contexts = await sync_to_async(
        lambda: (
            set(Event.objects.values_list("trace_context", flat=True))
            | set(WebhookDelivery.objects.values_list("trace_context", flat=True))
        )
    )()
    assert contexts == {""}
