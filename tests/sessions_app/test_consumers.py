"""The session WebSockets, through the real ASGI router (origin check, auth, groups)."""

from __future__ import annotations

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core import signing
from django.db import connections
from django.test import Client

from gateway.asgi import application
from sessions_app import qr
from sessions_app.services import session_set_status
from sessions_app.tokens import SALT, ws_token_make

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
ORIGIN = (b"origin", b"http://localhost:8000")


@pytest_asyncio.fixture(autouse=True)
async def _close_connections():
    yield
    await sync_to_async(connections.close_all)()


def socket(path: str, *headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=[ORIGIN, *headers])


async def test_a_token_opens_its_session_with_the_current_state_then_every_change(
    api,
    make_session,
) -> None:
    session = await sync_to_async(make_session)(status="starting", lease_epoch=1)
    await sync_to_async(qr.code_store)(
        session_id=session.id, kind="qr", code="2@now", expires_in=30
    )
    response = await sync_to_async(api.post)(f"/api/v1/sessions/{session.id}/ws-token")
    assert response.status_code == 201
    body = response.json()
    assert body["url"].startswith("ws://testserver/ws/sessions/")

    communicator = socket(f"/ws/sessions/{session.id}/?token={body['token']}")
    connected, _ = await communicator.connect()

    assert connected
    status = await communicator.receive_json_from()
    assert (status["type"], status["session"]["status"]) == ("session.status", "starting")
    current_qr = await communicator.receive_json_from()
    assert (current_qr["type"], current_qr["qr"]["code"]) == ("session.qr", "2@now")
    await sync_to_async(session_set_status)(
        session_id=session.id, status="scan_qr", epoch=1, qr={"code": "2@next", "expires_at": "x"}
    )
    pushed = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
    assert [m["type"] for m in pushed] == ["session.status", "session.qr"]
    assert (pushed[0]["session"]["status"], pushed[1]["qr"]["code"]) == ("scan_qr", "2@next")
    await communicator.disconnect()
    layer = get_channel_layer()
    if hasattr(layer, "groups"):  # the in-memory layer: the group is empty again
        assert not layer.groups.get(f"session.{session.id}")


@pytest.mark.parametrize("case", ["none", "other-session", "tampered", "expired"])
async def test_anything_but_a_valid_token_for_this_session_is_refused(
    make_session,
    case: str,
    settings,
) -> None:
    session = await sync_to_async(make_session)()
    other = await sync_to_async(make_session)()
    token = {
        "none": "",
        "other-session": ws_token_make(other.id),
        "tampered": ws_token_make(session.id)[:-2] + "xx",
        "expired": signing.TimestampSigner(salt=SALT).sign_object({"s": str(session.id)}),
    }[case]
    if case == "expired":
        settings.WS_TOKEN_SECONDS = -1
    communicator = socket(f"/ws/sessions/{session.id}/?token={token}")
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.wait()


async def test_a_foreign_origin_is_refused_even_with_a_token(make_session) -> None:
    session = await sync_to_async(make_session)()
    communicator = WebsocketCommunicator(
        application,
        f"/ws/sessions/{session.id}/?token={ws_token_make(session.id)}",
        headers=[(b"origin", b"https://evil.example")],
    )
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.wait()


async def test_staff_watch_every_session(staff_user, make_session) -> None:
    client = Client()
    await sync_to_async(client.force_login)(staff_user)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())
    session = await sync_to_async(make_session)(status="stopped", lease_epoch=1)

    fleet = socket("/ws/sessions/", cookie)
    assert (await fleet.connect())[0]
    await sync_to_async(session_set_status)(session_id=session.id, status="starting", epoch=1)
    message = await fleet.receive_json_from(timeout=5)
    assert (message["type"], message["session"]["id"]) == ("session.status", str(session.id))
    await fleet.disconnect()
    anonymous = socket("/ws/sessions/")
    assert not (await anonymous.connect())[0]
    await anonymous.wait()
