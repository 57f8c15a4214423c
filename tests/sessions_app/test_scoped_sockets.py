"""Scoped keys on the WebSockets: `/ws/sessions/{id}/`, `/ws/sessions/` and `/ws/events/` (through
the real ASGI router) hold a key to its sessions and scopes as the API does."""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from gateway.asgi import application
from gateway.outbox.stream import publish
from sessions_app.services import qr, session_set_status

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
ORIGIN = (b"origin", b"http://localhost:8000")
HOST = (b"host", b"localhost:8000")


@pytest_asyncio.fixture(autouse=True)
async def _close_connections():
    yield
    await sync_to_async(connections.close_all)()


def socket(path: str, key: str, *, subprotocol: bool = False) -> WebsocketCommunicator:
    if subprotocol:
        return WebsocketCommunicator(
            application,
            path,
            headers=[ORIGIN, HOST],
            subprotocols=["sessions", f"api-key.{key}"],
        )
    return WebsocketCommunicator(
        application, path, headers=[ORIGIN, HOST, (b"x-api-key", key.encode())]
    )


@pytest_asyncio.fixture
async def tenants(make_session):
    make = sync_to_async(make_session)
    return await make(status="starting", lease_epoch=1), await make(
        status="starting", lease_epoch=1
    )


async def refused(communicator: WebsocketCommunicator) -> bool:
    connected, _ = await communicator.connect(timeout=10)
    if not connected:
        await communicator.wait()
    return not connected


async def test_a_key_opens_its_own_session_but_not_another_tenants(
    tenants, make_scoped_key
) -> None:
    a, b = tenants
    _, key = await sync_to_async(make_scoped_key)(sessions=[a], scopes=["read"])
    assert await refused(socket(f"/ws/sessions/{b.id}/", key))
    assert await refused(socket(f"/ws/sessions/{uuid.uuid4()}/", key))

    mine = socket(f"/ws/sessions/{a.id}/", key)
    assert (await mine.connect(timeout=10))[0]
    status = await mine.receive_json_from(timeout=10)
    assert (status["type"], status["session"]["id"]) == ("session.status", str(a.id))
    await mine.disconnect()


async def test_the_codes_need_control(tenants, make_scoped_key) -> None:
    a, _ = tenants
    await sync_to_async(qr.codes_keep)(session_id=a.id, codes={"qr": qr.code_made("2@now", 30)})
    _, reader = await sync_to_async(make_scoped_key)(sessions=[a], scopes=["read"])
    _, controller = await sync_to_async(make_scoped_key)(sessions=[a], scopes=["read", "control"])

    watching = socket(f"/ws/sessions/{a.id}/", reader)
    linking = socket(f"/ws/sessions/{a.id}/", controller, subprotocol=True)
    assert (await watching.connect(timeout=10))[0]
    assert await linking.connect(timeout=10) == (True, "sessions")
    assert (await linking.receive_json_from(timeout=10))["type"] == "session.status"
    assert (await linking.receive_json_from(timeout=10))["qr"]["code"] == "2@now"
    assert (await watching.receive_json_from(timeout=10))["type"] == "session.status"
    await sync_to_async(session_set_status)(
        session_id=a.id, status="scan_qr", epoch=1, qr={"code": "2@next", "expires_at": "x"}
    )
    assert (await linking.receive_json_from(timeout=5))["type"] == "session.status"
    assert (await linking.receive_json_from(timeout=5))["type"] == "session.qr"
    assert (await watching.receive_json_from(timeout=5))["type"] == "session.status"
    await sync_to_async(session_set_status)(session_id=a.id, status="connected", epoch=1)
    after = await watching.receive_json_from(timeout=5)  # had it the codes, the QR came first
    assert (after["type"], after["session"]["status"]) == ("session.status", "connected")
    await watching.disconnect()
    await linking.disconnect()


async def test_a_key_without_read_may_not_open_a_socket(tenants, make_scoped_key) -> None:
    a, _ = tenants
    _, key = await sync_to_async(make_scoped_key)(sessions=[a], scopes=["send"])
    assert await refused(socket(f"/ws/sessions/{a.id}/", key))
    assert await refused(socket("/ws/sessions/", key))
    assert await refused(socket("/ws/events/", key))


async def test_the_all_sessions_socket_shows_a_key_only_its_sessions(
    tenants, make_scoped_key
) -> None:
    a, b = tenants
    _, key = await sync_to_async(make_scoped_key)(sessions=[a], scopes=["read"])
    fleet = socket("/ws/sessions/", key)
    assert (await fleet.connect(timeout=10))[0]
    # First the current state: of its own session only.
    current = await fleet.receive_json_from(timeout=5)
    assert current["session"]["id"] == str(a.id)
    assert await fleet.receive_nothing(timeout=0.2)
    await sync_to_async(session_set_status)(session_id=b.id, status="scan_qr", epoch=1)
    await sync_to_async(session_set_status)(session_id=a.id, status="scan_qr", epoch=1)
    # B's push went first on the same channel: had it been forwarded, it would be this one.
    message = await fleet.receive_json_from(timeout=5)
    assert (message["session"]["id"], message["session"]["status"]) == (str(a.id), "scan_qr")
    assert message["sequence"] > current["sequence"]
    await fleet.disconnect()

    _, unlimited = await sync_to_async(make_scoped_key)(scopes=["read"])
    everything = socket("/ws/sessions/", unlimited)
    assert (await everything.connect(timeout=10))[0]
    shown = [(await everything.receive_json_from(timeout=5))["session"] for _ in range(2)]
    assert {s["id"]: s["status"] for s in shown} == {str(a.id): "scan_qr", str(b.id): "scan_qr"}
    await sync_to_async(session_set_status)(session_id=b.id, status="connected", epoch=1)
    assert (await everything.receive_json_from(timeout=5))["session"]["id"] == str(b.id)
    await everything.disconnect()


def _event(session_id: object) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "event": "session.status",
        "sequence": 1,
        "session": {"id": str(session_id)},
    }


async def test_the_event_stream_shows_a_key_only_its_sessions(tenants, make_scoped_key) -> None:
    a, b = tenants
    _, key = await sync_to_async(make_scoped_key)(sessions=[a], scopes=["read"])
    stream = WebsocketCommunicator(
        application, "/ws/events/", headers=[HOST, (b"x-api-key", key.encode())]
    )
    assert (await stream.connect(timeout=10))[0]
    await sync_to_async(publish)(_event(b.id))
    await sync_to_async(publish)(_event(a.id))
    received = await stream.receive_json_from(timeout=5)
    assert received["session"]["id"] == str(a.id)
    await stream.disconnect()


async def test_the_event_stream_follows_the_sessions_a_key_creates(
    make_scoped_key, make_session
) -> None:
    client, key = await sync_to_async(make_scoped_key)(sessions=[], scopes=["read", "control"])
    stream = WebsocketCommunicator(
        application, "/ws/events/", headers=[HOST, (b"x-api-key", key.encode())]
    )
    assert (await stream.connect(timeout=10))[0]
    # Created after the stream opened: still the key's.
    created = await sync_to_async(client.post)("/api/v1/sessions", {"start": False}, format="json")
    session_id = created.json()["id"]
    stranger = await sync_to_async(make_session)()
    await sync_to_async(publish)(_event(stranger.id))
    await sync_to_async(publish)(_event(session_id))
    assert (await stream.receive_json_from(timeout=5))["session"]["id"] == session_id
    await stream.disconnect()


async def test_another_tenants_event_is_no_place_to_resume_from(tenants, make_scoped_key) -> None:
    from django.db import transaction

    from sessions_app.events import outbox_event

    a, b = tenants

    @sync_to_async
    def emit(session):
        with transaction.atomic():
            return outbox_event(session, "message.received", "/x")

    theirs = await emit(b)
    _, key = await sync_to_async(make_scoped_key)(sessions=[a], scopes=["read"])
    stream = WebsocketCommunicator(
        application,
        f"/ws/events/?after={theirs['id']}",
        headers=[HOST, (b"x-api-key", key.encode())],
    )
    assert (await stream.connect(timeout=10))[0]
    message = await stream.receive_json_from(timeout=5)
    assert message["error"]["code"] == "event_unknown"  # as if it never was
    closed = await stream.receive_output(timeout=5)
    assert closed["code"] == 4404
