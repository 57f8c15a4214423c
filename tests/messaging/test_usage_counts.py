"""What messages add to the usage counters, step by step on the worker's side (no worker runs):
each step counts once, in the transaction that made it, whatever order receipts come in."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from gateway.core import usage
from gateway.core.models import UsageCounter
from messaging import services
from messaging.models import Message
from messaging.services.media import StoredMedia

pytestmark = pytest.mark.django_db
CHAT = "4915123456789@s.whatsapp.net"
HOUR = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clock(monkeypatch) -> None:
    monkeypatch.setattr(usage, "clock", lambda: HOUR + timedelta(minutes=20))


def figures(session) -> dict:
    """The session's figures in HOUR, as the API shows them (without the session and period)."""
    periods = usage.usage_periods(
        start=HOUR, end=HOUR + timedelta(hours=1), granularity="hour", sessions=[session.pk]
    )
    if not periods:
        return {}
    (period,) = periods
    return {k: v for k, v in period.items() if k not in ("session", "period")}


def messages(**counts) -> dict:
    return {"sent": 0, "delivered": 0, "read": 0, "failed": 0, "received": 0, **counts}


def queued(session, type: str = "text", **fields) -> Message:
    return services.message_send(
        session=session, to=CHAT, type=type, fingerprint="", text="x", **fields
    ).message


def take(session, message: Message) -> str:
    job = services.message_next(session_id=session.pk, epoch=3, accepts_ids=True).job
    assert job is not None and job.message_id == message.pk
    return job.wa_message_id


def sent(session, message: Message) -> str:
    wa_id = take(session, message)
    services.message_sent(
        session_id=session.pk, epoch=3, message_id=message.pk, wa_message_id=wa_id, at=time.time()
    )
    return wa_id


def receipt(session, wa_id: str, status: str) -> int:
    return services.receipts_apply(
        session_id=session.pk, epoch=3, receipts=[([wa_id], status, time.time())]
    )


def test_each_step_counts_once_whatever_order_receipts_come_in(held) -> None:
    first, second = queued(held), queued(held)
    one, two = sent(held, first), sent(held, second)
    assert figures(held)["messages"] == messages(sent=2, by_type={"text": messages(sent=2)})
    for status in ["read", "delivered", "read", "sent", "delivered"]:  # out of order, repeated
        receipt(held, one, status)
    for status in ["delivered", "delivered", "read", "played"]:
        receipt(held, two, status)
    text = messages(sent=2, delivered=2, read=2)  # a read message was delivered
    assert figures(held)["messages"] == {**text, "by_type": {"text": text}}


def test_a_receipt_before_the_send_is_recorded_still_counts_the_send(held) -> None:
    message = queued(held)
    wa_id = take(held, message)
    receipt(held, wa_id, "delivered")  # the engine's receipt overtook the sender's record
    services.message_sent(
        session_id=held.pk, epoch=3, message_id=message.pk, wa_message_id=wa_id, at=time.time()
    )
    assert figures(held)["messages"]["sent"] == 1
    assert figures(held)["messages"]["delivered"] == 1


def test_media_bytes_count_when_whatsapp_took_the_message(held) -> None:
    from messaging.services.send import Upload
    from tests.workers.runtime.test_messages import png

    image = png()
    message = services.message_send(
        session=held,
        to=CHAT,
        type="image",
        fingerprint="",
        upload=Upload(image, "image/png", "a.png"),
    ).message
    take(held, message)
    assert figures(held) == {}  # accepted and sending count nothing yet
    services.message_sent(
        session_id=held.pk, epoch=3, message_id=message.pk, wa_message_id="W", at=time.time()
    )
    assert figures(held)["media_bytes"] == {"sent": len(image), "received": 0}
    assert figures(held)["messages"]["by_type"] == {"image": messages(sent=1)}


def test_failures_count_once_and_retries_count_nothing(held, settings) -> None:
    settings.SEND_MAX_ATTEMPTS = 2
    message = queued(held, type="location", payload={"location": {"latitude": 1.0}})
    take(held, message)
    error = {"session_id": held.pk, "epoch": 3, "message_id": message.pk, "code": "t", "error": ""}
    assert services.message_send_error(**error, retry=True)
    assert figures(held) == {}
    Message.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    take(held, message)
    assert not services.message_send_error(**error, retry=True)
    assert not services.message_send_error(**error, retry=False)  # no longer sending
    location = messages(failed=1)
    assert figures(held)["messages"] == {**location, "by_type": {"location": location}}


def test_interrupted_sends_count_as_failed(held) -> None:
    message = queued(held)
    services.message_next(session_id=held.pk, epoch=3, accepts_ids=False)  # then a crash
    services.messages_recover(session_id=held.pk, epoch=3, accepts_ids=False)
    assert Message.objects.get(pk=message.pk).status == "failed"
    assert figures(held)["messages"]["failed"] == 1


def test_inbound_messages_count_once_and_their_media_when_stored(held) -> None:
    def inbound(wa_id: str, **fields) -> services.Received:
        fields.setdefault("type", "text")
        return services.Received(
            wa_message_id=wa_id, chat=CHAT, sender=CHAT, at=timezone.now(), **fields
        )

    services.inbound_store(session_id=held.pk, epoch=3, message=inbound("W1", text="hi"))
    services.inbound_store(session_id=held.pk, epoch=3, message=inbound("W1", text="hi"))
    image = services.inbound_store(
        session_id=held.pk,
        epoch=3,
        message=inbound("W2", type="image", media={"mime_type": "image/png", "size": 9}),
    )
    assert figures(held)["media_bytes"] == {"sent": 0, "received": 0}  # not stored yet
    stored = StoredMedia(f"{held.pk}/{uuid.uuid4()}/x.png", "image/png", 1234, "", "x.png", "")
    for _ in range(2):  # a second store changes nothing
        services.inbound_media_stored(
            session_id=held.pk, epoch=3, message_id=image.pk, stored=stored
        )
    counts = figures(held)
    assert counts["messages"] == messages(
        received=2,
        by_type={"text": messages(received=1), "image": messages(received=1)},
    )
    assert counts["media_bytes"] == {"sent": 0, "received": 1234}


def test_messages_the_phone_sent_and_history_count_nothing(held) -> None:
    mine = services.Received(
        wa_message_id="P1",
        chat=CHAT,
        sender="1@s.whatsapp.net",
        type="text",
        at=timezone.now(),
        from_me=True,
    )
    services.inbound_store(session_id=held.pk, epoch=3, message=mine)  # sent from the phone
    receipt(held, "P1", "delivered")
    receipt(held, "P1", "read")
    assert Message.objects.get(wa_message_id="P1").status == "read"
    old = services.Received(
        wa_message_id="H1", chat=CHAT, sender=CHAT, type="text", at=timezone.now()
    )
    services.history_store(session_id=held.pk, epoch=3, messages=[old])
    assert figures(held) == {}
    assert not UsageCounter.objects.exists()


def test_a_rolled_back_change_counts_nothing(held) -> None:
    message = queued(held)
    wa_id = take(held, message)
    with pytest.raises(RuntimeError), transaction.atomic():
        services.message_sent(
            session_id=held.pk, epoch=3, message_id=message.pk, wa_message_id=wa_id, at=0
        )
        assert figures(held)["messages"]["sent"] == 1  # counted inside the change...
        raise RuntimeError("the change fails after all")
    assert figures(held) == {}  # ...and gone with it
    assert Message.objects.get(pk=message.pk).status == "sending"


def test_deleting_messages_changes_no_figure(held) -> None:
    wa_id = sent(held, queued(held))
    receipt(held, wa_id, "read")
    before = figures(held)
    assert before["messages"]["read"] == 1
    Message.objects.all().delete()
    assert figures(held) == before  # counters, not a count of the messages
