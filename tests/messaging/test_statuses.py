"""The worker's side of message statuses, on the database: fencing, receipts in any order,
retries, interrupted sends, inbound deduplication. Each forward change writes one outbox row."""

from __future__ import annotations

import time
import uuid

import pytest
from django.utils import timezone

from gateway.outbox.models import Event, WebhookDelivery
from messaging import services
from messaging.models import Message
from messaging.services.media import StoredMedia
from sessions_app.services import LeaseLost

pytestmark = pytest.mark.django_db
CHAT = "4915123456789@s.whatsapp.net"


@pytest.fixture(autouse=True)
def _backend(settings) -> None:
    settings.BACKEND_URL = "http://backend.test"


def queued(session, text: str = "x") -> Message:
    return services.message_send(
        session=session, to=CHAT, type="text", text=text, fingerprint=""
    ).message


def statuses(message: Message) -> list[str]:
    return [
        d.payload["message"]["status"]
        for d in WebhookDelivery.objects.filter(event_type="message.status").order_by("sequence")
        if d.payload["message"]["id"] == str(message.pk)
    ]


def sent(session, message: Message) -> Message:
    job = services.message_next(session_id=session.pk, epoch=3, accepts_ids=True).job
    assert job.message_id == message.pk
    services.message_sent(
        session_id=session.pk,
        epoch=3,
        message_id=message.pk,
        wa_message_id=job.wa_message_id,
        at=time.time(),
    )
    return Message.objects.get(pk=message.pk)


def test_the_queue_is_fifo_and_fenced(held) -> None:
    first, second = queued(held, "1"), queued(held, "2")
    with pytest.raises(LeaseLost):
        services.message_next(session_id=held.pk, epoch=2, accepts_ids=True)
    job = services.message_next(session_id=held.pk, epoch=3, accepts_ids=True).job
    assert job.message_id == first.pk and job.wa_message_id.startswith("3EB0")
    assert Message.objects.get(pk=first.pk).status == "sending"  # before the engine is called
    assert Message.objects.get(pk=second.pk).status == "queued"


def test_the_next_message_can_be_taken_with_the_last_ones_outcome(
    held, django_assert_max_num_queries
) -> None:
    first, second = queued(held, "1"), queued(held, "2")
    job = services.message_next(session_id=held.pk, epoch=3, accepts_ids=True).job
    # The `sent` and the next `sending` events are numbered, written and counted together: one
    # sequence step, one outbox statement, one usage statement (each event apart: 4 more).
    with django_assert_max_num_queries(12):
        following = services.message_sent(
            session_id=held.pk,
            epoch=3,
            message_id=first.pk,
            wa_message_id=job.wa_message_id,
            at=time.time(),
            take_next=True,
            accepts_ids=True,
        )
    assert following.job.message_id == second.pk and following.job.wa_message_id.startswith("3EB0")
    assert Message.objects.get(pk=first.pk).status == "sent"
    assert Message.objects.get(pk=second.pk).status == "sending"
    assert statuses(first) == ["sending", "sent"] and statuses(second) == ["sending"]
    sequences = list(
        WebhookDelivery.objects.filter(session_id=held.pk)
        .order_by("sequence")
        .values_list("sequence", flat=True)
    )
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))  # no gap
    logged = Event.objects.filter(session_id=held.pk).order_by("sequence")
    assert [(e.sequence, e.payload["sequence"]) for e in logged] == [(n, n) for n in sequences]
    assert [e.payload["message"]["status"] for e in logged][-2:] == ["sent", "sending"]
    last = services.message_sent(
        session_id=held.pk,
        epoch=3,
        message_id=second.pk,
        wa_message_id=following.job.wa_message_id,
        at=time.time(),
        take_next=True,
        accepts_ids=True,
    )
    assert last.job is None and last.due_in is None  # the queue is empty
    with pytest.raises(LeaseLost):
        services.message_sent(
            session_id=held.pk, epoch=2, message_id=second.pk, wa_message_id="x", at=time.time()
        )


def test_receipts_only_move_forward(held) -> None:
    message = sent(held, queued(held))
    wa_id = message.wa_message_id
    for status in ["read", "delivered", "read", "sent", "delivered"]:  # out of order, repeated
        services.receipts_apply(
            session_id=held.pk, epoch=3, receipts=[([wa_id], status, time.time())]
        )
    message.refresh_from_db()
    assert message.status == "read" and message.read_at and message.delivered_at is None
    assert statuses(message) == ["sending", "sent", "read"]  # one row per forward change


def test_receipts_that_came_together_are_applied_in_order_in_one_transaction(
    held, django_assert_max_num_queries
) -> None:
    first, second = sent(held, queued(held, "1")), sent(held, queued(held, "2"))
    ids = [first.wa_message_id, second.wa_message_id]
    now = time.time()
    receipts = [(ids, "delivered", now), ([first.wa_message_id], "read", now + 1)]
    receipts += [(ids, "delivered", now + 2)]  # repeated: no step
    # In one savepoint (2): one lock, one read, one sequence step, the endpoints' version, one
    # statement for the three events and their deliveries, one for what they count, one write of
    # the two messages. Each step apart would be 4 more statements each (9 + 2 * 4), and one by
    # one three transactions, each locking and reading again.
    with django_assert_max_num_queries(2 + 7):
        moved = services.receipts_apply(session_id=held.pk, epoch=3, receipts=receipts)
    assert moved == 3
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.status, second.status) == ("read", "delivered")
    assert first.delivered_at and first.read_at and second.delivered_at
    assert statuses(first) == ["sending", "sent", "delivered", "read"]
    assert statuses(second) == ["sending", "sent", "delivered"]
    with pytest.raises(LeaseLost):
        services.receipts_apply(session_id=held.pk, epoch=2, receipts=receipts)


def test_a_transient_failure_is_retried_with_backoff_then_fails(held, settings) -> None:
    settings.SEND_MAX_ATTEMPTS = 2
    message = queued(held)
    job = services.message_next(session_id=held.pk, epoch=3, accepts_ids=True).job
    assert services.message_send_error(
        session_id=held.pk, epoch=3, message_id=message.pk, code="timeout", error="t", retry=True
    )
    wait = services.message_next(session_id=held.pk, epoch=3, accepts_ids=True).due_in
    assert isinstance(wait, float) and 0 < wait <= 4  # not due yet; holds the queue
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    again = services.message_next(session_id=held.pk, epoch=3, accepts_ids=True).job
    assert again.wa_message_id == job.wa_message_id and again.attempt == 2  # the same id
    assert not services.message_send_error(
        session_id=held.pk, epoch=3, message_id=message.pk, code="timeout", error="t", retry=True
    )
    message.refresh_from_db()
    assert message.status == "failed" and message.error_code == "timeout"
    assert statuses(message) == ["sending", "failed"]


def test_sends_interrupted_on_an_engine_without_our_ids_fail(held) -> None:
    message = queued(held)
    services.message_next(session_id=held.pk, epoch=3, accepts_ids=False)  # then a crash
    assert services.messages_recover(session_id=held.pk, epoch=3, accepts_ids=True) == 0
    assert services.messages_recover(session_id=held.pk, epoch=3, accepts_ids=False) == 1
    message.refresh_from_db()
    assert message.status == "failed" and message.error_code == "send_interrupted"
    assert statuses(message)[-1] == "failed"


def test_inbound_messages_are_deduplicated_and_announced_once(held) -> None:
    received = services.Received(
        wa_message_id="W1", chat=CHAT, sender=CHAT, type="text", text="hi", at=timezone.now()
    )
    first = services.inbound_store(session_id=held.pk, epoch=3, message=received)
    again = services.inbound_store(session_id=held.pk, epoch=3, message=received)
    assert first is not None and again is None
    assert WebhookDelivery.objects.filter(event_type="message.received").count() == 1


def test_inbound_media_is_announced_when_stored(held) -> None:
    received = services.Received(
        wa_message_id="W2",
        chat=CHAT,
        sender=CHAT,
        type="image",
        at=timezone.now(),
        media={"mime_type": "image/png", "ref": {}},
    )
    message = services.inbound_store(session_id=held.pk, epoch=3, message=received)
    assert not WebhookDelivery.objects.filter(event_type="message.received").exists()
    assert [m.pk for m in services.media_pending(session_id=held.pk)] == [message.pk]
    media = StoredMedia(f"{held.pk}/{uuid.uuid4()}/x.png", "image/png", 3, "", "x.png", "image/png")
    assert services.inbound_media_stored(
        session_id=held.pk, epoch=3, message_id=message.pk, stored=media
    )
    assert not services.inbound_media_stored(  # a second store changes nothing
        session_id=held.pk, epoch=3, message_id=message.pk, stored=media
    )
    rows = WebhookDelivery.objects.filter(event_type="message.received")
    assert rows.count() == 1 and "media_ref" not in rows.get().payload["message"]
