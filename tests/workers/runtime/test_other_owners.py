"""Someone else holding the session, under real worker processes (PostgreSQL, Redis, S3):

- another device takes a connected session (WhatsApp replaces our stream): the session fails
  with `stream_replaced` and is not reconnected by itself (two clients that each reconnect when
  replaced would take the account from each other forever); nothing queued is lost or sent
  twice, and a start reconnects it from its auth state, without a new QR code. On both engines.
- a session linked on two workers' stores at once: it was linked on one, moved, logged out and
  linked again (a new device) on the other; back on the first, whose local store still holds
  the old device, the latest snapshot is restored rather than the stale store used (which
  WhatsApp would refuse as unlinked: the new link would be logged out).
"""

from __future__ import annotations

import pytest

from messaging.models import Message
from messaging.services import message_send
from messaging.services.send import SessionNotRunning
from sessions_app import services as sessions
from sessions_app.models import Session, SessionEvent
from sessions_app.sandbox import sandbox_control_send
from tests.history import check_history
from tests.processes import Processes, wait_until
from tests.workers.runtime.test_faults import LEASE, heartbeats_for, held_by, link_all, qr_counts
from workers.models import Worker

pytestmark = pytest.mark.django_db(transaction=True)
NO_PACING = {"SEND_INTERVAL_MIN_SECONDS": "0", "SEND_INTERVAL_MAX_SECONDS": "0"}
TO = "4915123456789@s.whatsapp.net"


def replaced(session_id: object) -> bool:
    return Session.objects.filter(
        pk=session_id, status="failed", last_error_code="stream_replaced", worker=None
    ).exists()


def queue(session_id: object, text: str) -> Message:
    session = Session.objects.get(pk=session_id)
    return message_send(session=session, to=TO, type="text", text=text, fingerprint="").message


def sent(message: Message) -> bool:
    return Message.objects.filter(pk=message.pk, status__in=("sent", "delivered", "read")).exists()


def replaced_then_started(worker: str, session_id: object, take_over) -> list[Message]:
    """A message goes; another device takes the connected session (`take_over`); the session
    stays failed (a send is refused meanwhile, nothing is queued for a session nobody runs); a
    start reconnects it and the next message goes, each once. The two messages."""
    before = queue(session_id, "before the takeover")
    wait_until(lambda: sent(before), 30, "the first message to go")
    take_over()
    wait_until(lambda: replaced(session_id), 30, "the session to fail as replaced")
    with pytest.raises(SessionNotRunning):
        queue(session_id, "while replaced")
    # The worker's heartbeats for two leases: time in which it could have fought back.
    heartbeats_for(worker, 2 * LEASE)
    row = Session.objects.get(pk=session_id)
    assert (row.status, row.desired_state, row.worker) == ("failed", "stopped", None)

    sessions.session_request_start(session=row)
    wait_until(lambda: held_by(worker, [session_id], "connected"), 60, "the start to reconnect")
    after = queue(session_id, "after the takeover")
    wait_until(lambda: sent(after), 30, "the next message to go")
    assert qr_counts([session_id])[session_id] == 1  # never a new QR code
    reasons = SessionEvent.objects.filter(session_id=session_id, to_status="failed")
    assert list(reasons.values_list("reason", flat=True)) == ["stream_replaced"]
    return [Message.objects.get(pk=before.pk), Message.objects.get(pk=after.pk)]


def test_another_device_taking_a_connected_session_is_not_fought_over(workers: Processes) -> None:
    workers.worker("a", **NO_PACING)
    [session_id] = link_all(workers, "a", 1)
    session = Session.objects.get(pk=session_id)

    replaced_then_started(
        "a", session_id, lambda: sandbox_control_send(session=session, action="replace")
    )

    connects = [e for e in workers.world.read_log(str(session_id)) if e["event"] == "connect"]
    assert len(connects) == 2  # linked, then started again: no reconnect of its own
    on_phone = [m["text"] for m in workers.world.phone_messages(str(session_id))]
    assert (on_phone.count("before the takeover"), on_phone.count("after the takeover")) == (1, 1)
    assert check_history(workers.world, [session_id], replaced_ok=True) == []


def test_another_device_taking_a_connected_neonize_session_is_not_fought_over(
    neonize_fleet,
) -> None:
    fleet, world = neonize_fleet
    fleet.worker("a", engines="neonize", **NO_PACING)
    session, _ = sessions.session_create(external_id=None, engine="neonize")
    wait_until(lambda: held_by("a", [session.pk], "scan_qr"), 60, "a QR code")
    world.scan(str(session.pk), "+15550000001")
    wait_until(lambda: held_by("a", [session.pk], "connected"), 60, "the link")
    wait_until(
        lambda: Session.objects.exclude(snapshot_key="").filter(pk=session.pk).exists(),
        60,
        "its snapshot",
    )
    logins = len(world.logins)

    messages = replaced_then_started("a", session.pk, lambda: world.replace(str(session.pk)))

    again = [how for uuid, how, _ in world.logins[logins:] if uuid == str(session.pk)]
    assert len(again) == 1 and again[0].endswith("@s.whatsapp.net")  # its stored device
    # Each on the phone once, under the id WhatsApp gave it.
    assert sorted(m["id"] for m in world.received(TO)) == sorted(m.wa_message_id for m in messages)


def test_a_session_linked_on_two_workers_stores_restores_the_latest_link(
    workers: Processes,
) -> None:
    workers.worker("a")
    [session_id] = link_all(workers, "a", 1)
    first_link = Session.objects.get(pk=session_id).snapshot_key
    workers.worker("b")
    heartbeats_for("b", 0)

    def move_to(name: str) -> None:
        target = Worker.objects.get(name=name, status="active")
        sessions.session_request_migrate(session=Session.objects.get(pk=session_id), target=target)
        wait_until(lambda: held_by(name, [session_id], "connected"), 60, f"the move to {name}")

    move_to("b")
    # Logged out on b (the device unlinked, b's store deleted); still wanted running, it shows a
    # new QR code there, and is linked again.
    sessions.session_request_logout(session=Session.objects.get(pk=session_id))
    logged_out = SessionEvent.objects.filter(session_id=session_id, to_status="logged_out")
    wait_until(logged_out.exists, 30, "the logout")
    wait_until(lambda: qr_counts([session_id])[session_id] == 2, 60, "a new QR code")
    wait_until(lambda: held_by("b", [session_id], "scan_qr"), 60, "b to show it")
    sandbox_control_send(
        session=Session.objects.get(pk=session_id), action="scan", phone_number="+15550000002"
    )
    wait_until(
        lambda: (
            Session.objects.filter(pk=session_id, status="connected")
            .exclude(snapshot_key__in=["", first_link])
            .exists()
        ),
        60,
        "the second link's snapshot",
    )
    stale = workers.workdir / "a" / "auth" / str(session_id) / "store.sqlite3"
    assert stale.exists()  # a still holds the first link's store

    move_to("a")
    row = Session.objects.get(pk=session_id)
    assert row.phone_number == "+15550000002"
    assert "auth state restored from the latest snapshot" in workers.log("a")
    assert qr_counts([session_id])[session_id] == 2  # the two links, nothing more
    assert check_history(workers.world, [session_id]) == []
