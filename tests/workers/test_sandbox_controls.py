"""Sandbox controls from the API and the shell reach the engine through the channel layer."""

from __future__ import annotations

import asyncio
import base64
import copy
import io
import uuid
from pathlib import Path

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.core.management import call_command
from django.db import connections
from rest_framework.test import APIClient

from sessions_app.services.calls import control_group
from tests.workers.engines.test_sandbox import FAST, next_event
from tests.workers.runtime.test_runtime import until
from workers.engines.base import (
    BlocklistChanged,
    Connected,
    Disconnected,
    MessageReceived,
    Presence,
    QrCode,
    StreamReplaced,
)
from workers.engines.sandbox import SandboxEngine, SandboxWorld
from workers.runtime.controls import ControlListener


@pytest_asyncio.fixture
async def running(make_session, tmp_path: Path):
    """A sandbox session showing QR codes in an engine whose listener follows the channel layer."""
    session = await sync_to_async(make_session)(engine="sandbox")
    engine = SandboxEngine(SandboxWorld(tmp_path / "world"), worker="w1", timings=FAST)
    listener = ControlListener(lambda _: engine, get_channel_layer(), retry_seconds=0.05)
    await listener.join(str(session.id))
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    await engine.start(str(session.id), tmp_path / "auth")
    await next_event(engine, QrCode)
    while not listener.channel:  # subscribed before the test publishes
        await asyncio.sleep(0.01)
    yield session, engine
    stop.set()
    await asyncio.wait_for(task, 5)
    await engine.close()
    # The ORM ran in sync_to_async's thread: close its connection, or the test database cannot be
    # dropped at the end of the run.
    await sync_to_async(connections.close_all)()


def post(api: APIClient, session, action: str, body: dict | None = None):
    return sync_to_async(api.post)(
        f"/api/v1/sandbox/sessions/{session.id}/{action}", body or {}, format="json"
    )


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_api_drives_the_simulated_phone(running, api: APIClient, tmp_path: Path) -> None:
    session, engine = running

    response = await post(api, session, "scan", {"phone_number": "+15550001"})
    assert response.status_code == 202
    assert response.json() == {"session_id": str(session.id), "action": "scan", "sent": True}
    assert (await next_event(engine, Connected)).phone_number == "+15550001"

    await post(api, session, "receive", {"from": "+15550002", "text": "hello", "as_lid": True})
    message = (await next_event(engine, MessageReceived)).message
    assert (message.text, message.sender_phone) == ("hello", "+15550002")

    picture = base64.b64encode(b"\x89PNG-bytes").decode()
    await post(
        api,
        session,
        "receive",
        {
            "from": "+15550002",
            "type": "image",
            "text": "look",
            "media": {"data": picture, "mime_type": "image/png"},
        },
    )
    image = (await next_event(engine, MessageReceived)).message
    await engine.download(str(session.id), image.media, tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == b"\x89PNG-bytes"

    await post(api, session, "disconnect")
    assert (await next_event(engine, Disconnected)).will_reconnect
    await next_event(engine, Connected)

    await post(api, session, "receipts", {"mode": "missing"})
    await post(api, session, "freeze")
    await post(api, session, "disconnect")  # applied in order: after the freeze, so it happened
    assert (await next_event(engine, Disconnected)).will_reconnect
    log = engine.world.read_log(str(session.id))
    assert [e["event"] for e in log].count("frozen") == 1  # the freeze reached the servers
    connected = await next_event(engine, Connected)
    await engine.probe(connected.session_id)  # a new connection is not frozen
    await engine.set_presence(connected.session_id, "available")  # or nothing would arrive
    await post(api, session, "presence", {"from": "+15550002", "state": "recording"})
    presence = await next_event(engine, Presence)
    assert (presence.chat, presence.state) == ("15550002@s.whatsapp.net", "recording")
    response = await post(api, session, "block", {"phone_number": "+15550002", "action": "block"})
    assert response.status_code == 202, response.json()
    [change] = (await next_event(engine, BlocklistChanged)).changes
    assert (change.jid, change.action) == ("15550002@s.whatsapp.net", "block")
    await post(api, session, "replace")
    assert isinstance(await next_event(engine, StreamReplaced), StreamReplaced)
    assert engine.status(str(session.id)) == "stopped"  # the frozen connection is gone


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_listener_never_starves_websockets_in_the_same_process(running) -> None:
    """`serve` runs the listener beside the WebSocket consumers on one loop and one layer: a
    message for a consumer's channel arrives while the listener is waiting for controls."""
    layer = get_channel_layer()
    consumer = await layer.new_channel()
    await layer.group_add("browsers", consumer)
    while not (layer.receive_lock and layer.receive_lock.locked()):
        await asyncio.sleep(0.01)  # until the listener is inside its blocking read
    await layer.group_send("browsers", {"type": "session.status", "n": 1})
    assert (await asyncio.wait_for(layer.receive(consumer), 3))["n"] == 1


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_sandbox_command_does_the_same(running) -> None:
    session, engine = running
    out = io.StringIO()
    await sync_to_async(call_command)(
        "sandbox", "scan", str(session.id), "--phone", "+15550007", stdout=out
    )
    assert "sent scan" in out.getvalue()
    assert (await next_event(engine, Connected)).phone_number == "+15550007"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "body", "field", "status"),
    [
        ("scan", {"phone_number": "15550001"}, "phone_number", 400),
        ("receive", {"from": "+1", "text": "x"}, "from", 400),
        ("receive", {"from": "+15550002", "type": "gif", "text": "x"}, "type", 400),
        ("receive", {"from": "+15550002"}, "text", 422),
        ("receipts", {"mode": "sometimes"}, "mode", 400),
        ("ban", {"expire_seconds": 0}, "expire_seconds", 400),
        ("presence", {"from": "+15550002", "state": "dancing"}, "state", 400),
        ("block", {"phone_number": "+15550002", "action": "mute"}, "action", 400),
        ("presence", {"from": "+15550002", "state": "typing", "group": "1@lid"}, "group", 400),
        ("receive", {"from": "+15550002", "type": "image"}, "media", 422),
        (
            "receive",
            {
                "from": "+15550002",
                "type": "image",
                "media": {"data": "not base64!", "mime_type": "image/png"},
            },
            "media",
            422,
        ),
    ],
)
def test_bad_control_input_is_refused(
    api: APIClient,
    make_session,
    action: str,
    body: dict,
    field: str,
    status: int,
) -> None:
    session = make_session(engine="sandbox")
    response = api.post(f"/api/v1/sandbox/sessions/{session.id}/{action}", body, format="json")
    assert response.status_code == status
    assert field in response.json()["error"]["details"]


@pytest.mark.django_db
def test_controls_are_for_sandbox_sessions_only(api: APIClient, make_session) -> None:
    session = make_session(engine="neonize")
    response = api.post(f"/api/v1/sandbox/sessions/{session.id}/disconnect")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_a_sandbox_session"


@pytest.mark.django_db
def test_controls_are_404_when_the_sandbox_is_disabled(
    api: APIClient,
    make_session,
    settings,
) -> None:
    settings.SANDBOX_ENABLED = False
    session = make_session(engine="sandbox")
    response = api.post(f"/api/v1/sandbox/sessions/{session.id}/scan", {}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "sandbox_disabled"


@pytest.mark.django_db
def test_controls_for_unknown_sessions_are_404(api: APIClient) -> None:
    response = api.post(f"/api/v1/sandbox/sessions/{uuid.uuid4()}/logout")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_controls_are_503_when_the_channel_layer_is_down(
    api: APIClient,
    make_session,
    settings,
) -> None:
    assert settings.REDIS_URL, "this test needs the Redis configuration of `make test`"
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["hosts"][0]["address"] = "redis://127.0.0.1:1/0"
    settings.CHANNEL_LAYERS = layers
    session = make_session(engine="sandbox")
    response = api.post(f"/api/v1/sandbox/sessions/{session.id}/logout")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"


@pytest.mark.asyncio
async def test_the_listener_survives_the_channel_layer_going_away(tmp_path: Path) -> None:
    """A layer that fails, then works again: the listener rejoins its groups and goes on."""
    from channels.layers import InMemoryChannelLayer

    class FlakyLayer(InMemoryChannelLayer):
        failures = 3

        async def receive(self, channel):
            if self.failures:
                self.failures -= 1
                raise ConnectionError("layer down")
            return await super().receive(channel)

    layer = FlakyLayer()
    engine = SandboxEngine(SandboxWorld(tmp_path / "world"), timings=FAST)
    listener = ControlListener(lambda _: engine, layer, retry_seconds=0.01)
    await listener.join("s1")
    await engine.start("s1", tmp_path / "auth")
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    while layer.failures or not listener.channel:  # failed three times, then subscribed again
        await asyncio.sleep(0.01)
    await scanned_through(layer, engine)
    stop.set()
    await asyncio.wait_for(task, 5)
    await engine.close()


async def scanned_through(layer, engine: SandboxEngine) -> None:
    """A scan control for session s1 sent through `layer` reaches `engine`."""
    scan = {"phone_number": "+1555"}
    message = {"type": "sandbox.control", "session_id": "s1", "action": "scan", "arguments": scan}
    await layer.group_send(control_group("s1"), message)
    assert (await next_event(engine, Connected)).phone_number == "+1555"


@pytest.mark.asyncio
async def test_the_listener_joins_its_groups_again_when_the_layer_forgets_them(
    tmp_path: Path,
) -> None:
    """A Redis flushed (or a membership channels_redis expired) forgets the groups without an
    error: the listener's canary does not come back, and it joins them again. Controls for its
    sessions went to nobody until the worker restarted."""
    from channels.layers import InMemoryChannelLayer

    layer = InMemoryChannelLayer()
    engine = SandboxEngine(SandboxWorld(tmp_path / "world"), timings=FAST)
    listener = ControlListener(lambda _: engine, layer, retry_seconds=0.01, check_seconds=0.05)
    await listener.join("s1")
    await engine.start("s1", tmp_path / "auth")
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    await until(lambda: listener.channel, 5, "the listener to subscribe")
    layer.groups.clear()  # what FLUSHALL does to channels_redis's groups
    await until(lambda: control_group("s1") in layer.groups, 5, "the groups joined again")
    await scanned_through(layer, engine)
    stop.set()
    await asyncio.wait_for(task, 5)
    await engine.close()


@pytest.mark.asyncio
async def test_a_slow_call_holds_up_only_its_own_session_s_controls() -> None:
    """Each session's controls in order, sessions side by side: a number check waiting on
    WhatsApp for one session does not hold another's up."""
    from channels.layers import InMemoryChannelLayer

    answered: list[tuple[str, list[str]]] = []
    whatsapp = asyncio.Event()

    class Engine:
        name = "double"

        async def check_numbers(self, session_id, phone_numbers):
            if session_id == "slow":
                await whatsapp.wait()
            answered.append((session_id, phone_numbers))
            return []

    layer, engine = InMemoryChannelLayer(), Engine()
    listener = ControlListener(lambda _: engine, layer, retry_seconds=0.01)
    for session_id in ("slow", "quick"):
        await listener.join(session_id)
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    await until(lambda: listener.channel, 5, "the listener to subscribe")
    for session_id, number in [("slow", "1"), ("slow", "2"), ("quick", "3")]:
        await layer.group_send(
            control_group(session_id),
            {
                "type": "session.call",
                "call_id": f"{session_id}-{number}",
                "session_id": session_id,
                "method": "check_numbers",
                "arguments": {"phone_numbers": [number]},
            },
        )
    await until(lambda: answered, 5, "the quick session's answer")
    assert answered == [("quick", ["3"])]  # while the slow session's first call still waits

    whatsapp.set()
    await until(lambda: len(answered) == 3, 5, "the slow session's answers")
    assert answered[1:] == [("slow", ["1"]), ("slow", ["2"])]  # its own calls in their order
    stop.set()
    await asyncio.wait_for(task, 5)


def test_the_api_offers_the_receipt_modes_and_presences_the_engine_knows() -> None:
    from sessions_app import sandbox
    from workers.engines import sandbox as engine

    assert sandbox.RECEIPT_MODES == engine.RECEIPT_MODES
    assert sandbox.PRESENCE_STATES == engine.PRESENCE_STATES
    assert sandbox.GROUP_EVENTS == engine.GROUP_EVENTS
