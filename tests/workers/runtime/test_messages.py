"""Messages end to end, in process: API → worker → sandbox phone → receipts → statuses → outbox."""

from __future__ import annotations

import io
import logging
from itertools import pairwise

import pytest
from asgiref.sync import sync_to_async
from PIL import Image

from gateway.outbox.models import WebhookDelivery
from messaging.models import Message
from tests.workers.runtime.test_runtime import linked, until
from workers.engines.sandbox import SandboxWorld

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
TO = "+4915123456789"
TO_JID = "4915123456789@s.whatsapp.net"


@pytest.fixture(autouse=True)
def _backend_and_no_pacing(settings) -> None:
    settings.BACKEND_URL = "http://127.0.0.1:9"  # outbox rows are written; nobody delivers them
    settings.SEND_INTERVAL_MIN_SECONDS = settings.SEND_INTERVAL_MAX_SECONDS = 0
    settings.SEND_MAX_PER_MINUTE = 0


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
    return buffer.getvalue()


OGG = b"OggS" + bytes(60)  # the magic of an Ogg stream (filetype reads the first bytes)
PDF = b"%PDF-1.4\n" + bytes(64)
MP4 = b"\x00\x00\x00\x18ftypisom" + bytes(64)


def post(api, session, body: dict, **headers):
    return sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/messages", body, format="json", **headers
    )


def upload(api, session, body: dict, content: bytes, name: str, content_type: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = {**body, "file": SimpleUploadedFile(name, content, content_type=content_type)}
    return sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/messages", data, format="multipart"
    )


def status_of(message_id) -> str:
    return Message.objects.get(pk=message_id).status


def status_events(message_id) -> list[str]:
    return [
        d.payload["message"]["status"]
        for d in WebhookDelivery.objects.filter(event_type="message.status").order_by("sequence")
        if d.payload["message"]["id"] == str(message_id)
    ]


async def test_every_type_reaches_the_phone_and_climbs_to_read(
    start_worker, api, world: SandboxWorld
) -> None:
    runtime = await start_worker()
    session = await linked(runtime)
    sent = []
    for body in [
        {"type": "text", "text": "hello"},
        {"type": "location", "location": {"latitude": 52.52, "longitude": 13.4, "name": "Berlin"}},
        {"type": "contact", "contact": {"name": "Ada", "phone_number": "+4915100000001"}},
    ]:
        response = await post(api, session, {"to": TO, **body})
        assert response.status_code == 202, response.json()
        assert response.json()["status"] == "queued"
        sent.append(response.json()["id"])
    for kind, content, name, mime, extra in [
        ("image", png(), "photo.png", "image/png", {"caption": "a red square"}),
        ("video", MP4, "clip.mp4", "video/mp4", {"caption": "a clip"}),
        ("voice", OGG, "note.ogg", "audio/ogg", {}),
        ("audio", OGG, "song.ogg", "audio/ogg", {}),
        ("document", PDF, "../../etc/report.pdf", "application/pdf", {"caption": "the report"}),
    ]:
        response = await upload(
            api, session, {"to": TO, "type": kind, **extra}, content, name, mime
        )
        assert response.status_code == 202, response.json()
        sent.append(response.json()["id"])

    # Reactions need the WhatsApp id of what they react to: the first message's, once sent.
    await until(lambda: status_of(sent[0]) in ("sent", "delivered", "read"), what="the text sent")
    first = await sync_to_async(Message.objects.get)(pk=sent[0])
    response = await post(
        api,
        session,
        {"to": TO, "type": "reaction", "reaction": "👍", "reply_to": first.wa_message_id},
    )
    assert response.status_code == 202, response.json()
    sent.append(response.json()["id"])

    final = {"voice": "played"}
    for message_id in sent:
        kind = (await sync_to_async(Message.objects.get)(pk=message_id)).type
        await until(
            lambda m=message_id, k=kind: status_of(m) == final.get(k, "read"),
            what=f"{kind} to be read",
        )
    phone = world.phone_messages(str(session.id))
    assert [m["type"] for m in phone] == [
        "text",
        "location",
        "contact",
        "image",
        "video",
        "voice",
        "audio",
        "document",
        "reaction",
    ]  # in the order they were sent: one queue per session
    assert phone[3]["media"]["mime_type"] == "image/png" and phone[3]["caption"] == "a red square"
    assert phone[7]["media"]["filename"] == "report.pdf"  # no path from the client's name
    assert phone[8]["reaction"] == "👍" and phone[8]["reply_to"] == first.wa_message_id
    assert len({m["id"] for m in phone}) == len(phone) == len(sent)

    for message_id in sent:
        events = await sync_to_async(status_events)(message_id)
        ladder = ["sending", "sent", "delivered", "read"]
        assert events[: len(ladder)] == ladder, events  # every forward change, once, in order
    message = await sync_to_async(Message.objects.get)(pk=sent[3])
    assert message.media_sha256 and message.media_size == len(png())
    detail = await sync_to_async(api.get)(f"/api/v1/messages/{message.id}")
    assert detail.json()["media"]["url"]


async def test_idempotency_key_returns_the_same_message_and_sends_it_once(
    start_worker, api, world: SandboxWorld
) -> None:
    runtime = await start_worker()
    session = await linked(runtime)
    body = {"to": TO, "text": "once"}
    first = await post(api, session, body, HTTP_IDEMPOTENCY_KEY="order-1")
    again = await post(api, session, body, HTTP_IDEMPOTENCY_KEY="order-1")
    other = await post(api, session, {**body, "text": "twice"}, HTTP_IDEMPOTENCY_KEY="order-1")
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 422)
    assert again.json()["id"] == first.json()["id"]
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    await until(lambda: status_of(first.json()["id"]) == "read", what="read")
    assert [m["text"] for m in world.phone_messages(str(session.id))] == ["once"]


async def test_inbound_messages_are_stored_once_with_their_media(
    start_worker, world: SandboxWorld
) -> None:
    runtime = await start_worker()
    session = await linked(runtime)
    engine = runtime.engines["sandbox"]
    await engine.receive(
        str(session.id), sender_phone="+4915100000002", text="hi", as_lid=True, wa_message_id="IN1"
    )
    await engine.receive(
        str(session.id),
        sender_phone="+4915100000002",
        type="image",
        media=png(),
        mime_type="image/png",
        filename="x.png",
        wa_message_id="IN2",
    )
    # The same message again (WhatsApp redelivers after a reconnect): nothing new. Events are
    # handled in order, so once IN3 is stored the duplicate has been dealt with.
    await engine.receive(
        str(session.id), sender_phone="+4915100000002", text="hi", wa_message_id="IN1"
    )
    await engine.receive(
        str(session.id), sender_phone="+4915100000002", text="last", wa_message_id="IN3"
    )

    def received():
        rows = WebhookDelivery.objects.filter(event_type="message.received").order_by("sequence")
        return any(r.payload["message"]["wa_message_id"] == "IN3" for r in rows) and list(rows)

    def all_received():
        rows = received()
        return rows and len(rows) == 3 and rows

    # The image's webhook goes once its media is stored (downloads are off the event queue).
    rows = await until(all_received, what="IN2's media stored")
    by_id = {r.payload["message"]["wa_message_id"]: r.payload["message"] for r in rows}
    assert sorted(by_id) == ["IN1", "IN2", "IN3"]
    assert await sync_to_async(Message.objects.filter(direction="in").count)() == 3
    text, image = by_id["IN1"], by_id["IN2"]
    assert text["text"] == "hi" and text["sender"].endswith("@lid")
    assert text["sender_phone"] == "+4915100000002"  # the number behind the @lid
    assert image["media"]["mime_type"] == "image/png" and image["media"]["url"]
    stored = await sync_to_async(Message.objects.get)(wa_message_id="IN2")
    with stored.media.open() as f:
        assert f.read() == png()


async def test_a_slow_media_download_holds_nothing_behind_it(start_worker) -> None:
    """Downloads run off the session's event queue: a text that comes after an image whose
    download hangs is stored and announced at once; the image follows when its media is in."""
    import asyncio

    runtime = await start_worker()
    session = await linked(runtime)
    engine = runtime.engines["sandbox"]
    release, download = asyncio.Event(), engine.download

    async def slow_download(*args):
        await release.wait()
        return await download(*args)

    engine.download = slow_download
    kwargs = {"sender_phone": "+4915100000002"}
    await engine.receive(
        str(session.id),
        type="image",
        media=png(),
        mime_type="image/png",
        wa_message_id="I1",
        **kwargs,
    )
    await engine.receive(str(session.id), text="after", wa_message_id="T2", **kwargs)

    def announced():
        rows = WebhookDelivery.objects.filter(event_type="message.received")
        return [r.payload["message"]["wa_message_id"] for r in rows]

    await until(lambda: "T2" in announced(), what="the text announced")
    assert "I1" not in await sync_to_async(announced)()
    release.set()
    await until(lambda: "I1" in announced(), what="the image announced")


async def test_mark_read_and_check_numbers_go_through_the_worker(
    start_worker, api, world: SandboxWorld
) -> None:
    runtime = await start_worker()
    session = await linked(runtime)
    await runtime.engines["sandbox"].receive(
        str(session.id), sender_phone="+4915100000002", text="read me", wa_message_id="IN9"
    )
    message = await until(lambda: Message.objects.filter(wa_message_id="IN9").first(), what="in")
    response = await sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/messages/{message.id}/read"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "read" and response.json()["read_at"]
    assert any(
        e["event"] == "mark_read" and e["message_ids"] == ["IN9"]
        for e in world.read_log(str(session.id))
    )

    response = await sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/check-numbers",
        {"phone_numbers": ["+4915100000003", "+4915100000000"]},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert [r["on_whatsapp"] for r in response.json()] == [True, False]


async def test_a_reconnecting_session_keeps_its_queue(start_worker, api, world) -> None:
    runtime = await start_worker()
    session = await linked(runtime)
    engine = runtime.engines["sandbox"]
    await engine.drop_connection(str(session.id))
    response = await post(api, session, {"to": TO, "text": "after the drop"})
    assert response.status_code == 202
    await until(lambda: status_of(response.json()["id"]) == "read", what="sent after reconnect")
    assert [m["text"] for m in world.phone_messages(str(session.id))] == ["after the drop"]


async def test_pacing_spaces_a_session_s_messages(start_worker, api, world, settings) -> None:
    settings.SEND_INTERVAL_MIN_SECONDS = settings.SEND_INTERVAL_MAX_SECONDS = 1
    runtime = await start_worker()
    session = await linked(runtime)
    ids = []
    for n in range(3):
        response = await post(api, session, {"to": TO, "text": f"m{n}"})
        assert response.status_code == 202  # accepted at once; the queue drains at the pace
        ids.append(response.json()["id"])
    await until(
        lambda: all(status_of(i) != "queued" and status_of(i) != "sending" for i in ids),
        timeout=15,
        what="all sent",
    )
    times = [m["at"] for m in world.phone_messages(str(session.id))]
    assert len(times) == 3
    assert all(later - earlier >= 0.95 for earlier, later in pairwise(times))


async def test_without_the_cache_a_session_keeps_its_pace_once(
    start_worker, api, world, settings, monkeypatch
) -> None:
    """The pacing state is in the cache: while it is down, the sender keeps the pause it chose
    after each message itself (the longest interval, as it cannot record one), once. It paused
    after the message, then again before the next: every message took twice the interval."""
    from messaging.services import pacing

    settings.SEND_INTERVAL_MIN_SECONDS = settings.SEND_INTERVAL_MAX_SECONDS = 1

    def down(session_id: object) -> float:
        raise ConnectionError("the cache is down")

    monkeypatch.setattr(pacing, "pace_wait_seconds", down)
    monkeypatch.setattr(pacing, "pace_sent", down)
    runtime = await start_worker()
    session = await linked(runtime)
    ids = [(await post(api, session, {"to": TO, "text": f"m{n}"})).json()["id"] for n in range(3)]
    await until(
        lambda: all(status_of(i) not in ("queued", "sending") for i in ids),
        timeout=15,
        what="all sent",
    )
    times = [m["at"] for m in world.phone_messages(str(session.id))]
    assert len(times) == 3
    assert all(0.95 <= later - earlier < 1.6 for earlier, later in pairwise(times)), times


async def test_without_pacing_a_send_asks_the_cache_nothing(
    start_worker, api, settings, monkeypatch
) -> None:
    """Pacing off (no pause, no limit): the sender skips the cache's two round trips a message."""
    from messaging.services import pacing

    settings.SEND_INTERVAL_MIN_SECONDS = settings.SEND_INTERVAL_MAX_SECONDS = 0
    settings.SEND_MAX_PER_MINUTE = 0
    asked: list[str] = []
    monkeypatch.setattr(pacing, "pace_wait_seconds", lambda session_id: asked.append("wait") or 0)
    monkeypatch.setattr(pacing, "pace_sent", lambda session_id: asked.append("sent") or 0)
    runtime = await start_worker()
    session = await linked(runtime)
    response = await post(api, session, {"to": TO, "text": "unpaced"})
    await until(lambda: status_of(response.json()["id"]) not in ("queued", "sending"), what="sent")
    assert (await sync_to_async(Message.objects.get)(pk=response.json()["id"])).sent_at
    assert asked == []


async def test_a_send_to_a_number_not_on_whatsapp_fails_with_a_code(
    start_worker, api, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="workers.runtime.sender")
    runtime = await start_worker()
    session = await linked(runtime)
    response = await post(api, session, {"to": "+4915123450000", "text": "nobody"})
    await until(lambda: status_of(response.json()["id"]) == "failed", what="failed")
    message = await sync_to_async(Message.objects.get)(pk=response.json()["id"])
    assert message.error_code == "not_on_whatsapp"
    assert (await sync_to_async(status_events)(message.id))[-1] == "failed"
    [line] = [r for r in caplog.records if r.getMessage().startswith("send failed")]
    assert (line.message_id, line.session_id) == (str(message.id), str(session.id))


async def test_a_message_whose_wake_up_was_lost_is_sent_by_the_sweep(start_worker) -> None:
    """Idle senders make no queries of their own (on PostgreSQL): a message queued without its
    NOTIFY (as if the worker's LISTEN connection had been down) is found by the worker's sweep
    of the sessions with work, every TTL/3, and sent."""
    worker = await start_worker(lease_seconds=3)
    session = await linked(worker)
    queued = await sync_to_async(Message.objects.create)(
        session_id=session.id,
        direction="out",
        status="queued",
        chat="4915123456789@s.whatsapp.net",
        type="text",
        text="x",
    )
    sent = await until(
        lambda: (m := Message.objects.get(pk=queued.pk)).sent_at and m, what="sent", timeout=15
    )
    assert sent.status in ("sent", "delivered", "read")
