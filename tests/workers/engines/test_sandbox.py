"""The engine contract, on the sandbox engine: everything the runtime relies on."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import shutil
import time
from pathlib import Path

import pytest
import pytest_asyncio

from workers.engines.base import (
    Connected,
    Contact,
    Disconnected,
    EngineError,
    Group,
    GroupJoined,
    GroupMember,
    GroupParticipantsChanged,
    GroupUpdated,
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


async def next_event(engine: SandboxEngine, kind: type, timeout: float = 10):
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


# --- Groups ---------------------------------------------------------------------------------------

GROUP_EVENT_TYPES = GroupJoined | GroupUpdated | GroupParticipantsChanged
ME = "15550001@s.whatsapp.net"  # PHONE's JID
ANN = "15550003@s.whatsapp.net"  # a second session's number
BOB = "4915112345678@s.whatsapp.net"
NOBODY = "4915100000000@s.whatsapp.net"  # not on WhatsApp
SHY = "4915199999999@s.whatsapp.net"  # lets only an invite add them
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 32).decode()


async def linked_as(engine: SandboxEngine, auth: Path, session: str, phone: str) -> Connected:
    await engine.start(session, auth)
    await next_event(engine, QrCode)
    await engine.scan(session, phone)
    return await next_event(engine, Connected)


async def group_events(engine: SandboxEngine, count: int) -> list:
    """The next `count` group events, in order; then none may follow."""
    events = [await next_event(engine, GROUP_EVENT_TYPES) for _ in range(count)]
    with pytest.raises(TimeoutError):
        await next_event(engine, GROUP_EVENT_TYPES, timeout=0.2)
    return events


def roles(group: Group) -> list[tuple[str, str]]:
    return [(member.jid, member.role) for member in group.participants]


async def refused(call, code: str) -> EngineError:
    with pytest.raises(EngineError) as error:
        await call
    assert (error.value.code, error.value.permanent) == (code, True), str(error.value)
    return error.value


async def test_a_group_from_creation_to_leaving(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")

    created = await engine.create_group("s1", "Team", [BOB, NOBODY, SHY])

    group = created.group
    assert re.fullmatch(r"120363[0-9]{12}@g\.us", group.jid)
    assert (group.subject, group.owner, group.owner_phone) == ("Team", ME, PHONE)
    assert [(m.jid, m.phone_number, m.role) for m in group.participants] == [
        (ME, PHONE, "superadmin"),
        (BOB, "+4915112345678", "member"),
    ]
    assert [(r.jid, r.phone_number, r.status, r.error) for r in created.participants] == [
        (BOB, "+4915112345678", "ok", 0),
        (NOBODY, "+4915100000000", "not_found", 404),
        (SHY, "+4915199999999", "invite_required", 403),
    ]
    shy = created.participants[2]
    assert shy.invite_code and created.participants[0].invite_code == ""
    assert shy.invite_expires_at == pytest.approx(time.time() + 3 * 24 * 3600, abs=60)
    [joined] = await group_events(engine, 1)
    assert isinstance(joined, GroupJoined)
    assert (joined.session_id, joined.reason, joined.by, joined.by_phone) == (
        "s1",
        "created",
        ME,
        PHONE,
    )
    assert joined.group == group
    jid = group.jid

    updated = await engine.update_group("s1", jid, subject="Team 2", description="Our team")
    await engine.update_group("s1", jid, subject="Team 2", announce=True)  # the subject stays
    locked = await engine.update_group("s1", jid, locked=True)
    assert (updated.subject, updated.description) == ("Team 2", "Our team")
    assert (locked.announce, locked.locked) == (True, True)
    changes = await group_events(engine, 4)  # one per change, as WhatsApp notifies them
    assert [
        (type(e), e.group, e.by, e.by_phone, e.subject, e.description, e.announce, e.locked)
        for e in changes
    ] == [
        (GroupUpdated, jid, ME, PHONE, "Team 2", None, None, None),
        (GroupUpdated, jid, ME, PHONE, None, "Our team", None, None),
        (GroupUpdated, jid, ME, PHONE, None, None, True, None),
        (GroupUpdated, jid, ME, PHONE, None, None, None, True),
    ]

    promoted = await engine.update_participants("s1", jid, "promote", [BOB, NOBODY])
    assert [(r.jid, r.status, r.error) for r in promoted] == [
        (BOB, "ok", 0),
        (NOBODY, "not_found", 404),
    ]
    [promotion] = await group_events(engine, 1)
    assert isinstance(promotion, GroupParticipantsChanged)
    assert (promotion.action, promotion.participants, promotion.by) == (
        "promote",
        (GroupMember(BOB, "+4915112345678", "admin"),),
        ME,
    )
    assert roles(await engine.group_info("s1", jid)) == [(ME, "superadmin"), (BOB, "admin")]

    link = await engine.group_invite_link("s1", jid)
    assert re.fullmatch(r"https://chat\.whatsapp\.com/[A-Za-z0-9_-]{22}", link)
    assert await engine.group_invite_link("s1", jid) == link  # the same until it is reset
    new_link = await engine.group_invite_link("s1", jid, revoke=True)
    assert new_link != link and new_link.startswith("https://chat.whatsapp.com/")
    await linked_as(engine, tmp_path / "auth2", "s2", "+15550003")
    await refused(engine.join_group("s2", link), "invite_revoked")

    assert await engine.join_group("s2", new_link) == jid

    add, invited = await group_events(engine, 2)  # every participant hears of it
    assert isinstance(add, GroupParticipantsChanged) and isinstance(invited, GroupJoined)
    assert (add.session_id, add.action, add.participants, add.by) == (
        "s1",
        "add",
        (GroupMember(ANN, "+15550003", "member"),),
        ANN,
    )
    assert (invited.session_id, invited.reason, invited.by, invited.group.jid) == (
        "s2",
        "invite",
        ANN,
        jid,
    )
    assert roles(invited.group)[-1] == (ANN, "member")
    assert [g.jid for g in await engine.groups("s2")] == [jid]

    await engine.leave_group("s2", jid)

    left = await group_events(engine, 2)
    assert [(e.session_id, e.action, e.participants, e.by) for e in left] == [
        (s, "remove", (GroupMember(ANN, "+15550003", "member"),), ANN) for s in ("s1", "s2")
    ]
    assert await engine.groups("s2") == []
    await refused(engine.group_info("s2", jid), "not_in_group")
    await engine.leave_group("s1", jid)  # the creator leaves: the group stays for the others
    [gone] = await group_events(engine, 1)
    assert (gone.action, gone.participants) == ("remove", (GroupMember(ME, PHONE, "superadmin"),))
    assert await engine.groups("s1") == []
    record = world.group(jid)
    assert record is not None and record["participants"] == {BOB: "admin"}
    assert [(h["by"], h["what"], h["value"]) for h in record["history"]] == [
        (ME, "create", "Team"),
        (ME, "add", BOB),
        (ME, "subject", "Team 2"),
        (ME, "description", "Our team"),
        (ME, "announce", True),
        (ME, "locked", True),
        (ME, "promote", BOB),
        (ME, "invite_revoked", link.rpartition("/")[2]),
        (ANN, "join", ANN),
        (ANN, "leave", ANN),
        (ME, "leave", ME),
    ]


async def test_only_admins_manage_a_group_and_a_locked_one_s_info(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    await linked_as(engine, tmp_path / "auth2", "s2", "+15550003")
    jid = (await engine.create_group("s1", "Team", [ANN])).group.jid
    created, added = await group_events(engine, 2)
    assert (created.session_id, created.reason) == ("s1", "created")
    assert (added.session_id, added.reason, added.by, added.group.jid) == ("s2", "", ME, jid)

    for call in (
        engine.update_participants("s2", jid, "add", [BOB]),
        engine.update_participants("s2", jid, "remove", [ME]),
        engine.group_invite_link("s2", jid),
        engine.group_invite_link("s2", jid, revoke=True),
        engine.update_group("s2", jid, announce=True),  # a setting: admins only
    ):
        await refused(call, "not_admin")
    await engine.update_group("s2", jid, subject="Ann's name")  # info, in an unlocked group
    assert [e.subject for e in await group_events(engine, 2)] == ["Ann's name"] * 2
    await engine.update_group("s1", jid, locked=True)
    await group_events(engine, 2)
    await refused(engine.update_group("s2", jid, description="no"), "not_admin")
    await refused(engine.set_group_picture("s2", jid, JPEG), "not_admin")

    record = world.group(jid)
    assert record is not None
    assert (record["subject"], record["description"], record["picture"]) == ("Ann's name", "", "")
    assert record["participants"] == {ME: "superadmin", ANN: "member"}


async def test_groups_and_links_that_cannot_be_seen_are_refused(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    await linked_as(engine, tmp_path / "auth2", "s2", "+15550003")
    jid = (await engine.create_group("s1", "Team", [])).group.jid

    error = await refused(engine.group_info("s1", "120363000000000000@g.us"), "group_not_found")
    assert str(error) == "that group does not exist"
    await refused(
        engine.update_group("s1", "120363000000000000@g.us", subject="x"), "group_not_found"
    )
    error = await refused(engine.group_info("s2", jid), "not_in_group")
    assert str(error) == "you're not participating in that group"
    await refused(engine.leave_group("s2", jid), "not_in_group")
    await refused(engine.join_group("s2", "https://example.com/nope"), "invite_invalid")
    await refused(engine.join_group("s2", "A" * 22), "invite_invalid")  # nobody's code
    await refused(engine.create_group("s1", "", []), "bad_request")
    await refused(engine.create_group("s1", "x", ["123@lid"]), "bad_request")
    await refused(engine.update_participants("s1", jid, "ban", [BOB]), "bad_request")  # type: ignore[arg-type]
    with pytest.raises(EngineError) as error_info:
        await engine.groups("nope")
    assert error_info.value.code == "not_started"


async def test_a_bare_invite_code_joins_from_another_worker(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    """The groups are the servers': every worker's sessions see the same ones."""
    await linked(engine, tmp_path / "auth")
    jid = (await engine.create_group("s1", "Team", [])).group.jid
    code = (await engine.group_invite_link("s1", jid)).rpartition("/")[2]
    other = SandboxEngine(world, worker="worker-b", timings=FAST)
    await linked_as(other, tmp_path / "auth2", "s2", "+15550003")

    assert await other.join_group("s2", code) == jid
    assert await other.join_group("s2", code) == jid  # already in: nothing changes

    assert roles(await other.group_info("s2", jid)) == [(ME, "superadmin"), (ANN, "member")]
    assert roles(await engine.group_info("s1", jid)) == [(ME, "superadmin"), (ANN, "member")]
    assert [e.reason for e in await group_events(other, 1)] == ["invite"]
    await other.close()


async def test_adding_and_removing_answers_for_each_participant(
    engine: SandboxEngine, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    jid = (await engine.create_group("s1", "Team", [BOB])).group.jid
    await group_events(engine, 1)
    carl = "4915122222222@s.whatsapp.net"

    added = await engine.update_participants("s1", jid, "add", [BOB, NOBODY, SHY, carl])

    assert [(r.jid, r.status, r.error, bool(r.invite_code)) for r in added] == [
        (BOB, "already_member", 409, False),
        (NOBODY, "not_found", 404, False),
        (SHY, "invite_required", 403, True),
        (carl, "ok", 0, False),
    ]
    [event] = await group_events(engine, 1)  # only who was really added
    assert (event.action, [m.jid for m in event.participants]) == ("add", [carl])
    removed = await engine.update_participants("s1", jid, "remove", [carl, SHY])
    assert [(r.status, r.error) for r in removed] == [("ok", 0), ("not_found", 404)]
    [event] = await group_events(engine, 1)
    assert (event.action, event.participants) == (
        "remove",
        (GroupMember(carl, "+4915122222222", "member"),),
    )
    demoted = await engine.update_participants("s1", jid, "demote", [ME, BOB])
    assert [(r.status, r.error) for r in demoted] == [("refused", 403), ("ok", 0)]
    await group_events(engine, 0)  # nobody changed: no notification
    assert roles(await engine.group_info("s1", jid)) == [(ME, "superadmin"), (BOB, "member")]


async def test_a_group_picture_is_a_jpeg(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    jid = (await engine.create_group("s1", "Team", [])).group.jid
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 20).decode()

    await refused(engine.set_group_picture("s1", jid, png), "invalid_image")
    await refused(engine.set_group_picture("s1", jid, "not base64!"), "invalid_image")
    picture = await engine.set_group_picture("s1", jid, JPEG)

    assert picture.isdigit()
    record = world.group(jid)
    assert record is not None and record["picture"] == picture
    assert (record["history"][-1]["what"], record["history"][-1]["value"]) == ("picture", picture)


async def test_every_group_event_the_other_members_cause(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    jid, alice, bob = "120363111111111111@g.us", "+4915111111111", "+4915112345678"
    alice_jid = "4915111111111@s.whatsapp.net"
    steps = [
        ("join", "", alice, "Club"),
        ("add", bob, alice, ""),
        ("promote", bob, alice, ""),
        ("subject", "", bob, "Club 2"),
        ("description", "", bob, "About"),
        ("demote", bob, alice, ""),
        ("announce", "", alice, "true"),
        ("locked", "", alice, "true"),
        ("leave", bob, "", ""),
        ("remove", PHONE, alice, ""),
    ]
    for event, participant, by, value in steps:
        await engine.group_event(
            "s1", group=jid, event=event, participant=participant, by=by, value=value
        )

    events = await group_events(engine, len(steps))
    joined = events[0]
    assert isinstance(joined, GroupJoined)
    assert (joined.by, joined.by_phone, joined.reason) == (alice_jid, alice, "")
    assert (joined.group.jid, joined.group.subject, joined.group.owner) == (jid, "Club", alice_jid)
    assert roles(joined.group) == [(alice_jid, "superadmin"), (ME, "member")]
    described = [
        (e.action, [(m.jid, m.role) for m in e.participants], e.by_phone)
        if isinstance(e, GroupParticipantsChanged)
        else (e.by_phone, e.subject, e.description, e.announce, e.locked)
        for e in events[1:]
    ]
    assert described == [
        ("add", [(BOB, "member")], alice),
        ("promote", [(BOB, "admin")], alice),
        (bob, "Club 2", None, None, None),
        (bob, None, "About", None, None),
        ("demote", [(BOB, "member")], alice),
        (alice, None, None, True, None),
        (alice, None, None, None, True),
        ("remove", [(BOB, "member")], bob),  # left
        ("remove", [(ME, "member")], alice),
    ]
    assert {e.session_id for e in events} == {"s1"}
    assert await engine.groups("s1") == []  # removed: the session no longer sees it
    await refused(engine.group_info("s1", jid), "not_in_group")
    record = world.group(jid)
    assert record is not None
    assert [(h["what"], h["by"]) for h in record["history"]] == [
        ("create", alice_jid),
        ("add", alice_jid),
        ("add", alice_jid),
        ("promote", alice_jid),
        ("subject", BOB),
        ("description", BOB),
        ("demote", alice_jid),
        ("announce", alice_jid),
        ("locked", alice_jid),
        ("leave", BOB),
        ("remove", alice_jid),
    ]
    assert (record["subject"], record["announce"], record["locked"]) == ("Club 2", True, True)


async def test_a_group_event_that_whatsapp_would_refuse_is_a_bad_request(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    jid, alice, bob = "120363111111111111@g.us", "+4915111111111", "+4915112345678"
    await engine.group_event("s1", group=jid, event="join", by=alice)
    await engine.group_event("s1", group=jid, event="add", participant=bob, by=alice)
    history = (world.group(jid) or {})["history"]
    for arguments in [
        {"event": "kick", "participant": bob, "by": alice},
        {"group": "12345", "event": "subject", "by": alice, "value": "x"},
        {"group": "120363999999999999@g.us", "event": "subject", "by": alice, "value": "x"},
        {"event": "add", "participant": "+4915122222222"},  # by whom?
        {"event": "add", "participant": "+4915122222222", "by": bob},  # not an admin
        {"event": "add", "participant": "+4915100000000", "by": alice},  # not on WhatsApp
        {"event": "add", "participant": bob, "by": alice},  # already in
        {"event": "remove", "participant": alice, "by": bob},
        {"event": "subject", "by": "+4915133333333", "value": "x"},  # not in the group
        {"event": "subject", "by": bob, "value": ""},
        {"event": "announce", "by": alice, "value": "yes"},
        {"event": "announce", "by": bob, "value": "true"},
        {"event": "leave"},
        {"event": "join", "by": alice},  # the session is in it already
        {"event": "subject", "by": "not a number", "value": "x"},
    ]:
        call = engine.group_event("s1", **{"group": jid, **arguments})
        await refused(call, "bad_request")
    assert (world.group(jid) or {})["history"] == history
    assert len(await group_events(engine, 2)) == 2  # the join and the add, nothing else


async def test_mentions_reach_the_phone(
    engine: SandboxEngine, world: SandboxWorld, tmp_path: Path
) -> None:
    await linked(engine, tmp_path / "auth")
    group = "120363111111111111@g.us"

    await engine.send(
        "s1",
        OutboundMessage(id="M1", to=group, type="text", text="hi @4915112345678", mentions=(BOB,)),
    )
    await engine.send("s1", OutboundMessage(id="M2", to=group, type="text", text="hi all"))

    received = {m["id"]: m for m in world.phone_messages("s1")}
    assert received["M1"]["mentions"] == [BOB]
    assert "mentions" not in received["M2"]
