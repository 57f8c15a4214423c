"""The session WebSockets, through the real ASGI router (origin check, auth, groups)."""

from __future__ import annotations

import asyncio
import time

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core import signing
from django.db import connections
from django.test import Client

from gateway.asgi import application
from gateway.core import membership
from sessions_app.consumers import TOKEN_EXPIRED
from sessions_app.services import qr, session_set_status
from sessions_app.tokens import SALT, ws_token_make

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
ORIGIN = (b"origin", b"http://localhost:8000")
HOST = (b"host", b"localhost:8000")


@pytest_asyncio.fixture(autouse=True)
async def _close_connections():
    yield
    await sync_to_async(connections.close_all)()


def socket(path: str, *headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=[ORIGIN, HOST, *headers])


async def test_a_token_opens_its_session_with_the_current_state_then_every_change(
    api,
    make_session,
) -> None:
    session = await sync_to_async(make_session)(status="starting", lease_epoch=1)
    await sync_to_async(qr.codes_keep)(
        session_id=session.id, codes={"qr": qr.code_made("2@now", 30)}
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
    assert set(current_qr["qr"]) == {"code", "expires_at"}  # the text: the browser draws it
    await sync_to_async(session_set_status)(
        session_id=session.id, status="scan_qr", epoch=1, qr={"code": "2@next", "expires_at": "x"}
    )
    pushed = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
    assert [m["type"] for m in pushed] == ["session.status", "session.qr"]
    assert (pushed[0]["session"]["status"], pushed[1]["qr"]["code"]) == ("scan_qr", "2@next")
    assert "image" not in pushed[1]["qr"]
    await communicator.disconnect()
    layer = get_channel_layer()
    if hasattr(layer, "groups"):  # the in-memory layer: the group is empty again
        assert not layer.groups.get(f"session.{session.id}")


async def forget(group: str) -> None:
    """What a FLUSHALL (or channels_redis's `group_expiry`) does to a group: gone, no error."""
    layer = get_channel_layer()
    if hasattr(layer, "groups"):  # the in-memory layer
        layer.groups.pop(group, None)
    else:
        await layer.connection(layer.consistent_hash(group)).delete(layer._group_key(group))


async def members(group: str) -> int:
    layer = get_channel_layer()
    if hasattr(layer, "groups"):
        return len(layer.groups.get(group, {}))
    return await layer.connection(layer.consistent_hash(group)).zcard(layer._group_key(group))


async def test_a_socket_joins_its_group_again_when_the_layer_forgets_it(
    make_session, monkeypatch
) -> None:
    """A flushed Redis forgets the group without an error: the socket joins it again, and gets
    the next change (it got none, ever: a link page showed no new QR code)."""
    monkeypatch.setattr(membership, "REJOIN_SECONDS", 0.05)
    session = await sync_to_async(make_session)(status="starting", lease_epoch=1)
    communicator = socket(f"/ws/sessions/{session.id}/?token={ws_token_make(session.id)}")
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()  # the current state
    group = f"session.{session.id}"
    await forget(group)
    deadline = time.monotonic() + 5
    while not await members(group):
        assert time.monotonic() < deadline, "the socket did not join its group again"
        await asyncio.sleep(0.02)
    await sync_to_async(session_set_status)(session_id=session.id, status="scan_qr", epoch=1)
    pushed = await communicator.receive_json_from(timeout=5)
    assert (pushed["type"], pushed["session"]["status"]) == ("session.status", "scan_qr")
    await communicator.disconnect()
    assert not await members(group)  # no rejoin after it left


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
        headers=[(b"origin", b"https://evil.example"), HOST],
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


async def _staff_cookie(user) -> tuple[bytes, bytes]:
    client = Client()
    await sync_to_async(client.force_login)(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


@pytest.fixture
def viewer(django_user_model):
    """A staff member who may only view sessions (not a superuser)."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_session", content_type__app_label="sessions_app")
    )
    return user


async def test_staff_who_may_view_sessions_watch_them_without_being_superusers(
    viewer, make_session
) -> None:
    cookie = await _staff_cookie(viewer)
    session = await sync_to_async(make_session)(status="stopped")
    for path in ("/ws/sessions/", f"/ws/sessions/{session.id}/"):
        communicator = socket(path, cookie)
        connected, _ = await communicator.connect()
        assert connected, path
        await communicator.disconnect()


async def test_staff_who_may_only_view_never_get_a_qr_or_pairing_code(
    viewer, staff_user, make_session
) -> None:
    """Whoever has the QR code can link a phone to the session: that is a change."""
    session = await sync_to_async(make_session)(status="scan_qr", lease_epoch=1)
    await sync_to_async(qr.codes_keep)(
        session_id=session.id, codes={"qr": qr.code_made("2@now", 30)}
    )
    watching = socket(f"/ws/sessions/{session.id}/", await _staff_cookie(viewer))
    linking = socket(f"/ws/sessions/{session.id}/", await _staff_cookie(staff_user))
    assert (await watching.connect())[0] and (await linking.connect())[0]
    assert (await watching.receive_json_from())["type"] == "session.status"
    assert [(await linking.receive_json_from())["type"] for _ in range(2)] == [
        "session.status",
        "session.qr",
    ]
    await sync_to_async(session_set_status)(
        session_id=session.id, status="pairing", epoch=1, pair_code={"code": "ABCD-EFGH"}
    )
    pushed = await watching.receive_json_from(timeout=5)
    assert pushed["type"] == "session.status" and "pair_code" not in pushed
    assert await watching.receive_nothing(timeout=0.5)
    assert [(await linking.receive_json_from(timeout=5))["type"] for _ in range(2)] == [
        "session.status",
        "session.pair_code",
    ]
    await watching.disconnect()
    await linking.disconnect()


async def test_staff_without_the_view_permission_are_refused(
    django_user_model, make_session
) -> None:
    user = await sync_to_async(django_user_model.objects.create_user)(
        "nobody", password="x", is_staff=True
    )
    session = await sync_to_async(make_session)()
    for path in ("/ws/sessions/", f"/ws/sessions/{session.id}/"):
        communicator = socket(path, await _staff_cookie(user))
        assert not (await communicator.connect())[0]
        await communicator.wait()


async def test_frames_from_the_client_are_ignored_json_or_not(make_session) -> None:
    session = await sync_to_async(make_session)(status="starting", lease_epoch=1)
    communicator = socket(f"/ws/sessions/{session.id}/?token={ws_token_make(session.id)}")
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()  # the current state
    await communicator.send_to(text_data="not json {")
    await communicator.send_to(bytes_data=b"\x00\xff")
    await communicator.send_json_to({"type": "anything"})
    await sync_to_async(session_set_status)(session_id=session.id, status="scan_qr", epoch=1)
    pushed = await communicator.receive_json_from(timeout=5)  # still open, still pushing
    assert pushed["session"]["status"] == "scan_qr"
    await communicator.disconnect()


async def test_a_token_socket_is_closed_when_its_token_expires(make_session, settings) -> None:
    settings.WS_TOKEN_SECONDS = 1
    session = await sync_to_async(make_session)(status="scan_qr")
    communicator = socket(f"/ws/sessions/{session.id}/?token={ws_token_make(session.id)}")
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()
    closed = await communicator.receive_output(timeout=10)
    assert closed == {"type": "websocket.close", "code": TOKEN_EXPIRED}


async def test_a_staff_socket_is_not_closed_by_any_token_expiry(
    staff_user, make_session, settings
) -> None:
    settings.WS_TOKEN_SECONDS = 1
    session = await sync_to_async(make_session)(status="scan_qr")
    communicator = socket(f"/ws/sessions/{session.id}/", await _staff_cookie(staff_user))
    assert (await communicator.connect())[0]
    await communicator.receive_json_from()
    assert await communicator.receive_nothing(timeout=2)
    await communicator.disconnect()


@pytest.mark.parametrize("path", ["/ws/nope/", "/ws/sessions/not-a-uuid/", "/ws/", "/elsewhere"])
async def test_a_socket_to_a_path_nobody_serves_is_refused(path: str) -> None:
    communicator = socket(path)
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.wait()
