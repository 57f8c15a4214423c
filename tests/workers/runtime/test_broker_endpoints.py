"""Broker endpoints delivered by the dispatcher, end to end on the real servers: NATS JetStream and
RabbitMQ consumers see every event once after dedupe on the event id, in order per session, and
a broker restarted in the middle of a burst loses nothing."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

import aio_pika
import pytest
from asgiref.sync import sync_to_async

from gateway.outbox import endpoints
from gateway.outbox.models import WebhookDelivery
from tests.gateway.test_brokers import (
    AMQP_URL,
    NATS_URL,
    amqp_channel,
    jetstream,
    stream_messages,
    unique,
)
from tests.workers.runtime.test_runtime import until
from tests.workers.runtime.test_webhooks import produce, sessions

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _local(local_endpoints, settings):
    settings.WEBHOOK_BREAKER_COOL_DOWN_SECONDS = 1
    settings.BROKER_TIMEOUT_SECONDS = 3


def in_order_once(bodies: list[dict], per_session: int) -> None:
    """Every session's events exactly once (after dedupe on the id) and in sequence order."""
    seen: dict[str, list[int]] = defaultdict(list)
    ids = set()
    for body in bodies:
        if body["id"] in ids:
            continue
        ids.add(body["id"])
        seen[body["session"]["id"]].append(body["sequence"])
    for sequences in seen.values():
        assert sequences == sorted(sequences) and len(sequences) == per_session


def all_delivered(count: int) -> bool:
    return WebhookDelivery.objects.filter(status="delivered").count() == count


async def test_nats_gets_every_event_with_its_id_in_order(dispatch) -> None:
    stream, prefix = unique("GWT"), unique("gwt")
    await sync_to_async(endpoints.endpoint_create)(
        url=NATS_URL, stream=stream, subject=f"{prefix}.{{session}}.{{event}}"
    )
    made = await sync_to_async(sessions)(3)
    await sync_to_async(produce)(made, 10)
    await dispatch()
    await until(lambda: all_delivered(30), timeout=30, what="30 published")
    async with jetstream() as js:
        try:
            messages = await stream_messages(js, stream)
        finally:
            await js.delete_stream(stream)
    bodies = [json.loads(m.data) for m in messages]
    assert len(bodies) == 30
    in_order_once(bodies, 10)
    for message, body in zip(messages, bodies, strict=True):
        assert message.headers["Nats-Msg-Id"] == body["id"]
        assert message.subject == f"{prefix}.{body['session']['id']}.test.event"


async def test_rabbitmq_gets_every_event_persistent_with_its_id_in_order(dispatch) -> None:
    exchange_name, prefix = unique("gwt-x-"), unique("gwt")
    connection = await aio_pika.connect(AMQP_URL, timeout=5)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(unique("gwt-q-"), exclusive=True)
        await queue.bind(exchange, routing_key=f"{prefix}.#")
        await sync_to_async(endpoints.endpoint_create)(
            url=AMQP_URL, exchange=exchange_name, subject=f"{prefix}.{{session}}.{{event}}"
        )
        made = await sync_to_async(sessions)(3)
        await sync_to_async(produce)(made, 10)
        await dispatch()
        await until(lambda: all_delivered(30), timeout=30, what="30 confirmed")
        received = []
        for _ in range(30):
            message = await queue.get(timeout=5)
            await message.ack()
            received.append(message)
        bodies = [json.loads(m.body) for m in received]
        in_order_once(bodies, 10)
        for message, body in zip(received, bodies, strict=True):
            assert message.message_id == body["id"]
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert message.routing_key == f"{prefix}.{body['session']['id']}.test.event"
        await exchange.delete()
    finally:
        await connection.close()


async def burst_under_way(dispatch) -> None:
    """40 events for each of 5 sessions, the dispatcher started, and 40 of them delivered."""
    made = await sync_to_async(sessions)(5)
    await sync_to_async(produce)(made, 40)
    await dispatch()
    await until(
        lambda: WebhookDelivery.objects.filter(status="delivered").count() >= 40,
        timeout=30,
        what="the burst under way",
    )


async def test_a_nats_restart_mid_burst_loses_and_duplicates_nothing(
    dispatch, private_nats
) -> None:
    private_nats.start()
    stream = unique("GWT")
    await sync_to_async(endpoints.endpoint_create)(url=private_nats.url, stream=stream)
    await burst_under_way(dispatch)
    private_nats.stop()
    private_nats.start()  # on the same store: what it acknowledged is still there
    await until(lambda: all_delivered(200), timeout=90, what="all 200 published")
    async with jetstream(private_nats.url) as js:
        messages = await stream_messages(js, stream)
    bodies = [json.loads(m.data) for m in messages]
    assert len(bodies) == len({b["id"] for b in bodies}) == 200  # the stream dropped any copy
    in_order_once(bodies, 40)


async def test_a_rabbitmq_restart_mid_burst_loses_nothing(dispatch, private_rabbit) -> None:
    """As NATS's above, on a RabbitMQ node of the test's own: a durable queue bound before the
    burst, the node stopped gracefully and started again on its data once 40 of the 200 are
    confirmed. Confirms lost with the connection may bring a copy: the consumer dedupes on
    `message_id`, and then has every event once, in order per session."""
    await asyncio.to_thread(private_rabbit.start)
    queue_name = unique("gwt-q-")
    async with amqp_channel(private_rabbit.url) as channel:
        exchange = await channel.declare_exchange(
            endpoints.DEFAULT_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.bind(exchange, routing_key="wa.#")
    await sync_to_async(endpoints.endpoint_create)(url=private_rabbit.url)
    await burst_under_way(dispatch)
    # Stopped and started from the event loop, as NATS's is: the dispatcher is held where it
    # was, publishes and confirms in flight, and meets a connection the restart closed.
    private_rabbit.stop()
    at_restart = await sync_to_async(WebhookDelivery.objects.filter(status="delivered").count)()
    assert at_restart < 200, "the restart did not happen in the middle of the burst"
    private_rabbit.start()  # on the same data: the durable queue and what it confirmed
    await until(lambda: all_delivered(200), timeout=90, what="all 200 confirmed")
    received = []
    async with amqp_channel(private_rabbit.url) as channel:
        queue = await channel.declare_queue(queue_name, durable=True)
        while (message := await queue.get(no_ack=True, fail=False, timeout=5)) is not None:
            body = json.loads(message.body)
            assert message.message_id == body["id"]
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            received.append(body)
    assert len({b["id"] for b in received}) == 200
    in_order_once(received, 40)
