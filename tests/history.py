"""A history checker every fault scenario runs at its end (in the manner of Jepsen's checkers):
from what the simulated WhatsApp servers logged, what the database holds and, when given, what
a receiver got, it lists every broken guarantee:

- one owner at a time: a session never had two connections open (when `replaced_ok` is false,
  none was even closed by the servers because another opened: the old owner closed first);
- every outbound message accepted is on the phone exactly once (sent, delivered, read, played),
  or `failed` with a reason; none is left `queued` or `sending`;
- every event committed for a backend was delivered at least once (no delivery left pending,
  none dead), and a receiver got each session's events in sequence order (after dropping
  repeats, which at-least-once allows);
- no session lost its auth state without a logout.

`check_history(...)` returns the problems (an empty list when the history is good); tests
assert it is empty, so a failure names every broken guarantee at once."""

from __future__ import annotations

from collections import Counter
from typing import Any

from gateway.outbox.models import DeliveryStatus, WebhookDelivery
from messaging.models import Message
from messaging.states import Direction, MessageStatus
from sessions_app.models import Session, SessionEvent
from workers.engines.sandbox import SandboxWorld

ON_THE_PHONE = {
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.READ,
    MessageStatus.PLAYED,
}


def check_history(
    world: SandboxWorld,
    session_ids: list[Any],
    *,
    replaced_ok: bool = False,
    received: list[dict] | None = None,
) -> list[str]:
    ids = [str(i) for i in session_ids]
    return [
        *_one_owner(world, ids, replaced_ok),
        *_messages_once(world, ids),
        *_events_delivered(ids, received),
        *_auth_kept(ids),
    ]


def _one_owner(world: SandboxWorld, ids: list[str], replaced_ok: bool) -> list[str]:
    problems = []
    for session_id in ids:
        open_now: set[str] = set()
        for entry in world.read_log(session_id):
            if entry["event"] == "connect":
                if open_now:
                    problems.append(f"{session_id}: two connections at {entry['at']}")
                open_now.add(entry["connection"])
            elif entry["event"] == "disconnect":
                open_now.discard(entry["connection"])
                if entry.get("reason") == "replaced by another connection" and not replaced_ok:
                    problems.append(
                        f"{session_id}: {entry['worker']}'s connection still open when another "
                        f"opened, at {entry['at']}"
                    )
    return problems


def _messages_once(world: SandboxWorld, ids: list[str]) -> list[str]:
    problems = []
    for session_id in ids:
        on_phone = Counter(m["id"] for m in world.phone_messages(session_id))
        for message in Message.objects.filter(session_id=session_id, direction=Direction.OUT):
            shown = f"{session_id}: message {message.pk} ({message.status})"
            if message.status in ON_THE_PHONE:
                if (copies := on_phone[str(message.wa_message_id)]) != 1:
                    problems.append(f"{shown} is on the phone {copies} times")
            elif message.status == MessageStatus.FAILED:
                if not message.error_code:
                    problems.append(f"{shown} failed without a reason")
            elif message.status in (MessageStatus.QUEUED, MessageStatus.SENDING):
                problems.append(f"{shown} never went out")
    return problems


def _events_delivered(ids: list[str], received: list[dict] | None) -> list[str]:
    problems = []
    deliveries = WebhookDelivery.objects.filter(session_id__in=ids)
    for status in (DeliveryStatus.PENDING, DeliveryStatus.DEAD):
        if count := deliveries.filter(status=status).count():
            problems.append(f"{count} deliveries {status}")
    if received is not None:
        expected = set(deliveries.values_list("event_id", flat=True))
        seen: dict[str, list[int]] = {}
        got = set()
        for body in received:
            if body["id"] in got:
                continue  # a repeat: at least once allows it
            got.add(body["id"])
            if body.get("session"):
                seen.setdefault(body["session"]["id"], []).append(body["sequence"])
        if missing := {str(e) for e in expected} - got:
            problems.append(f"{len(missing)} events never reached the receiver")
        for session_id, sequences in seen.items():
            if sequences != sorted(sequences):
                problems.append(f"{session_id}: events out of order at the receiver")
    return problems


def _auth_kept(ids: list[str]) -> list[str]:
    logged_out = set(
        SessionEvent.objects.filter(session_id__in=ids, to_status="logged_out").values_list(
            "session_id", flat=True
        )
    )
    return [
        f"{session.pk}: auth state gone without a logout"
        for session in Session.objects.filter(pk__in=ids, snapshot_key="")
        if session.pk not in logged_out
    ]
