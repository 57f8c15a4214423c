"""What a user of the gateway sees, the same on both engines (see conftest.py): linking, every
message type and its statuses, quotes and reactions as WhatsApp keys them, inbound messages and
media, logout and unlinking, stop / restart / delete in every phase, a host dying under 20
sessions."""

from __future__ import annotations

import os
import signal

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from gateway.outbox.models import WebhookDelivery
from messaging.models import Message
from sessions_app import services as sessions
from sessions_app.models import Session, SessionEvent
from tests.workers.runtime.test_messages import png, post, upload
from tests.workers.runtime.test_runtime import session_row, until
from workers.models import Worker

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
PHONE = "+15550123"
TO = "+4915123456789"
TO_JID = "4915123456789@s.whatsapp.net"
GROUP = "120363000000000001@g.us"
MEMBER = "+4915100000002"


def status(session) -> str:
    return Session.objects.get(pk=session.pk).status


async def new_session(system) -> Session:
    session = await sync_to_async(
        lambda: sessions.session_create(external_id=None, engine=system.engine)[0]
    )()
    await until(lambda: status(session) == "scan_qr", what="a QR code", timeout=30)
    return session


async def linked(system, phone: str = PHONE) -> Session:
    session = await new_session(system)
    await system.phone.scan(str(session.id), phone)
    await until(lambda: status(session) == "connected", what="connected", timeout=30)
    return session


def message_status(message_id) -> str:
    return Message.objects.get(pk=message_id).status


async def test_linking_by_qr_code(system) -> None:
    await system.start_worker()
    session = await linked(system)
    row = await sync_to_async(session_row)(session.id)
    assert (row.phone_number, row.jid) == (PHONE, "15550123@s.whatsapp.net")
    assert row.linked_at is not None


async def test_linking_by_pairing_code(system) -> None:
    await system.start_worker()
    session = await new_session(system)
    fresh = await sync_to_async(Session.objects.get)(pk=session.pk)
    code = await sync_to_async(sessions.session_pair_code)(session=fresh, phone_number=PHONE)
    assert len(code["code"]) == 9
    await until(lambda: status(session) == "pairing", what="pairing")
    await system.phone.scan(str(session.id), PHONE)
    await until(lambda: status(session) == "connected", what="connected", timeout=30)


async def test_every_message_type_reaches_the_phone_and_climbs_to_read(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    sent = []
    for body in [
        {"type": "text", "text": "hello"},
        {"type": "location", "location": {"latitude": 52.52, "longitude": 13.4, "name": "B"}},
        {"type": "contact", "contact": {"name": "Ada", "phone_number": "+4915100000001"}},
    ]:
        response = await post(api, session, {"to": TO, **body})
        assert response.status_code == 202, response.json()
        sent.append(response.json()["id"])
    for kind, content, name, mime in [
        ("image", png(), "photo.png", "image/png"),
        ("document", b"%PDF-1.4\n" + bytes(64), "report.pdf", "application/pdf"),
        ("voice", b"OggS" + bytes(60), "note.ogg", "audio/ogg"),
    ]:
        response = await upload(api, session, {"to": TO, "type": kind}, content, name, mime)
        assert response.status_code == 202, response.json()
        sent.append(response.json()["id"])
    for message_id in sent:
        await until(
            lambda m=message_id: message_status(m) in ("read", "played"),
            what="read",
            timeout=30,
        )
    phone = system.phone.sent(str(session.id))
    assert [m["type"] for m in phone] == [
        "text",
        "location",
        "contact",
        "image",
        "document",
        "voice",
    ]  # in order, once each
    assert phone[0]["text"] == "hello" and {m["to"] for m in phone} == {TO_JID}
    stored = await sync_to_async(lambda: list(Message.objects.filter(pk__in=sent)))()
    assert sorted(m.wa_message_id for m in stored) == sorted(m["id"] for m in phone)


async def test_quotes_and_reactions_are_keyed_as_whatsapp_keys_them(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    await system.phone.receive(
        str(session.id), sender=MEMBER, text="who is in?", group=GROUP, wa_message_id="3EB0G1"
    )
    await until(lambda: Message.objects.filter(wa_message_id="3EB0G1").exists(), what="G1")
    mine = (await post(api, session, {"to": TO, "type": "text", "text": "mine"})).json()["id"]
    await until(lambda: Message.objects.get(pk=mine).sent_at, what="ours sent")
    own_id = (await sync_to_async(Message.objects.get)(pk=mine)).wa_message_id
    for body in [
        {"to": GROUP, "type": "text", "text": "me", "reply_to": "3EB0G1"},
        {"to": GROUP, "type": "reaction", "reaction": "👍", "reply_to": "3EB0G1"},
        {"to": TO, "type": "reaction", "reaction": "❤️", "reply_to": own_id},
    ]:
        assert (await post(api, session, body)).status_code == 202
    phone = await until(
        lambda: len(got := system.phone.sent(str(session.id))) == 4 and got, what="all four"
    )
    member = "4915100000002@s.whatsapp.net"
    reply, group_reaction, own_reaction = phone[1:]
    assert reply["key"] == {"id": "3EB0G1", "from_me": False, "participant": member}
    assert reply["quoted_text"] == "who is in?"
    assert group_reaction["key"] == {"id": "3EB0G1", "from_me": False, "participant": member}
    assert own_reaction["key"] == {"id": own_id, "from_me": True, "participant": ""}


async def test_inbound_text_and_media_are_stored_once(system) -> None:
    await system.start_worker()
    session = await linked(system)
    await system.phone.receive(str(session.id), sender=MEMBER, text="hi", wa_message_id="3EB0I1")
    await system.phone.receive(
        str(session.id),
        sender=MEMBER,
        text="look",
        kind="image",
        media=png(),
        mime_type="image/png",
        wa_message_id="3EB0I2",
    )
    await system.phone.receive(str(session.id), sender=MEMBER, text="hi", wa_message_id="3EB0I1")
    image = await until(
        lambda: Message.objects.filter(wa_message_id="3EB0I2", media_pending=False).first(),
        what="the image stored",
        timeout=30,
    )
    with image.media.open() as f:
        assert f.read() == png()
    assert (image.caption, image.sender) == ("look", "4915100000002@s.whatsapp.net")
    count = await sync_to_async(Message.objects.filter(direction="in").count)()
    assert count == 2  # the redelivered text is dropped


async def test_logout_unlinks_the_device(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    response = await sync_to_async(api.post)(f"/api/v1/sessions/{session.id}/logout")
    assert response.status_code in (200, 202), response.json()
    await until(
        lambda: SessionEvent.objects.filter(session=session, to_status="logged_out").exists(),
        what="logged out",
        timeout=30,
    )
    if system.whatsapp is not None:
        assert system.whatsapp.devices[str(session.id)].removed  # unlinked on WhatsApp


async def test_unlinked_from_the_phone_is_logged_out(system) -> None:
    from groups.models import Group

    await system.start_worker()
    session = await linked(system)
    await system.phone.group_event(str(session.id), GROUP, "join", by=TO)
    await until(lambda: Group.objects.filter(session=session).exists(), what="a group cached")
    await system.phone.unlink(str(session.id))
    await until(
        lambda: SessionEvent.objects.filter(session=session, to_status="logged_out").exists(),
        what="logged out",
        timeout=30,
    )
    # What the unlinked device knew of groups went with it (a new link may be another number).
    assert not await sync_to_async(Group.objects.filter(session=session).exists)()


LINKING = ("scan_qr", "pairing")


async def in_phase(system, api, phase: str) -> Session:
    """A session held in `phase`: starting (a slow handshake), showing a QR, pairing, connected,
    reconnecting (the network down)."""
    if phase in LINKING:
        session = await new_session(system)
        if phase == "pairing":
            fresh = await sync_to_async(Session.objects.get)(pk=session.pk)
            await sync_to_async(sessions.session_pair_code)(session=fresh, phone_number=PHONE)
            await until(lambda: status(session) == "pairing", what="pairing")
        return session
    session = await linked(system)
    if phase == "starting":
        await sync_to_async(api.post)(f"/api/v1/sessions/{session.id}/stop")
        await until(lambda: status(session) == "stopped", what="stopped")
        if system.whatsapp is not None:
            system.whatsapp.handshake_delay = 1.0  # the sandbox takes TIMINGS.connect_delay
        await sync_to_async(api.post)(f"/api/v1/sessions/{session.id}/start")
        await until(lambda: status(session) == "starting", what="starting")
    elif phase == "reconnecting":
        if system.whatsapp is not None:
            system.whatsapp.outage = True  # reconnecting lasts until the test ends it
        await system.phone.drop(str(session.id))
        await until(lambda: status(session) == "reconnecting", what="reconnecting")
    return session


def last_event_id(session) -> int:
    return (
        SessionEvent.objects.filter(session=session)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )


def owner(session) -> str:
    """The name of the worker holding the session ("" between a release and the next claim)."""
    worker = Session.objects.select_related("worker").get(pk=session.pk).worker
    return worker.name if worker else ""


@pytest.mark.parametrize("phase", ["starting", "scan_qr", "pairing", "connected", "reconnecting"])
@pytest.mark.parametrize("action", ["stop", "restart", "delete", "migrate", "drain"])
async def test_every_command_in_every_phase(system, api, phase: str, action: str) -> None:
    first = await system.start_worker("w1")
    session = await in_phase(system, api, phase)
    if action in ("migrate", "drain"):
        await system.start_worker("w2")
    before = await sync_to_async(last_event_id)(session)
    if action == "delete":
        response = await sync_to_async(api.delete)(f"/api/v1/sessions/{session.id}")
    elif action == "drain":
        worker = await sync_to_async(lambda: session_row(session.id).worker)()
        response = await sync_to_async(api.post)(f"/api/v1/workers/{worker.pk}/drain")
    else:
        response = await sync_to_async(api.post)(
            f"/api/v1/sessions/{session.id}/{action}", {}, format="json"
        )
    assert response.status_code < 300, response.content
    if system.whatsapp is not None:
        system.whatsapp.outage, system.whatsapp.handshake_delay = False, 0.0
    if action == "delete":
        await until(lambda: not Session.objects.filter(pk=session.pk).exists(), what="deleted")
        return
    if action == "stop":
        await until(lambda: status(session) == "stopped", what="stopped", timeout=30)
        await until(lambda: str(session.id) not in first.runners, what="released")
        return
    # Linked sessions come back connected without a scan; linking ones show a new QR.
    expected = "scan_qr" if phase in LINKING else "connected"
    by = "w2" if action in ("migrate", "drain") else "w1"

    def done() -> bool:  # reached again after the command, by the worker that should hold it
        again = SessionEvent.objects.filter(session=session, pk__gt=before, to_status=expected)
        return again.exists() and status(session) == expected and owner(session) == by

    await until(done, what=f"{expected} on {by}", timeout=30)
    if expected == "connected":
        steps = await sync_to_async(
            lambda: list(
                SessionEvent.objects.filter(session=session).values_list("to_status", flat=True)
            )
        )()
        assert steps.count("scan_qr") == 1  # the first link only


async def test_a_host_dying_under_20_sessions_brings_them_all_back_without_a_scan(
    system,
) -> None:
    runtime = await system.start_worker()
    linked_sessions = [await linked(system, f"+1555010{n:02d}") for n in range(20)]
    engine = runtime.engines[system.engine]
    [host] = engine.hosts
    system.killed.append(host.pid)
    os.kill(host.pid, signal.SIGKILL)
    for session in linked_sessions:
        await until(
            lambda s=session: (
                status(s) == "connected"
                and SessionEvent.objects.filter(session=s, to_status="reconnecting").exists()
            ),
            what="back",
            timeout=60,
        )
    assert host.pid not in engine.host_pids()
    events = await sync_to_async(
        lambda: set(SessionEvent.objects.values_list("to_status", flat=True))
    )()
    assert "scan_qr" in events  # (the first linking) and nothing asked for a new scan:
    for session in linked_sessions:
        steps = await sync_to_async(
            lambda s=session: list(
                SessionEvent.objects.filter(session=s)
                .order_by("id")
                .values_list("to_status", flat=True)
            )
        )()
        assert steps.count("scan_qr") == 1, steps


def status_steps(message_id) -> list[str]:
    return [
        d.payload["message"]["status"]
        for d in WebhookDelivery.objects.filter(event_type="message.status").order_by("sequence")
        if d.payload["message"]["id"] == str(message_id)
    ]


@pytest.mark.parametrize(
    ("mode", "final"),
    [("missing", "delivered"), ("duplicated", "read"), ("out_of_order", "read")],
)
async def test_receipts_as_they_come_never_move_a_status_back(
    system, api, mode: str, final: str
) -> None:
    await system.start_worker()
    session = await linked(system)
    await system.phone.receipts(str(session.id), mode)
    first = (await post(api, session, {"to": TO, "type": "text", "text": "one"})).json()["id"]
    await until(lambda: message_status(first) == final, what=final, timeout=30)
    # A second message reaching `final` means the first one's receipts have all come.
    second = (await post(api, session, {"to": TO, "type": "text", "text": "two"})).json()["id"]
    await until(lambda: message_status(second) == final, what=final, timeout=30)
    steps = await sync_to_async(status_steps)(first)
    ladder = ["sending", "sent", "delivered", "read"]
    assert steps == sorted(set(steps), key=ladder.index) and steps[-1] == final  # forward, once
    assert await sync_to_async(message_status)(first) == final


async def test_receipts_held_while_away_arrive_after_the_reconnect(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    await system.phone.receipts(str(session.id), "after_reconnect")
    sent = (await post(api, session, {"to": TO, "type": "text", "text": "hi"})).json()["id"]
    await until(lambda: message_status(sent) == "sent", what="sent")
    await system.phone.receipts(str(session.id), "normal")
    await system.phone.drop(str(session.id))
    await until(lambda: message_status(sent) == "read", what="read after the reconnect", timeout=30)


async def test_a_message_sent_from_the_phone_itself_is_stored_as_ours(system) -> None:
    await system.start_worker()
    session = await linked(system)
    await system.phone.receive(
        str(session.id), sender=TO, text="typed on the phone", wa_message_id="3EB0ME", from_me=True
    )
    message = await until(
        lambda: Message.objects.filter(wa_message_id="3EB0ME").first(), what="stored", timeout=30
    )
    assert (message.direction, message.status, message.chat) == ("out", "sent", TO_JID)
    assert message.text == "typed on the phone"


async def test_a_lost_lease_closes_the_connection_and_writes_nothing(system) -> None:
    runtime = await system.start_worker()
    session = await linked(system)
    # Another worker claimed it (a new epoch) while this one was not looking.
    await sync_to_async(lambda: Session.objects.filter(pk=session.id).update(lease_epoch=99))()
    await until(lambda: str(session.id) not in runtime.runners, what="the session dropped")
    engine = runtime.engines[system.engine]
    await until(
        lambda: all(str(session.id) not in host.sessions for host in engine.hosts),
        what="stopped in its host",
    )
    if system.whatsapp is not None:
        system.whatsapp.wait(
            lambda: not system.whatsapp.connected(str(session.id)), what="the connection closed"
        )
    row = await sync_to_async(session_row)(session.id)
    assert (row.status, row.lease_epoch) == ("connected", 99)  # nothing written by the loser


async def test_a_lease_that_ran_out_under_its_worker_is_taken_again_without_a_failure(
    system,
) -> None:
    """Renewals fell behind and the lease ran out in the database before the worker closed the
    connection: its own claim loop takes the session again. The old connection is closed first
    (a start beside it failed `already_started`, which stopped the session for good), and the new
    one reconnects from the store, without a QR code."""
    runtime = await system.start_worker()
    session = await linked(system)
    key, old = str(session.id), runtime.runners[str(session.id)]
    await sync_to_async(
        lambda: Session.objects.filter(pk=session.id).update(lease_expires_at=timezone.now())
    )()

    new = await until(
        lambda: (r := runtime.runners.get(key)) is not None and r is not old and r,
        what="the session claimed again by the same worker",
    )
    connects = SessionEvent.objects.filter(session=session, to_status="connected")
    await until(lambda: connects.count() == 2, what="connected again")
    row = await sync_to_async(session_row)(session.id)
    assert (row.status, row.lease_epoch, row.last_error_code) == ("connected", new.epoch, "")
    shown = SessionEvent.objects.filter(session=session, to_status="scan_qr")
    assert await sync_to_async(shown.count)() == 1  # the one of the first link


def presence_updates(session) -> list[dict]:
    rows = WebhookDelivery.objects.filter(session=session, event_type="presence.update")
    return [row.payload["presence"] for row in rows.order_by("sequence")]


async def shown(system, session, expected: list[tuple[str, str]]) -> None:
    """Until WhatsApp got what the session showed (the double's servers read it after the call
    returned: whatsmeow sends presence without waiting for an answer)."""
    await until(lambda: system.phone.shown(str(session.id)) == expected, what=f"shown {expected}")


async def test_the_number_shows_itself_online_and_typing(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    base = f"/api/v1/sessions/{session.id}"
    response = await sync_to_async(api.post)(f"{base}/presence", {"state": "available"}, "json")
    assert response.status_code == 200, response.json()
    for state in ("typing", "recording", "paused"):
        response = await sync_to_async(api.post)(
            f"{base}/chats/{TO}/typing", {"state": state}, "json"
        )
        assert response.json() == {"chat": TO_JID, "state": state}
    response = await sync_to_async(api.post)(f"{base}/presence", {"state": "unavailable"}, "json")
    assert response.status_code == 200, response.json()
    await shown(
        system,
        session,
        [
            ("presence", "available"),
            (TO_JID, "typing"),
            (TO_JID, "recording"),
            (TO_JID, "paused"),
            ("presence", "unavailable"),
        ],
    )


async def test_contacts_presence_arrives_while_online_and_only_when_subscribed(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    sid, base = str(session.id), f"/api/v1/sessions/{session.id}"
    response = await sync_to_async(api.post)(f"{base}/presence/{TO}/subscribe")
    assert response.json() == {"chat": TO_JID, "subscribed": True}
    await shown(system, session, [("subscribe", TO_JID)])
    # Not shown online: WhatsApp sends neither online status nor typing.
    assert not await system.phone.presence(sid, TO, "available")
    assert not await system.phone.presence(sid, MEMBER, "typing", group=GROUP)
    response = await sync_to_async(api.post)(f"{base}/presence", {"state": "available"}, "json")
    assert response.status_code == 200, response.json()
    await shown(system, session, [("subscribe", TO_JID), ("presence", "available")])
    assert await system.phone.presence(sid, TO, "available")
    assert await system.phone.presence(sid, TO, "unavailable", last_seen=1_700_000_000)
    assert not await system.phone.presence(sid, MEMBER, "available")  # not subscribed to
    assert await system.phone.presence(sid, MEMBER, "recording", group=GROUP)
    updates = await until(
        lambda: (u := presence_updates(session)) and len(u) == 3 and u,
        what="three presence updates",
        timeout=30,
    )
    assert [(u["chat"], u["sender"], u["state"], u["last_seen"]) for u in updates] == [
        (TO_JID, TO_JID, "available", None),
        (TO_JID, TO_JID, "unavailable", "2023-11-14T22:13:20+00:00"),
        (GROUP, "4915100000002@s.whatsapp.net", "recording", None),
    ]
    assert [u["sender_phone"] for u in updates] == [TO, TO, MEMBER]


async def test_blocking_from_the_api_and_from_the_phone(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    url = f"/api/v1/sessions/{session.id}/blocklist"
    response = await sync_to_async(api.post)(url, {"action": "block", "number": TO}, "json")
    assert response.status_code == 200, response.json()
    # WhatsApp keeps a blocked user by its @lid (neonize); the number comes with it.
    assert [b["phone_number"] for b in response.json()["blocked"]] == [TO]
    listed = (await sync_to_async(api.get)(url)).json()["blocked"]
    assert listed == response.json()["blocked"]
    response = await sync_to_async(api.post)(
        url, {"action": "block", "number": "+4915100000000"}, "json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_on_whatsapp"

    await system.phone.block(str(session.id), TO, "unblock")  # on the phone
    changes = await until(
        lambda: WebhookDelivery.objects.filter(
            session=session, event_type="blocklist.changed"
        ).first(),
        what="the blocklist change",
        timeout=30,
    )
    [change] = changes.payload["changes"]
    assert (change["action"], change["phone_number"]) == ("unblock", TO)
    assert change["jid"] == listed[0]["jid"]
    assert (await sync_to_async(api.get)(url)).json() == {"blocked": []}


def webhooks(session, prefix: str) -> list[dict]:
    """The session's webhook bodies whose event starts with `prefix`, in their sequence."""
    return [
        d.payload
        for d in WebhookDelivery.objects.filter(session=session).order_by("sequence")
        if d.payload["event"].startswith(prefix)
    ]


async def test_a_group_end_to_end_with_its_webhooks(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    base = f"/api/v1/sessions/{session.id}/groups"
    invitee, absent = "+4915100009999", "+4915100000000"
    response = await sync_to_async(api.post)(
        base, {"subject": "Team", "participants": [TO, absent, invitee]}, "json"
    )
    assert response.status_code == 201, response.json()
    created = response.json()
    jid = created["group"]["jid"]
    assert jid.endswith("@g.us") and created["group"]["subject"] == "Team"
    outcome = {r["phone_number"] or r["jid"]: r for r in created["participants"]}
    assert outcome[TO]["status"] == "ok"
    assert outcome[invitee]["status"] == "invite_required" and outcome[invitee]["invite_code"]
    assert [r["status"] for r in created["participants"]].count("not_found") == 1
    members = {m["phone_number"]: m["role"] for m in created["group"]["participants"]}
    assert members == {PHONE: "superadmin", TO: "member"}

    joined = await until(lambda: webhooks(session, "group.joined"), what="group.joined")
    assert joined[0]["group"]["jid"] == jid and joined[0]["reason"] == "created"
    listed = (await sync_to_async(api.get)(base)).json()
    assert [(g["jid"], g["member_count"]) for g in listed["groups"]] == [(jid, 2)]

    response = await sync_to_async(api.patch)(
        f"{base}/{jid}", {"subject": "Team 2", "description": "Plans", "announce": True}, "json"
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["subject"], response.json()["announce"]) == ("Team 2", True)
    response = await sync_to_async(api.post)(
        f"{base}/{jid}/participants", {"action": "promote", "participants": [TO]}, "json"
    )
    assert [r["status"] for r in response.json()["participants"]] == ["ok"]
    link = (await sync_to_async(api.get)(f"{base}/{jid}/invite-link")).json()["invite_link"]
    assert link.startswith("https://chat.whatsapp.com/")
    revoked = (await sync_to_async(api.post)(f"{base}/{jid}/invite-link/revoke")).json()
    assert revoked["invite_link"].startswith("https://chat.whatsapp.com/")
    assert revoked["invite_link"] != link
    response = await sync_to_async(api.patch)(f"{base}/{jid}", {"locked": True}, "json")
    assert response.json()["locked"] is True
    response = await sync_to_async(api.put)(
        f"{base}/{jid}/picture", {"file": upload_png(800, 600)}, "multipart"
    )
    assert response.status_code == 200 and response.json()["picture_id"], response.json()

    # Another linked number joins by the new link; the old one no longer works.
    other = await linked(system, phone="+15550777")
    joins = f"/api/v1/sessions/{other.id}/groups/join"
    response = await sync_to_async(api.post)(joins, {"invite_link": link}, "json")
    assert response.status_code == 410, response.json()
    assert response.json()["error"]["code"] == "invite_revoked"
    response = await sync_to_async(api.post)(joins, {"invite_link": revoked["invite_link"]}, "json")
    assert response.json() == {"jid": jid}
    [theirs] = await until(lambda: webhooks(other, "group.joined"), what="joined", timeout=30)
    assert theirs["reason"] == "invite" and theirs["group"]["jid"] == jid
    members = {m["phone_number"] for m in theirs["group"]["participants"]}
    assert {PHONE, TO, "+15550777"} <= members

    # The other members act: the admin adds someone and renames the group.
    await system.phone.group_event(str(session.id), jid, "add", participant=MEMBER, by=TO)
    await system.phone.group_event(str(session.id), jid, "subject", value="Renamed", by=TO)
    await until(
        lambda: any(
            b["changes"].get("subject") == "Renamed" for b in webhooks(session, "group.updated")
        ),
        what="the rename by a member",
        timeout=30,
    )
    detail = (await sync_to_async(api.get)(f"{base}/{jid}")).json()
    assert detail["subject"] == "Renamed"  # the cache, kept fresh by the worker
    roles = {m["phone_number"]: m["role"] for m in detail["participants"]}
    assert roles == {PHONE: "superadmin", TO: "admin", MEMBER: "member", "+15550777": "member"}

    response = await sync_to_async(api.post)(f"{base}/{jid}/leave")
    assert response.status_code == 204
    left = await until(
        lambda: [b for b in webhooks(session, "group.participants") if b["action"] == "remove"],
        what="left",
        timeout=30,
    )
    assert [m["phone_number"] for m in left[-1]["participants"]] == [PHONE]
    response = await sync_to_async(api.get)(f"{base}/{jid}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_in_group"

    # Every change came by webhook, in the session's one sequence.
    events = [
        (b["event"], b.get("action") or sorted(b.get("changes", {})) or b.get("reason"))
        for b in await sync_to_async(webhooks)(session, "group.")
    ]
    assert events == [
        ("group.joined", "created"),
        ("group.updated", ["subject"]),  # one notification per change, as WhatsApp sends
        ("group.updated", ["description"]),
        ("group.updated", ["announce"]),
        ("group.participants", "promote"),
        ("group.updated", ["locked"]),
        ("group.updated", ["picture"]),
        ("group.participants", "add"),  # joined by the link
        ("group.participants", "add"),
        ("group.updated", ["subject"]),
        ("group.participants", "remove"),
    ]
    by = [b["by"]["phone_number"] for b in await sync_to_async(webhooks)(session, "group.")]
    assert by[7] == "+15550777" and by[8:10] == [TO, TO]


async def test_added_to_a_group_by_a_contact_and_mentioning_its_members(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    await system.phone.group_event(str(session.id), GROUP, "join", by=TO, value="Friends")
    [joined] = await until(lambda: webhooks(session, "group.joined"), what="joined", timeout=30)
    assert joined["by"]["phone_number"] == TO and joined["group"]["subject"] == "Friends"
    listed = (await sync_to_async(api.get)(f"/api/v1/sessions/{session.id}/groups")).json()
    assert [g["subject"] for g in listed["groups"]] == ["Friends"]

    body = {"to": GROUP, "type": "text", "text": f"hi @{TO[1:]}", "mentions": [TO]}
    response = await post(api, session, body)
    assert response.status_code == 202, response.json()
    assert response.json()["mentions"] == [TO_JID]
    [sent] = await until(lambda: system.phone.sent(str(session.id)), what="sent", timeout=30)
    assert sent["mentions"] == [TO_JID]


def upload_png(width: int, height: int):
    import io

    from PIL import Image

    image = io.BytesIO()
    Image.new("RGB", (width, height), "blue").save(image, "PNG")
    image.seek(0)
    image.name = "picture.png"
    return image


async def test_contacts_their_lids_and_the_numbers_profile(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    base = f"/api/v1/sessions/{session.id}"
    found = (await sync_to_async(api.get)(f"{base}/contacts/{TO}")).json()
    assert (found["jid"], found["phone_number"], found["on_whatsapp"]) == (TO_JID, TO, True)
    assert found["lid"].endswith("@lid") and found["about"]
    assert isinstance(found["push_name"], str)  # known once they have written (whatsmeow)
    absent = (await sync_to_async(api.get)(f"{base}/contacts/+4915100000000")).json()
    assert (absent["on_whatsapp"], absent["lid"]) == (False, "")
    # The lookup taught the session the contact's @lid: the number behind it is known now.
    behind = (await sync_to_async(api.get)(f"{base}/lids/{found['lid']}")).json()
    assert behind == {"lid": found["lid"], "phone_number": TO}
    by_lid = (await sync_to_async(api.get)(f"{base}/contacts/{found['lid']}")).json()
    assert (by_lid["jid"], by_lid["phone_number"]) == (TO_JID, TO)
    unknown = await sync_to_async(api.get)(f"{base}/lids/123456789@lid")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "lid_unknown"

    response = await sync_to_async(api.patch)(
        f"{base}/profile", {"name": "Acme", "about": "Open 9 to 5"}, "json"
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["name"], response.json()["about"]) == ("Acme", "Open 9 to 5")
    assert response.json()["picture_url"] is None
    response = await sync_to_async(api.put)(
        f"{base}/profile/picture", {"file": upload_png(800, 800)}, "multipart"
    )
    assert response.status_code == 200, response.json()
    profile = (await sync_to_async(api.get)(f"{base}/profile")).json()
    assert (profile["phone_number"], profile["name"], profile["about"]) == (
        PHONE,
        "Acme",
        "Open 9 to 5",
    )
    assert profile["picture_url"]


@pytest.mark.parametrize("engine_name", ["neonize"])
async def test_whatsapps_rate_limit_on_group_metadata_is_a_429(system, api) -> None:
    """On neonize only: the double plays WhatsApp's servers, which answer frequent metadata
    queries with rate-overlimit (the sandbox has no such limit). Sends never ask for metadata."""
    assert system.whatsapp is not None
    await system.start_worker()
    session = await linked(system)
    base = f"/api/v1/sessions/{session.id}/groups"
    assert (await sync_to_async(api.get)(base)).status_code == 200  # the first sync
    system.whatsapp.group_rate_limit = 2
    assert (await sync_to_async(api.get)(f"{base}?refresh=true")).status_code == 200
    response = await sync_to_async(api.get)(f"{base}?refresh=true")
    assert response.status_code == 429, response.json()
    assert response.json()["error"]["code"] == "rate_limited"
    queries = system.whatsapp.group_queries[str(session.id)]
    for n in range(3):  # served from the cache: no more queries
        assert (await sync_to_async(api.get)(base)).status_code == 200
        response = await post(api, session, {"to": GROUP, "type": "text", "text": f"hi {n}"})
        assert response.status_code == 202
    await until(lambda: len(system.phone.sent(str(session.id))) == 3, what="sent", timeout=30)
    assert system.whatsapp.group_queries[str(session.id)] == queries


async def test_edits_deletions_and_reactions_both_ways(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    phone = str(session.id)
    mine = (await post(api, session, {"to": TO, "type": "text", "text": "first"})).json()["id"]
    # Sent, not only `sending` (which has its WhatsApp id already where the engine takes ours).
    await until(lambda: Message.objects.get(pk=mine).sent_at, what="sent")
    own_id = (await sync_to_async(Message.objects.get)(pk=mine)).wa_message_id
    url = f"/api/v1/sessions/{session.id}/messages/{mine}"
    response = await sync_to_async(api.patch)(url, {"text": "second"}, "json")
    assert response.status_code == 200, response.json()
    assert response.json()["text"] == "second"
    assert [e["text"] for e in response.json()["edits"]] == ["first"]
    edit = await until(
        lambda: [m for m in system.phone.sent(phone) if m["type"] == "edit"], what="the edit"
    )
    assert (edit[0]["key"]["id"], edit[0]["key"]["from_me"], edit[0]["text"]) == (
        own_id,
        True,
        "second",
    )
    response = await sync_to_async(api.delete)(url)
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    revoke = await until(
        lambda: [m for m in system.phone.sent(phone) if m["type"] == "revoke"], what="revoke"
    )
    assert revoke[0]["key"]["id"] == own_id
    response = await sync_to_async(api.patch)(url, {"text": "third"}, "json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_editable"
    picture = await upload(
        api, session, {"to": TO, "type": "image", "caption": "old"}, png(), "p.png", "image/png"
    )
    pid = picture.json()["id"]
    await until(lambda: Message.objects.get(pk=pid).sent_at, what="the image sent")
    response = await sync_to_async(api.patch)(
        f"/api/v1/sessions/{session.id}/messages/{pid}", {"text": "new caption"}, "json"
    )
    assert response.status_code == 200 and response.json()["caption"] == "new caption"
    await until(
        lambda: [m for m in system.phone.sent(phone) if m["type"] == "edit"][1:],
        what="the caption's edit",
    )
    assert [m["text"] for m in system.phone.sent(phone) if m["type"] == "edit"] == [
        "second",
        "new caption",
    ]

    # The other side: a message, a reaction to it and to ours, an edit, a reaction taken back,
    # then the deletion for everyone.
    await system.phone.receive(phone, sender=TO, text="hello", wa_message_id="3EB0THEIRS1")
    theirs = await until(lambda: Message.objects.filter(wa_message_id="3EB0THEIRS1").first())
    await system.phone.receive(
        phone, sender=TO, kind="reaction", reply_to="3EB0THEIRS1", reaction="👍"
    )
    await system.phone.receive(phone, sender=TO, kind="reaction", reply_to=own_id, reaction="❤️")
    await system.phone.receive(phone, sender=TO, kind="edit", reply_to="3EB0THEIRS1", text="hello!")
    detail = f"/api/v1/messages/{theirs.pk}"
    shown = await until(
        lambda: (body := api.get(detail).json())["text"] == "hello!" and body, what="edited"
    )
    assert [(r["by"]["phone_number"], r["emoji"]) for r in shown["reactions"]] == [(TO, "👍")]
    assert [e["text"] for e in shown["edits"]] == ["hello"]
    await system.phone.receive(
        phone, sender=TO, kind="reaction", reply_to="3EB0THEIRS1", reaction=""
    )
    await system.phone.receive(phone, sender=TO, kind="revoke", reply_to="3EB0THEIRS1")
    gone = await until(
        lambda: (body := api.get(detail).json())["status"] == "revoked" and body, what="revoked"
    )
    assert gone["reactions"] == [] and gone["text"] == "hello!"  # REVOKED_CONTENT=keep
    ours = (await sync_to_async(api.get)(f"/api/v1/messages/{mine}")).json()
    assert [r["emoji"] for r in ours["reactions"]] == ["❤️"]

    actions = [
        (b["event"], b["message"]["wa_message_id"], b.get("emoji"), b.get("new_text"))
        for b in await sync_to_async(webhooks)(session, "message.")
        if b["event"] != "message.status" and b["event"] != "message.received"
    ]
    image_id = (await sync_to_async(Message.objects.get)(pk=pid)).wa_message_id
    assert actions == [
        ("message.edited", own_id, None, "second"),
        ("message.revoked", own_id, None, None),
        ("message.edited", image_id, None, "new caption"),
        ("message.reaction", "3EB0THEIRS1", "👍", None),
        ("message.reaction", own_id, "❤️", None),
        ("message.edited", "3EB0THEIRS1", None, "hello!"),
        ("message.reaction", "3EB0THEIRS1", "", None),
        ("message.revoked", "3EB0THEIRS1", None, None),
    ]


async def test_inbound_mentions_name_whom_they_mention(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    await system.phone.receive(
        str(session.id),
        sender=MEMBER,
        text="@15550123 look",
        group=GROUP,
        wa_message_id="3EB0MENTION",
        mentions=(PHONE,),
    )
    stored = await until(lambda: Message.objects.filter(wa_message_id="3EB0MENTION").first())
    body = (await sync_to_async(api.get)(f"/api/v1/messages/{stored.pk}")).json()
    assert body["mentions"] == ["15550123@s.whatsapp.net"] and body["text"] == "@15550123 look"
    [received] = await sync_to_async(webhooks)(session, "message.received")
    assert received["message"]["mentions"] == ["15550123@s.whatsapp.net"]


async def test_a_whole_chat_is_marked_read(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    for n, (sender, group) in enumerate([(TO, ""), (TO, ""), (MEMBER, GROUP), (TO, GROUP)]):
        await system.phone.receive(
            str(session.id), sender=sender, text=f"m{n}", group=group, wa_message_id=f"3EB0R{n}"
        )
    await until(lambda: Message.objects.filter(wa_message_id="3EB0R3").exists(), what="all in")
    base = f"/api/v1/sessions/{session.id}/chats"
    chats = {c["jid"]: c["unread"] for c in (await sync_to_async(api.get)(base)).json()["results"]}
    assert chats == {TO_JID: 2, GROUP: 2}
    response = await sync_to_async(api.post)(f"{base}/{GROUP}/read")
    assert response.json() == {"chat": GROUP, "marked": 2}
    reads = system.phone.reads(str(session.id))
    assert sorted(ids for chat, ids in reads if chat == GROUP) == [["3EB0R2"], ["3EB0R3"]]
    chats = {c["jid"]: c["unread"] for c in (await sync_to_async(api.get)(base)).json()["results"]}
    assert chats == {TO_JID: 2, GROUP: 0}
    again = await sync_to_async(api.post)(f"{base}/{GROUP}/read")
    assert again.json()["marked"] == 0 and len(system.phone.reads(str(session.id))) == 2


async def test_a_poll_and_its_votes_also_after_the_session_moved(system, api) -> None:
    await system.start_worker("w1")
    session = await linked(system)
    phone = str(session.id)
    body = {
        "to": TO,
        "type": "poll",
        "poll": {"question": "Lunch?", "options": ["Pizza", "Sushi", "Salad"], "multiple": True},
    }
    response = await post(api, session, body)
    assert response.status_code == 202, response.json()
    poll = response.json()["id"]
    await until(lambda: Message.objects.get(pk=poll).sent_at, what="sent")
    sent = await sync_to_async(Message.objects.get)(pk=poll)
    poll_id = sent.wa_message_id
    assert sent.payload["poll"]["secret"]
    await system.phone.vote(phone, TO, poll_id, ["Pizza", "Sushi"])
    detail = f"/api/v1/messages/{poll}"

    def tally() -> dict:
        shown = api.get(detail).json()["poll"]
        return {row["option"]: [v["phone_number"] for v in row["voters"]] for row in shown["tally"]}

    await until(lambda: tally()["Sushi"] == [TO], what="the first vote")
    assert await sync_to_async(tally)() == {"Pizza": [TO], "Sushi": [TO], "Salad": []}

    # The session moves to another worker; its votes are still read (the secret went with it).
    await system.start_worker("w2")
    w2 = await sync_to_async(lambda: Worker.objects.get(name="w2").pk)()
    moved = await sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/migrate", {"worker": str(w2)}, "json"
    )
    assert moved.status_code == 202, moved.json()
    await until(
        lambda: status(session) == "connected" and owner(session) == "w2", what="moved", timeout=30
    )
    await system.phone.vote(phone, TO, poll_id, ["Salad"])  # a changed vote replaces the first
    await until(lambda: tally()["Salad"] == [TO], what="the changed vote", timeout=30)
    assert await sync_to_async(tally)() == {"Pizza": [], "Sushi": [], "Salad": [TO]}
    await system.phone.vote(phone, TO, poll_id, ["Burger"])  # not an option: recorded as such
    await until(lambda: api.get(detail).json()["poll"]["undecryptable_votes"] == 1, what="bad vote")
    votes = [
        (b["options"], b["decrypted"], b["by"]["phone_number"])
        for b in await sync_to_async(webhooks)(session, "poll.vote")
    ]
    assert votes == [(["Pizza", "Sushi"], True, TO), (["Salad"], True, TO), ([], False, TO)]


@pytest.mark.parametrize("engine_name", ["neonize"])
async def test_a_vote_that_cannot_be_decrypted_is_recorded_not_dropped(system, api) -> None:
    """On neonize only: the sandbox does not encrypt votes."""
    assert system.whatsapp is not None
    await system.start_worker()
    session = await linked(system)
    body = {"to": TO, "type": "poll", "poll": {"question": "Q?", "options": ["A", "B"]}}
    poll = (await post(api, session, body)).json()["id"]
    poll_id = await until(lambda: Message.objects.get(pk=poll).wa_message_id, what="sent")
    system.whatsapp.poll_vote(str(session.id), TO, poll_id, ["A"], tamper=True)
    [vote] = await until(lambda: webhooks(session, "poll.vote"), what="the vote", timeout=30)
    assert (vote["decrypted"], vote["options"]) == (False, [])
    assert "failed to decrypt" in vote["error"]
    shown = (await sync_to_async(api.get)(f"/api/v1/messages/{poll}")).json()["poll"]
    assert shown["undecryptable_votes"] == 1 and all(row["count"] == 0 for row in shown["tally"])


def webp(frames: int = 1, size: int = 64) -> bytes:
    import io

    from PIL import Image

    images = [Image.new("RGB", (size, size), (40 * n, 90, 200)) for n in range(frames)]
    out = io.BytesIO()
    images[0].save(out, "WEBP", save_all=frames > 1, append_images=images[1:], duration=100)
    return out.getvalue()


async def test_stickers_go_out_and_come_in(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    for frames in (1, 3):  # a static and an animated sticker
        response = await upload(
            api, session, {"to": TO, "type": "sticker"}, webp(frames), "s.webp", "image/webp"
        )
        assert response.status_code == 202, response.json()
    sent = await until(
        lambda: len(got := system.phone.sent(str(session.id))) == 2 and got, what="both"
    )
    assert [m["type"] for m in sent] == ["sticker", "sticker"]
    await system.phone.receive(
        str(session.id),
        sender=TO,
        kind="sticker",
        media=webp(),
        mime_type="image/webp",
        wa_message_id="3EB0STICKER",
    )
    stored = await until(
        lambda: (
            Message.objects.filter(wa_message_id="3EB0STICKER", media_pending=False)
            .exclude(media="")
            .first()
        ),
        what="the sticker stored",
        timeout=30,
    )
    assert (stored.type, stored.media_mime_type) == ("sticker", "image/webp")


async def test_ten_thousand_messages_of_history_while_live_ones_flow(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    await system.phone.history(str(session.id), 10_000, chats=25)
    for n in range(3):  # live messages while the history is stored
        await system.phone.receive(
            str(session.id), sender=TO, text=f"live {n}", wa_message_id=f"3EB0LIVE{n}"
        )
    await until(
        lambda: Message.objects.filter(session=session, history=True).count() == 10_000,
        what="the whole history",
        timeout=120,
    )
    await until(lambda: Message.objects.filter(wa_message_id="3EB0LIVE2").exists(), what="live")
    synced = await sync_to_async(webhooks)(session, "history.synced")
    assert sum(b["stored"] for b in synced) == 10_000 and all(b["duplicates"] == 0 for b in synced)
    assert len(synced) == 20  # a batch of 500 each
    received = await sync_to_async(webhooks)(session, "message.received")
    assert [b["message"]["text"] for b in received] == ["live 0", "live 1", "live 2"]
    chats = (
        await sync_to_async(api.get)(f"/api/v1/sessions/{session.id}/chats?page_size=200")
    ).json()
    assert len(chats["results"]) == 26  # 25 from the history, and TO's
    await system.phone.history(str(session.id), 1_000, chats=25)  # sent again: nothing twice
    await until(lambda: len(webhooks(session, "history.synced")) == 22, what="again", timeout=60)
    again = (await sync_to_async(webhooks)(session, "history.synced"))[-2:]
    assert [b["duplicates"] for b in again] == [500, 500]
    assert (
        await sync_to_async(Message.objects.filter(session=session, history=True).count)() == 10_000
    )


@pytest.fixture
def site():
    """A web page with Open Graph tags and an image, on 127.0.0.1."""
    import io
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (800, 400), "green").save(picture, "PNG")
    page = (
        b'<html><head><title>Fallback</title><meta property="og:title" content="Our shop">'
        b'<meta property="og:description" content="Fresh every day">'
        b'<meta property="og:image" content="/cover.png"></head><body>hi</body></html>'
    )

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body, kind = (
                (picture.getvalue(), "image/png")
                if self.path == "/cover.png"
                else (page, "text/html")
            )
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


async def test_a_text_with_a_link_preview(system, api, site, settings) -> None:
    settings.MEDIA_FETCH_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # the test's page is local
    await system.start_worker()
    session = await linked(system)
    text = f"See {site}/shop today"
    body = {"to": TO, "type": "text", "text": text, "link_preview": True}
    assert (await post(api, session, body)).status_code == 202
    plain = {"to": TO, "type": "text", "text": f"no preview for {site}/shop"}
    assert (await post(api, session, plain)).status_code == 202
    sent = await until(
        lambda: len(got := system.phone.sent(str(session.id))) == 2 and got, what="sent"
    )
    assert sent[0]["text"] == text
    assert sent[0]["preview"] == {
        "url": f"{site}/shop",
        "title": "Our shop",
        "description": "Fresh every day",
        "thumbnail": True,
    }
    assert sent[1]["preview"] is None


async def test_a_contacts_poll_is_stored_with_its_options(system, api) -> None:
    await system.start_worker()
    session = await linked(system)
    await system.phone.poll(str(session.id), TO, "Which day?", ["Mon", "Tue"])
    stored = await until(
        lambda: Message.objects.filter(session=session, type="poll").first(), what="the poll"
    )
    shown = (await sync_to_async(api.get)(f"/api/v1/messages/{stored.pk}")).json()
    assert (shown["direction"], shown["sender_phone"]) == ("in", TO)
    assert (shown["poll"]["question"], shown["poll"]["options"]) == ("Which day?", ["Mon", "Tue"])
    assert [row["count"] for row in shown["poll"]["tally"]] == [0, 0]
    [received] = await sync_to_async(webhooks)(session, "message.received")
    assert received["message"]["poll"]["options"] == ["Mon", "Tue"]
