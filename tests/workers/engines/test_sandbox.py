"""The engine contract, on the sandbox engine: everything the runtime relies on."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

import pytest
import pytest_asyncio

from workers.engines.base import (
    Connected,
    Contact,
    Disconnected,
    EngineError,
    Location,
    LoggedOut,
    Media,
    MessageReceived,
    OutboundMessage,
    PairCode,
    QrCode,
    Receipt,
    StreamReplaced,
)
from workers.engines.sandbox import SandboxEngine, SandboxTimings, SandboxWorld
from workers.engines.store import store_path

pytestmark = [pytest.mark.asyncio, pytest.mark.smoke]

FAST = SandboxTimings(
    qr_first=0.3,
    qr_next=0.1,
    qr_rotations=2,
    reconnect_delay=0.05,
    delivered_after=0.05,
    read_after=0.1,
    played_after=0.05,
    push_poll=0.05,
)
PHONE = "+15550001"
TO = "15550002@s.whatsapp.net"


@pytest.fixture
def world(tmp_path: Path) -> SandboxWorld:
    return SandboxWorld(tmp_path / "world")


@pytest_asyncio.fixture
async def engine(world: SandboxWorld):
    engine = SandboxEngine(world, worker="worker-a", timings=FAST)
    yield engine
    await engine.close()


async def next_event(engine: SandboxEngine, kind: type, timeout: float = 5):
    """The next event of `kind`, skipping others; fails after `timeout` seconds."""

    async def find():
        async for event in engine.events():
            if isinstance(event, kind):
                return event
        return None

    return await asyncio.wait_for(find(), timeout)


async def linked(engine: SandboxEngine, auth: Path, session: str = "s1") -> Connected:
    await engine.start(session, auth)
    await next_event(engine, QrCode)
    await engine.scan(session, PHONE)
    return await next_event(engine, Connected)


async def test_linking_shows_rotating_qr_codes_then_times_out(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    await engine.start("s1", tmp_path / "auth")
    codes = [await next_event(engine, QrCode) for _ in range(3)]

    assert len({qr.code for qr in codes}) == 3
    assert [qr.expires_in for qr in codes] == [0.3, 0.1, 0.1]
    closed = await next_event(engine, Disconnected)
    assert (closed.code, closed.will_reconnect) == ("qr_timeout", False)
    assert engine.status("s1") == "stopped"


async def test_scanning_links_the_session_and_writes_its_store(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    connected = await linked(engine, tmp_path / "auth")

    assert (connected.phone_number, connected.jid) == (PHONE, "15550001@s.whatsapp.net")
    assert store_path(tmp_path / "auth").exists()
    assert [e["event"] for e in world.read_log("s1")] == ["connect"]
    assert world.read_log("s1")[0]["worker"] == "worker-a"


async def test_another_worker_reconnects_from_the_store_without_a_scan(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    await engine.stop("s1")
    shutil.copytree(tmp_path / "auth", tmp_path / "restored")  # as a snapshot restore would
    other = SandboxEngine(world, worker="worker-b", timings=FAST)

    await other.start("s1", tmp_path / "restored")
    first = await next_event(other, Connected | QrCode)

    assert isinstance(first, Connected)
    assert first.phone_number == PHONE
    log = world.read_log("s1")
    assert [(e["event"], e["worker"]) for e in log] == [
        ("connect", "worker-a"),
        ("disconnect", "worker-a"),
        ("connect", "worker-b"),
    ]
    await other.close()


async def test_logout_unlinks_the_device_and_old_stores_stop_working(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    shutil.copytree(tmp_path / "auth", tmp_path / "old-snapshot")

    await engine.logout("s1")

    assert isinstance(await next_event(engine, LoggedOut), LoggedOut)
    assert not store_path(tmp_path / "auth").exists()
    await engine.start("s1", tmp_path / "old-snapshot")
    assert isinstance(await next_event(engine, LoggedOut | Connected), LoggedOut)
    assert not store_path(tmp_path / "old-snapshot").exists()


async def test_a_text_is_sent_with_our_id_and_climbs_to_read(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")

    result = await engine.send("s1", OutboundMessage(id="MSG1", to=TO, type="text", text="hi"))

    assert result.wa_message_id == "MSG1"
    receipts = [await next_event(engine, Receipt) for _ in range(2)]
    assert [(r.status, r.message_ids) for r in receipts] == [
        ("delivered", ("MSG1",)),
        ("read", ("MSG1",)),
    ]
    assert [(m["id"], m["text"]) for m in world.phone_messages("s1")] == [("MSG1", "hi")]


async def test_a_voice_note_is_played(engine: SandboxEngine, tmp_path: Path) -> None:
    await linked(engine, tmp_path / "auth")
    audio = tmp_path / "note.ogg"
    audio.write_bytes(b"OggS" + b"\0" * 60)

    await engine.send(
        "s1",
        OutboundMessage(id="V1", to=TO, type="voice", media=Media(audio, "audio/ogg; codecs=opus")),
    )

    statuses = [(await next_event(engine, Receipt)).status for _ in range(3)]
    assert statuses == ["delivered", "read", "played"]


async def test_every_message_type_reaches_the_phone(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    media = Media(image, "image/png", "cat.png")
    messages = [
        OutboundMessage(id="T", to=TO, type="text", text="hello", reply_to="X1"),
        OutboundMessage(id="I", to=TO, type="image", caption="a cat", media=media),
        OutboundMessage(id="VI", to=TO, type="video", media=media),
        OutboundMessage(id="A", to=TO, type="audio", media=media),
        OutboundMessage(id="D", to=TO, type="document", media=media),
        OutboundMessage(id="L", to=TO, type="location", location=Location(52.5, 13.4, "Berlin")),
        OutboundMessage(id="C", to=TO, type="contact", contact=Contact("Ann", "+15550003")),
        OutboundMessage(id="R", to=TO, type="reaction", reaction="👍", reply_to="T"),
    ]
    for message in messages:
        await engine.send("s1", message)

    received = {m["id"]: m for m in world.phone_messages("s1")}
    assert list(received) == [m.id for m in messages]
    assert received["T"]["reply_to"] == "X1"
    assert received["I"]["caption"] == "a cat"
    assert received["I"]["media"]["size"] == 28
    assert received["L"]["location"] == [52.5, 13.4]
    assert received["C"]["contact"] == "Ann"
    assert received["R"]["reaction"] == "👍"


async def test_a_retried_id_reaches_the_phone_once(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    message = OutboundMessage(id="ONCE", to=TO, type="text", text="hi")

    await engine.send("s1", message)
    await engine.send("s1", message)

    assert [m["id"] for m in world.phone_messages("s1")] == ["ONCE"]


async def test_numbers_ending_in_0000_are_not_on_whatsapp(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")

    with pytest.raises(EngineError) as error:
        await engine.send(
            "s1", OutboundMessage(id="N", to="15550000@s.whatsapp.net", type="text", text="hi")
        )
    assert (error.value.permanent, error.value.code) == (True, "not_on_whatsapp")
    checks = await engine.check_numbers("s1", ["+15550000", "+15550005"])
    assert [(c.phone_number, c.on_whatsapp) for c in checks] == [
        ("+15550000", False),
        ("+15550005", True),
    ]


async def test_commands_need_a_started_and_connected_session(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    with pytest.raises(EngineError) as error:
        await engine.send("nope", OutboundMessage(id="X", to=TO, type="text", text="hi"))
    assert error.value.code == "not_started"
    await engine.start("s1", tmp_path / "auth")
    with pytest.raises(EngineError) as error:
        await engine.send("s1", OutboundMessage(id="X", to=TO, type="text", text="hi"))
    assert (error.value.code, error.value.permanent) == ("not_connected", False)


async def test_a_pairing_code_links_as_the_given_number(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    await engine.start("s1", tmp_path / "auth")
    code = await engine.request_pair_code("s1", "+15550009")

    event = await next_event(engine, PairCode)
    assert event.code == code and len(code) == 9 and code[4] == "-"
    await engine.scan("s1")
    assert (await next_event(engine, Connected)).phone_number == "+15550009"


async def test_inbound_messages_carry_the_number_behind_a_lid(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")

    await engine.receive("s1", sender_phone="+15550004", text="hello", as_lid=True)
    await engine.receive(
        "s1",
        sender_phone="+15550004",
        type="image",
        text="look",
        media=b"\x89PNG...",
        mime_type="image/png",
        filename="a.png",
    )

    text = (await next_event(engine, MessageReceived)).message
    assert text.sender.endswith("@lid") and text.sender_phone == "+15550004"
    assert text.text == "hello"
    image = (await next_event(engine, MessageReceived)).message
    assert (image.type, image.caption, image.media.mime_type) == ("image", "look", "image/png")
    assert await engine.download("s1", image.media, tmp_path / "got") == len(b"\x89PNG...")
    assert (tmp_path / "got").read_bytes() == b"\x89PNG..."


async def test_a_dropped_connection_comes_back_by_itself(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")

    await engine.drop_connection("s1")

    assert (await next_event(engine, Disconnected)).will_reconnect
    assert isinstance(await next_event(engine, Connected), Connected)


async def test_a_remote_logout_deletes_the_store(engine: SandboxEngine, tmp_path: Path) -> None:
    await linked(engine, tmp_path / "auth")
    await engine.remote_logout("s1")
    assert (await next_event(engine, LoggedOut)).reason == "unlinked from the phone"
    assert not store_path(tmp_path / "auth").exists()
    assert engine.status("s1") == "stopped"


async def test_a_replaced_stream_closes_our_connection(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    await engine.replace("s1")
    assert isinstance(await next_event(engine, StreamReplaced), StreamReplaced)
    assert engine.status("s1") == "stopped"
    assert store_path(tmp_path / "auth").exists()  # a takeover never deletes auth state
    last = world.read_log("s1")[-1]
    assert (last["event"], last["reason"]) == ("disconnect", "replaced by another connection")


async def test_stop_keeps_the_store_and_logs_the_disconnect(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    await engine.mark_read("s1", TO, ["IN1"])
    await engine.set_chat_presence("s1", TO, "typing")
    await engine.stop("s1")

    assert store_path(tmp_path / "auth").exists()
    assert [e["event"] for e in world.read_log("s1")] == [
        "connect",
        "mark_read",
        "typing",
        "disconnect",
    ]
    assert engine.status("s1") == "stopped"


async def test_a_second_connection_replaces_the_first_as_on_whatsapp(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    other = SandboxEngine(world, worker="worker-b", timings=FAST)
    await other.start("s1", tmp_path / "auth")  # same credentials, another process
    await next_event(other, Connected)

    with pytest.raises(EngineError):
        await engine.send("s1", OutboundMessage(id="LATE", to=TO, type="text", text="hi"))

    assert isinstance(await next_event(engine, StreamReplaced), StreamReplaced)
    assert [(e["event"], e["worker"]) for e in world.read_log("s1")] == [
        ("connect", "worker-a"),
        ("disconnect", "worker-a"),
        ("connect", "worker-b"),
    ]
    assert world.phone_messages("s1") == []  # the replaced connection delivered nothing
    await other.close()


async def test_another_connection_taking_over_is_learnt_at_once(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    """WhatsApp pushes the stream error; nothing has to be sent first."""
    await linked(engine, tmp_path / "auth")
    other = SandboxEngine(world, worker="worker-b", timings=FAST)
    await other.start("s1", tmp_path / "auth")
    await next_event(other, Connected)
    assert (await next_event(engine, StreamReplaced)).session_id == "s1"
    assert engine.status("s1") == "stopped"
    await other.close()


async def receipts_of(engine: SandboxEngine, mode: str, message: OutboundMessage) -> list[str]:
    await engine.receipts("s1", mode)
    await engine.send("s1", message)
    statuses = []
    with contextlib.suppress(TimeoutError):
        while True:  # every receipt the phone sends comes within a second here
            statuses.append((await next_event(engine, Receipt, timeout=1)).status)
    return statuses


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("normal", ["delivered", "read"]),
        ("missing", ["delivered"]),
        ("duplicated", ["delivered", "delivered", "read", "read"]),
        ("out_of_order", ["read", "delivered"]),
    ],
)
async def test_receipts_come_as_they_do_in_real_life(
    engine: SandboxEngine, tmp_path: Path, mode: str, expected: list[str]
) -> None:
    await linked(engine, tmp_path / "auth")
    message = OutboundMessage(id="R1", to=TO, type="text", text="hi")
    assert await receipts_of(engine, mode, message) == expected


async def test_receipts_held_while_away_arrive_with_the_next_connection(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    message = OutboundMessage(id="R2", to=TO, type="text", text="hi")
    assert await receipts_of(engine, "after_reconnect", message) == []
    await engine.receipts("s1", "normal")
    await engine.drop_connection("s1")
    await next_event(engine, Connected)
    first = await next_event(engine, Receipt)
    assert (first.message_ids, first.status) == (("R2",), "delivered")


async def test_an_unresolvable_lid_sender_and_a_message_from_the_phone_itself(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    await engine.receive("s1", sender_phone="+15550004", text="who?", as_lid=True, resolvable=False)
    hidden = (await next_event(engine, MessageReceived)).message
    assert hidden.sender.endswith("@lid") and hidden.sender_phone == ""
    await engine.receive("s1", sender_phone="+15550004", text="typed on the phone", from_me=True)
    mine = (await next_event(engine, MessageReceived)).message
    assert mine.from_me and mine.chat == "15550004@s.whatsapp.net"
    assert (mine.sender, mine.sender_phone) == ("15550001@s.whatsapp.net", PHONE)


async def test_a_drop_while_linking_stops_the_codes_and_ends_linking(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    await engine.start("s1", tmp_path / "auth")
    await next_event(engine, QrCode)
    await engine.drop_connection("s1")
    ended = await next_event(engine, Disconnected)
    assert (ended.code, ended.will_reconnect) == ("qr_timeout", False)


async def test_a_ban_ends_the_session_and_refuses_the_next_login(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    await engine.ban("s1", expire_seconds=7200)
    banned = await next_event(engine, Disconnected)
    assert (banned.code, banned.will_reconnect) == ("temporary_ban", False)
    assert "7200 s" in banned.reason
    await engine.start("s1", tmp_path / "auth")
    again = await next_event(engine, Disconnected)
    assert again.code == "temporary_ban" and engine.status("s1") == "stopped"


async def test_an_outdated_client_ends_the_session(engine: SandboxEngine, tmp_path: Path) -> None:
    await linked(engine, tmp_path / "auth")
    await engine.outdate("s1")
    ended = await next_event(engine, Disconnected)
    assert (ended.code, ended.will_reconnect) == ("client_outdated", False)


async def test_presence_needs_online_and_a_new_connection_forgets_it(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    await engine.subscribe_presence("s1", TO)
    assert not await engine.presence("s1", sender_phone=f"+{TO.partition('@')[0]}", state="typing")
    await engine.set_presence("s1", "available")
    assert await engine.presence("s1", sender_phone=f"+{TO.partition('@')[0]}", state="available")
    await engine.drop_connection("s1")
    await next_event(engine, Connected)
    assert not await engine.presence("s1", sender_phone=f"+{TO.partition('@')[0]}", state="typing")


async def test_the_blocklist_is_the_account_s_and_outlives_the_connection(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    blocked = await engine.update_blocklist("s1", TO, "block")
    assert [(b.jid, b.phone_number) for b in blocked] == [(TO, "+15550002")]
    with pytest.raises(EngineError) as refused:
        await engine.update_blocklist("s1", "4915100000000@s.whatsapp.net", "block")
    assert refused.value.code == "not_on_whatsapp"
    await engine.stop("s1")
    other = SandboxEngine(world, worker="w2", timings=FAST)  # another worker, the same account
    await other.start("s1", tmp_path / "auth")
    await next_event(other, Connected)
    assert [b.jid for b in await other.blocklist("s1")] == [TO]
    assert await other.update_blocklist("s1", TO, "unblock") == []
    await other.close()
