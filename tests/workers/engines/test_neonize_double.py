"""The neonize adapter in real engine host processes, over the neonize double (WhatsApp's side
played by FakeWhatsApp): what a user of the real engine sees, from linking to logout."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest
import pytest_asyncio

from tests.neonize_double.harness import neonize_engine
from tests.neonize_double.whatsapp import FakeWhatsApp
from tests.workers.engines.test_sandbox import next_event
from workers.engines.base import (
    Connected,
    Disconnected,
    EngineError,
    LoggedOut,
    MessageReceived,
    OutboundMessage,
    QrCode,
    StreamReplaced,
)

pytestmark = pytest.mark.asyncio
PHONE = "+15550123"
TO = "15550002@s.whatsapp.net"


@pytest.fixture
def world(tmp_path: Path):
    world = FakeWhatsApp(tmp_path / "whatsapp").start()
    yield world
    world.close()


@pytest_asyncio.fixture
async def engine(world: FakeWhatsApp):
    engine = neonize_engine(world)
    yield engine
    await engine.close()


async def next_event_of(engine, kind: type, session: str, timeout: float = 30):
    """The next event of `kind` for `session`, skipping the others' (all within `timeout`)."""

    async def find():
        while True:
            event = await next_event(engine, kind, timeout=timeout)
            if event.session_id == session:
                return event

    return await asyncio.wait_for(find(), timeout)


async def link(engine, world: FakeWhatsApp, auth: Path, session: str = "s1") -> Connected:
    await engine.start(session, auth)
    await next_event(engine, QrCode, timeout=30)
    world.scan(session, PHONE)
    return await next_event(engine, Connected, timeout=30)


async def test_a_qr_scan_links_the_session(engine, world, tmp_path: Path) -> None:
    await engine.start("s1", tmp_path / "s1")
    qr = await next_event(engine, QrCode, timeout=30)
    assert qr.code.startswith("2@") and qr.session_id == "s1"
    world.scan("s1", PHONE)
    connected = await next_event(engine, Connected, timeout=30)
    assert (connected.phone_number, connected.jid) == (PHONE, "15550123@s.whatsapp.net")
    assert (tmp_path / "s1" / "store.sqlite3").exists()


async def test_a_linked_session_connects_again_from_its_store(engine, world, tmp_path) -> None:
    await link(engine, world, tmp_path / "s1")
    await engine.stop("s1")
    await engine.start("s1", tmp_path / "s1")
    connected = await next_event(engine, Connected, timeout=30)
    assert connected.phone_number == PHONE
    assert [how for uuid, how, _ in world.logins if uuid == "s1"][-1] == "15550123@s.whatsapp.net"


async def test_a_text_reaches_the_phone_with_the_id_whatsapp_gave(engine, world, tmp_path) -> None:
    await link(engine, world, tmp_path / "s1")
    result = await engine.send(
        "s1", OutboundMessage(id="ours", to="15550002@s.whatsapp.net", type="text", text="hi")
    )
    [received] = world.received("15550002@s.whatsapp.net")
    assert result.wa_message_id == received["id"] and received["id"].startswith("3EB0")


async def test_stopping_a_session_while_its_qr_codes_come_neither_stalls_nor_kills_the_host(
    engine, world, tmp_path
) -> None:
    """whatsmeow stops the codes without closing their channel (qrchan.go): that session's
    connect() never returns. Nothing waits for it, the host does not crash, and the host with the
    stuck thread takes no new session and is retired once it holds none."""
    await engine.start("s1", tmp_path / "s1")
    await engine.start("s2", tmp_path / "s2")
    first = engine.hosts[0]
    await next_event(engine, QrCode, timeout=30)
    await asyncio.wait_for(engine.stop("s1"), 10)
    await engine.start("s3", tmp_path / "s3")
    qr = await next_event_of(engine, QrCode, "s3", timeout=10)
    assert qr.session_id == "s3"
    assert first.alive and first.stuck == 1 and "s3" not in first.sessions
    await engine.stop("s2")
    await asyncio.wait_for(first.process.wait(), 30)
    assert first.retired  # shut down on purpose, not a crash


async def test_a_qr_window_that_runs_out_ends_with_qr_timeout_and_the_host_lives(
    engine, world, tmp_path
) -> None:
    await engine.start("s1", tmp_path / "s1")
    first = engine.hosts[0]
    ended = await next_event(engine, Disconnected, timeout=30)
    assert (ended.code, ended.will_reconnect) == ("qr_timeout", False)
    await engine.start("s2", tmp_path / "s2")
    assert (await next_event_of(engine, QrCode, "s2", timeout=10)).session_id == "s2"
    await asyncio.wait_for(first.process.wait(), 30)
    assert first.retired  # FetchMe never returns after a timeout: that host is retired


async def test_codes_that_stop_coming_end_the_linking_too(engine, world, tmp_path) -> None:
    """A socket dropped while linking: no more codes, and no `timeout` either."""
    await engine.start("s1", tmp_path / "s1")
    await next_event(engine, QrCode, timeout=30)
    world.drop("s1")
    ended = await next_event(engine, Disconnected, timeout=30)
    assert (ended.code, ended.will_reconnect) == ("qr_timeout", False)


@pytest.mark.parametrize(
    ("act", "code", "words"),
    [
        (lambda world: world.ban("s1", code=101, expire=7200), "temporary_ban", "7200 s"),
        (lambda world: world.outdate("s1"), "client_outdated", "405"),
    ],
)
async def test_a_ban_or_an_outdated_client_ends_the_session_with_its_reason(
    engine, world, tmp_path, act, code: str, words: str
) -> None:
    """The servers refuse the next login (`<failure reason=402|405>`): whatsmeow does not
    reconnect, and connect() would go on blocking in silence."""
    await link(engine, world, tmp_path / "s1")
    act(world)
    ended = await next_event_of(engine, Disconnected, "s1")
    while ended.will_reconnect:  # the drop first; then the refused login
        ended = await next_event_of(engine, Disconnected, "s1")
    assert ended.code == code and words in ended.reason


async def test_the_phone_unlinking_the_device_logs_the_session_out(engine, world, tmp_path) -> None:
    await link(engine, world, tmp_path / "s1")
    world.unlink("s1")
    logged_out = await next_event_of(engine, LoggedOut, "s1")
    assert logged_out.session_id == "s1"
    assert not (tmp_path / "s1" / "store.sqlite3").exists()  # the keys are worthless now


async def test_unlinked_while_offline_is_logged_out_at_the_next_start(
    engine, world, tmp_path
) -> None:
    await link(engine, world, tmp_path / "s1")
    await engine.stop("s1")
    world.unlink("s1")
    await engine.start("s1", tmp_path / "s1")
    assert "on connect" in (await next_event_of(engine, LoggedOut, "s1")).reason


async def test_another_connection_taking_over_is_stream_replaced(engine, world, tmp_path) -> None:
    await link(engine, world, tmp_path / "s1")
    world.replace("s1")
    assert (await next_event_of(engine, StreamReplaced, "s1")).session_id == "s1"


async def test_a_login_abandoned_mid_handshake_takes_over_no_connection(world, tmp_path) -> None:
    # A worker stops a session while its slow handshake is under way and another one starts it:
    # the first socket never finishes logging in, so the second connection is not replaced.
    first, second = neonize_engine(world), neonize_engine(world)
    try:
        await link(first, world, tmp_path / "s1")
        await first.stop("s1")
        world.handshake_delay, dialled = 1.0, len(world.dialled)
        await first.start("s1", tmp_path / "s1")
        await asyncio.to_thread(world.wait, lambda: len(world.dialled) > dialled, 10, "a login")
        await first.stop("s1")
        world.handshake_delay = 0.0
        await second.start("s1", tmp_path / "s1")
        await next_event_of(second, Connected, "s1")
        await asyncio.to_thread(world.wait, lambda: "s1" in world.abandoned, 10, "abandoned")
        await second.send("s1", OutboundMessage(id="m", to=TO, type="text", text="still here"))
        assert world.received(TO)[-1]["from"] == "15550123@s.whatsapp.net"
    finally:
        await first.close()
        await second.close()


def sent_message(world: FakeWhatsApp, to: str, index: int = -1):
    """The WhatsApp message (neonize's protobuf) a phone got."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

    return Message.FromString(base64.b64decode(world.received(to)[index]["message"]))


async def test_quotes_and_reactions_carry_the_key_whatsapp_needs(engine, world, tmp_path) -> None:
    """whatsmeow BuildMessageKey: our own message is from-me; a group member's is named by its
    participant. A quote carries the quoted text (an empty one shows as a blank bubble)."""
    await link(engine, world, tmp_path / "s1")
    group, member = "120363000000000001@g.us", "4915100000002@s.whatsapp.net"
    quoted = {"reply_to": "G1", "reply_to_sender": member, "reply_to_text": "who is in?"}
    await engine.send("s1", OutboundMessage(id="a", to=group, type="text", text="me", **quoted))
    await engine.send(
        "s1", OutboundMessage(id="b", to=group, type="reaction", reaction="👍", **quoted)
    )
    own = {"reply_to": "3EB0OURS", "reply_to_from_me": True}
    to = "15550002@s.whatsapp.net"
    await engine.send("s1", OutboundMessage(id="c", to=to, type="reaction", reaction="❤️", **own))
    await engine.send("s1", OutboundMessage(id="d", to=to, type="text", text="yes", **own))

    context = sent_message(world, group, 0).extendedTextMessage.contextInfo
    assert (context.stanzaID, context.participant) == ("G1", member)
    assert context.quotedMessage.conversation == "who is in?"
    key = sent_message(world, group, 1).reactionMessage.key
    assert (key.ID, key.fromMe, key.participant) == ("G1", False, member)
    key = sent_message(world, to, 0).reactionMessage.key
    assert (key.ID, key.fromMe, key.participant) == ("3EB0OURS", True, "")
    context = sent_message(world, to, 1).extendedTextMessage.contextInfo
    assert context.participant == "15550123@s.whatsapp.net"  # ours: our own JID


async def test_a_pairing_code_asked_for_while_starting_waits_for_the_websocket(
    engine, world, tmp_path
) -> None:
    """whatsmeow PairPhone fails with ErrNotConnected before the handshake is done."""
    world.handshake_delay = 0.5
    await engine.start("s1", tmp_path / "s1")
    code = await engine.request_pair_code("s1", PHONE)
    assert len(code) == 9 and code[4] == "-"
    assert world.pair_codes["s1"] == PHONE.lstrip("+")


async def test_a_logout_while_connecting_unlinks_the_device_on_whatsapp(
    engine, world, tmp_path
) -> None:
    """whatsmeow Logout is an IQ: sent before the connection is up, the phone would keep
    listing the device."""
    await link(engine, world, tmp_path / "s1")
    await engine.stop("s1")
    world.handshake_delay = 0.5
    await engine.start("s1", tmp_path / "s1")
    await engine.logout("s1")
    logged_out = await next_event_of(engine, LoggedOut, "s1")
    assert logged_out.reason == "logged out"
    assert world.devices["s1"].removed


async def test_a_number_not_on_whatsapp_fails_the_send_for_good(engine, world, tmp_path) -> None:
    """whatsmeow send.go: a PN without a LID on the server is "no LID found": permanent."""
    await link(engine, world, tmp_path / "s1")
    with pytest.raises(EngineError) as refused:
        await engine.send(
            "s1", OutboundMessage(id="x", to="15550000@s.whatsapp.net", type="text", text="hi")
        )
    assert (refused.value.code, refused.value.permanent) == ("not_on_whatsapp", True)


async def test_inbound_media_larger_than_the_host_pipe_arrives_through_a_file(
    engine, world, tmp_path
) -> None:
    """70 MiB (a long video): as one base64 line it broke the host channel (64 MiB lines) and
    every call to that host timed out. The host writes the file; only its size comes back."""
    from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

    from tests.workers.engines.test_neonize_translate import message_event

    await link(engine, world, tmp_path / "s1")
    data = os.urandom(1 << 20) * 70
    world.media["/v/big"] = data
    video = wa.VideoMessage(
        directPath="/v/big", mimetype="video/mp4", fileLength=len(data), caption="long"
    )
    world.deliver("s1", message_event(wa.Message(videoMessage=video)))
    received = (await next_event_of(engine, MessageReceived, "s1")).message
    into = tmp_path / "video.mp4"
    assert await engine.download("s1", received.media, into) == len(data)
    assert into.read_bytes() == data
    status = await engine.send(  # the host still answers
        "s1", OutboundMessage(id="z", to="15550002@s.whatsapp.net", type="text", text="got it")
    )
    assert status.wa_message_id.startswith("3EB0")


async def test_unanswered_keepalives_show_reconnecting_until_whatsapp_answers_again(
    engine, world, tmp_path
) -> None:
    """whatsmeow keepalive.go: KeepAliveTimeout per missed ping, KeepAliveRestored at the next
    answer. The session must not stay "connected" while nothing comes through."""
    await link(engine, world, tmp_path / "s1")
    world.freeze("s1")
    stalled = await next_event_of(engine, Disconnected, "s1")
    assert (stalled.code, stalled.will_reconnect) == ("keepalive_timeout", True)
    with pytest.raises(EngineError) as refused:  # nothing is sent into the dead connection
        await engine.send("s1", OutboundMessage(id="k", to=TO, type="text", text="hi"))
    assert refused.value.code == "not_connected"
    world.freeze("s1", frozen=False)
    assert (await next_event_of(engine, Connected, "s1")).phone_number == PHONE


async def test_three_minutes_without_keepalive_make_a_new_connection(
    engine, world, tmp_path
) -> None:
    await link(engine, world, tmp_path / "s1")
    world.freeze("s1")
    assert (await next_event_of(engine, Disconnected, "s1")).code == "keepalive_timeout"
    await next_event_of(engine, Connected, "s1", timeout=30)  # whatsmeow reconnected by itself
    logins = [how for uuid, how, _ in world.logins if uuid == "s1"]
    assert logins[-1] == "15550123@s.whatsapp.net" and len(logins) >= 3  # qr, 515, the new one


async def test_lid_senders_are_resolved_from_the_store_or_left_unknown(
    engine, world, tmp_path
) -> None:
    """whatsmeow keeps a LID→PN map from SenderAlt of earlier messages (store.LIDs); a LID it
    never saw resolves to an empty JID: no number, and no error."""
    from neonize.proto import Neonize_pb2 as N
    from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

    from tests.workers.engines.test_neonize_translate import message_event

    await link(engine, world, tmp_path / "s1")
    lid = N.JID(User="123456789012345", Server="lid")
    world.deliver("s1", message_event(wa.Message(conversation="who?"), sender=lid))
    unknown = (await next_event_of(engine, MessageReceived, "s1")).message
    assert unknown.sender == "123456789012345@lid" and unknown.sender_phone == ""
    known = N.JID(User="4915100000002", Server="s.whatsapp.net")
    world.deliver("s1", message_event(wa.Message(conversation="me"), sender=lid, sender_alt=known))
    await next_event_of(engine, MessageReceived, "s1")
    world.deliver("s1", message_event(wa.Message(conversation="again"), sender=lid))
    again = (await next_event_of(engine, MessageReceived, "s1")).message
    assert again.sender_phone == "+4915100000002"  # learnt from the message before


async def test_a_probe_is_a_round_trip_that_fails_without_a_connection(
    engine, world, tmp_path
) -> None:
    """The runtime's zombie probe on neonize: a usync query for our own number."""
    await link(engine, world, tmp_path / "s1")
    await engine.probe("s1")
    world.outage = True  # the network goes down and stays down
    world.drop("s1")
    await next_event_of(engine, Disconnected, "s1")
    with pytest.raises(EngineError) as unanswered:
        await engine.probe("s1")
    assert unanswered.value.code == "not_connected"
