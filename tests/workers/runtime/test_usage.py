"""Usage end to end, in process: messages of several types sent through the API on the sandbox
engine, their receipts, messages a contact sends; `GET /api/v1/usage` shows exactly that, per
hour and per day, for each session. And the worker's loop writes the daily `usage.report`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async

from gateway.core import usage
from gateway.core.models import UsageReport
from gateway.outbox.models import WebhookDelivery
from messaging.models import Message
from sessions_app import services as sessions
from sessions_app.models import Session
from tests.workers.runtime.test_messages import MP4, OGG, PDF, png, post, status_of, upload
from tests.workers.runtime.test_runtime import linked, until

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
TO = "+4915123456789"
NOBODY = "+4915100000000"  # not on WhatsApp (the sandbox's numbers ending in 0000): fails
CONTACT = "+4915100000002"
T1 = datetime(2026, 1, 15, 10, 20, tzinfo=UTC)
T2 = T1 + timedelta(hours=1)


@pytest.fixture(autouse=True)
def _backend_and_no_pacing(settings) -> None:
    settings.BACKEND_URL = "http://127.0.0.1:9"  # outbox rows are written; nobody takes them
    settings.SEND_INTERVAL_MIN_SECONDS = settings.SEND_INTERVAL_MAX_SECONDS = 0
    settings.SEND_MAX_PER_MINUTE = 0


@pytest.fixture
def clock(monkeypatch) -> list[datetime]:
    """The hour figures are counted in: what the list holds (set it to move the clock)."""
    now = [T1]
    monkeypatch.setattr(usage, "clock", lambda: now[0])
    return now


def zero(**counts: int) -> dict:
    return {"sent": 0, "delivered": 0, "read": 0, "failed": 0, "received": 0, **counts}


async def settled(message_ids: list[str], final: str) -> None:
    for message_id in message_ids:
        await until(lambda m=message_id: status_of(m) == final, what=f"{message_id} {final}")


async def usage_of(api, **params) -> dict:
    params = {"from": "2026-01-15T00:00:00Z", "to": "2026-01-16T00:00:00Z", **params}
    response = await sync_to_async(api.get)("/api/v1/usage", params)
    assert response.status_code == 200, response.json()
    return {(r["session"], r["period"]): r for r in response.json()["results"]}


async def test_usage_is_what_was_sent_delivered_read_failed_and_received(
    start_worker, api, clock
) -> None:
    runtime = await start_worker()
    engine = runtime.engines["sandbox"]
    a = await linked(runtime, "+15550001")
    b = await linked(runtime, "+15550003")
    await engine.receipts(str(b.id), "missing")  # B's contacts never send read receipts
    image, pdf = png(), PDF

    # Hour T1. A: a text, an image, a document and a voice note read; a text that fails.
    read = [(await post(api, a, {"to": TO, "text": "hello"})).json()["id"]]
    for kind, content, name, mime in [
        ("image", image, "p.png", "image/png"),
        ("document", pdf, "r.pdf", "application/pdf"),
    ]:
        response = await upload(api, a, {"to": TO, "type": kind}, content, name, mime)
        assert response.status_code == 202, response.json()
        read.append(response.json()["id"])
    voice = (await upload(api, a, {"to": TO, "type": "voice"}, OGG, "n.ogg", "audio/ogg")).json()
    failed = (await post(api, a, {"to": NOBODY, "text": "anyone?"})).json()["id"]
    # B: a text and a video, delivered and never read.
    delivered = [(await post(api, b, {"to": TO, "text": "hi"})).json()["id"]]
    video = await upload(api, b, {"to": TO, "type": "video"}, MP4, "c.mp4", "video/mp4")
    delivered.append(video.json()["id"])
    # Contacts write: A gets a text and an image (and the text again: stored once), B a text.
    await engine.receive(str(a.id), sender_phone=CONTACT, text="hey", wa_message_id="IN1")
    await engine.receive(
        str(a.id),
        sender_phone=CONTACT,
        type="image",
        media=image,
        mime_type="image/png",
        filename="x.png",
        wa_message_id="IN2",
    )
    await engine.receive(str(a.id), sender_phone=CONTACT, text="hey", wa_message_id="IN1")
    await engine.receive(str(b.id), sender_phone=CONTACT, text="yo", wa_message_id="IN3")

    await settled(read, "read")
    await settled([voice["id"]], "played")
    await settled([failed], "failed")
    await settled(delivered, "delivered")
    await until(
        lambda: Message.objects.filter(direction="in", media_pending=False).count() == 3,
        what="every inbound message stored with its media",
    )

    # Hour T2: one more text from A, read.
    clock[0] = T2
    late = (await post(api, a, {"to": TO, "text": "later"})).json()["id"]
    await settled([late], "read")

    hours = await usage_of(api, granularity="hour")
    assert set(hours) == {
        (str(a.id), "2026-01-15T10:00:00Z"),
        (str(b.id), "2026-01-15T10:00:00Z"),
        (str(a.id), "2026-01-15T11:00:00Z"),
    }
    first = hours[(str(a.id), "2026-01-15T10:00:00Z")]
    assert first["messages"] == {
        **zero(sent=4, delivered=4, read=4, failed=1, received=2),
        "by_type": {
            "text": zero(sent=1, delivered=1, read=1, failed=1, received=1),
            "image": zero(sent=1, delivered=1, read=1, received=1),
            "document": zero(sent=1, delivered=1, read=1),
            "voice": zero(sent=1, delivered=1, read=1),
        },
    }
    assert first["media_bytes"] == {
        "sent": len(image) + len(pdf) + len(OGG),
        "received": len(image),
    }
    assert first["webhooks"] == {"delivered": 0, "failed": 0}
    second = hours[(str(a.id), "2026-01-15T11:00:00Z")]
    assert second["messages"] == {
        **zero(sent=1, delivered=1, read=1),
        "by_type": {"text": zero(sent=1, delivered=1, read=1)},
    }
    assert second["media_bytes"] == {"sent": 0, "received": 0}
    other = hours[(str(b.id), "2026-01-15T10:00:00Z")]
    assert other["messages"] == {
        **zero(sent=2, delivered=2, received=1),
        "by_type": {
            "text": zero(sent=1, delivered=1, received=1),
            "video": zero(sent=1, delivered=1),
        },
    }
    assert other["media_bytes"] == {"sent": len(MP4), "received": 0}

    days = await usage_of(api)
    assert set(days) == {(str(a.id), "2026-01-15T00:00:00Z"), (str(b.id), "2026-01-15T00:00:00Z")}
    day = days[(str(a.id), "2026-01-15T00:00:00Z")]
    assert {k: v for k, v in day["messages"].items() if k != "by_type"} == zero(
        sent=5, delivered=5, read=5, failed=1, received=2
    )
    assert day["messages"]["by_type"]["text"] == zero(
        sent=2, delivered=2, read=2, failed=1, received=1
    )
    assert day["media_bytes"] == first["media_bytes"]
    assert days[(str(b.id), "2026-01-15T00:00:00Z")]["messages"] == other["messages"]

    only_b = await usage_of(api, session=str(b.id), granularity="hour")
    assert list(only_b) == [(str(b.id), "2026-01-15T10:00:00Z")]
    assert only_b[(str(b.id), "2026-01-15T10:00:00Z")] == other

    # Counters, not a scan of the messages: deleting them changes no figure.
    await sync_to_async(lambda: Message.objects.all().delete())()
    assert await usage_of(api, granularity="hour") == hours


async def test_the_workers_loop_writes_yesterdays_report_once(start_worker, monkeypatch) -> None:
    yesterday = sessions.usage_report_due_day()
    session = await sync_to_async(Session.objects.create)(engine="sandbox", desired_state="stopped")
    at = datetime.combine(yesterday, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    await sync_to_async(usage.usage_add)(session.pk, kind="text", at=at, messages_sent=2)
    runtime = await start_worker()

    def reported():
        return list(WebhookDelivery.objects.filter(event_type="usage.report"))

    # The row commits before the step returns and records the day: wait for both.
    (report,) = await until(
        lambda: runtime.usage_reported_through == yesterday and reported(),
        what="the usage report, and the day recorded",
    )
    assert report.payload["session"]["id"] == str(session.pk)
    assert report.payload["usage"]["messages"]["sent"] == 2
    # Until the next day is due, the step asks nothing of the database.
    calls = []
    monkeypatch.setattr(sessions, "usage_reports_send", lambda **kw: calls.append(kw))
    assert await runtime.step_usage_reports() == 0 and calls == []
    assert await sync_to_async(UsageReport.objects.count)() == 1
