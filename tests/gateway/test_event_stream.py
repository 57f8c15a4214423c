"""`/ws/events/`: the live event stream through the real ASGI router and the Redis channel layer:
credentials, filters, resume after a disconnect with nothing missed, and lost pushes filled in
from the log."""

from __future__ import annotations

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections, transaction

from gateway.asgi import application
from gateway.outbox import stream
from sessions_app.events import outbox_event

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
HOST = (b"host", b"localhost:8000")


@pytest_asyncio.fixture(autouse=True)
async def _close_connections():
    yield
    # The consumers' queries ran on asgiref's thread for sync code: close its connections there.
    await database_sync_to_async(connections.close_all)()
    await sync_to_async(connections.close_all)()


def socket(path: str = "/ws/events/", *headers, subprotocols=None) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, path, headers=[HOST, *headers], subprotocols=subprotocols
    )


def key_header(key: str) -> tuple[bytes, bytes]:
    return (b"x-api-key", key.encode())


@sync_to_async
def emit(session, event: str = "message.received", **fields) -> dict:
    with transaction.atomic():
        return outbox_event(session, event, "/x", **fields)


async def receive_all(communicator: WebsocketCommunicator, count: int) -> list[dict]:
    return [await communicator.receive_json_from(timeout=5) for _ in range(count)]


async def test_credentials_go_in_a_header_or_a_subprotocol_never_the_query(api_key) -> None:
    refused = socket()
    assert (await refused.connect())[0] is False
    in_query = socket(f"/ws/events/?api_key={api_key}")
    assert (await in_query.connect())[0] is False
    wrong = socket("/ws/events/", key_header("abcdefgh.abcdefghabcdefghabcdefghabcdefgh"))
    assert (await wrong.connect())[0] is False

    header = socket("/ws/events/", key_header(api_key))
    assert (await header.connect())[0] is True
    await header.disconnect()
    browser = socket(subprotocols=["events", f"api-key.{api_key}"])
    connected, subprotocol = await browser.connect()
    assert connected and subprotocol == "events"
    await browser.disconnect()
    no_events_protocol = socket(subprotocols=[f"api-key.{api_key}"])
    assert (await no_events_protocol.connect())[0] is False


async def test_every_event_live_filtered_by_session_and_type(api_key, make_session) -> None:
    a, b = await sync_to_async(make_session)(), await sync_to_async(make_session)()
    everything = socket("/ws/events/", key_header(api_key))
    filtered = socket(f"/ws/events/?sessions={a.pk}&events=message.*", key_header(api_key))
    assert (await everything.connect())[0] and (await filtered.connect())[0]
    sent = [
        await emit(a, "message.received"),
        await emit(b, "message.received"),
        await emit(a, "session.status"),
        await emit(a, "message.status"),
    ]
    assert [e["id"] for e in await receive_all(everything, 4)] == [e["id"] for e in sent]
    assert [e["id"] for e in await receive_all(filtered, 2)] == [sent[0]["id"], sent[3]["id"]]
    await emit(b, "message.status")
    marker = await emit(a, "message.edited")
    assert (await filtered.receive_json_from(timeout=5))["id"] == marker["id"]  # nothing between
    await everything.disconnect()
    await filtered.disconnect()


async def test_a_reconnect_with_after_misses_nothing(api_key, make_session) -> None:
    a, b = await sync_to_async(make_session)(), await sync_to_async(make_session)()
    first = socket("/ws/events/", key_header(api_key))
    assert (await first.connect())[0]
    seen = [await emit(a, n=n) for n in range(3)] + [await emit(b, n=n) for n in range(2)]
    got = await receive_all(first, 5)
    await first.disconnect()
    missed = [await emit(a, n=n) for n in range(3, 6)] + [await emit(b, n=n) for n in range(2, 4)]

    resumed = socket(f"/ws/events/?after={got[-1]['id']}", key_header(api_key))
    assert (await resumed.connect())[0]
    # Everything missed, after what the anchor's own session (b) had sent; the other session's
    # events of the moment before the anchor come again (the grace window: dedupe on `id`).
    expected = [e for e in seen if e["session"]["id"] == str(a.pk)] + missed
    replay = await receive_all(resumed, len(expected))
    assert [e["id"] for e in replay] == [e["id"] for e in expected]
    assert got[-1]["session"]["id"] == str(b.pk)
    later = await emit(b, n=9)  # then live
    assert (await resumed.receive_json_from(timeout=5))["id"] == later["id"]
    await resumed.disconnect()


async def test_a_lost_push_is_filled_in_from_the_log(api_key, make_session, monkeypatch) -> None:
    session = await sync_to_async(make_session)()
    communicator = socket("/ws/events/", key_header(api_key))
    assert (await communicator.connect())[0]
    first = await emit(session, n=1)
    assert (await communicator.receive_json_from(timeout=5))["id"] == first["id"]
    publish = stream.publish
    monkeypatch.setattr(stream, "publish", lambda *bodies: None)  # the channel layer lost these
    lost = [await emit(session, n=2), await emit(session, n=3)]
    monkeypatch.setattr(stream, "publish", publish)
    last = await emit(session, n=4)
    got = await receive_all(communicator, 3)
    assert [e["id"] for e in got] == [lost[0]["id"], lost[1]["id"], last["id"]]
    await communicator.disconnect()


async def test_resuming_from_an_unknown_event_says_so(api_key) -> None:
    communicator = socket(
        "/ws/events/?after=6f1c7e0e-0000-4000-8000-000000000000", key_header(api_key)
    )
    assert (await communicator.connect())[0]
    message = await communicator.receive_json_from(timeout=5)
    assert message["type"] == "error" and message["error"]["code"] == "event_unknown"
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": stream.AFTER_UNKNOWN}


async def test_bad_filters_are_refused_with_a_message(api_key) -> None:
    communicator = socket("/ws/events/?sessions=nope", key_header(api_key))
    assert (await communicator.connect())[0]
    message = await communicator.receive_json_from(timeout=5)
    assert message["error"]["code"] == "invalid"
    closed = await communicator.receive_output(timeout=5)
    assert closed["code"] == stream.BAD_REQUEST


async def test_old_events_are_purged(make_session, settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from gateway.outbox.models import Event

    session = await sync_to_async(make_session)()
    await emit(session)
    await emit(session)
    await sync_to_async(Event.objects.filter(sequence=1).update)(
        created_at=timezone.now() - timedelta(hours=settings.EVENT_RETENTION_HOURS + 1)
    )
    assert await sync_to_async(stream.events_purge)() == 1
    assert await sync_to_async(Event.objects.count)() == 1


async def test_events_are_pushed_only_while_a_stream_is_open(api_key, make_session, monkeypatch):
    sent = []
    layer = stream.get_channel_layer()

    async def group_send(group, message):
        sent.append(message["event"]["id"])

    monkeypatch.setattr(layer, "group_send", group_send)
    session = await sync_to_async(make_session)()
    unseen = await emit(session)
    communicator = socket("/ws/events/", key_header(api_key))
    assert (await communicator.connect())[0]
    seen = await emit(session)
    await communicator.disconnect()
    assert sent == [seen["id"]] and unseen["id"] not in sent
