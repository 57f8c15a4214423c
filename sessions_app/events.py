"""Where a session's changes leave: the webhook outbox (`enqueue`) and the live pushes.

`session_status_changed` runs inside the transaction that made the change. It takes the session's
next event sequence, writes the `session.status` outbox row (when a backend is configured) in that
same transaction — so no event is lost and none is invented by a rollback — and pushes the event
to the channel layer (groups `session.<id>` and `sessions`) only after the commit.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.utils import timezone

from gateway.core import tracing
from gateway.outbox import enqueue
from sessions_app.models import Session

logger = logging.getLogger(__name__)
SESSION_STATUS_PATH = "/api/webhooks/session-status"
PRESENCE_PATH = "/api/webhooks/presence"
BLOCKLIST_PATH = "/api/webhooks/blocklist"
USAGE_PATH = "/api/webhooks/usage"


def _next_sequence(session: Session, count: int = 1) -> int:
    """The last of the session's next `count` event numbers, taken in one statement (the row
    stays locked until the transaction ends, so the numbers are gap-free and in commit order per
    session)."""
    key = Session._meta.pk.get_db_prep_value(session.pk, connection)  # a uuid, or hex on SQLite
    with connection.cursor() as cursor:
        cursor.execute(_NEXT_SEQUENCE, [count, key])
        return cursor.fetchone()[0]


_NEXT_SEQUENCE = (
    f"UPDATE {Session._meta.db_table} SET event_sequence = event_sequence + %s "  # noqa: S608
    "WHERE id = %s RETURNING event_sequence"
)

# The events `events_together` holds back: (session id, [(body, path, trace context), …]).
_held: ContextVar[tuple[Any, list[tuple[dict[str, Any], str, str]]] | None] = ContextVar(
    "held_events", default=None
)


@contextlib.contextmanager
def events_together(session: Session) -> Iterator[None]:
    """The session's events made inside are numbered and written when it ends, together: one
    sequence step and one outbox statement for all of them instead of one each (a run of
    receipts, a message's `sent` with the next one's `sending`). Use inside the transaction, with
    the session's row locked; nothing may read their numbers before the end."""
    if _held.get() is not None:  # already inside one: that one writes them
        yield
        return
    held: list[tuple[dict[str, Any], str, str]] = []
    token = _held.set((session.pk, held))
    try:
        yield
    finally:
        _held.reset(token)
    if held:
        last = _next_sequence(session, len(held))
        for n, (body, _, _) in enumerate(held):
            body["sequence"] = last - len(held) + 1 + n
        enqueue(
            session_id=session.pk,
            events=[(body, path, body["sequence"], trace) for body, path, trace in held],
        )


def session_state(session: Session) -> dict[str, Any]:
    """The `session` and `error` fields of a `session.status` body (webhooks and WebSockets)."""
    error = None
    if session.last_error_code or session.last_error:
        error = {"code": session.last_error_code, "message": session.last_error}
    return {
        "session": {
            "id": str(session.pk),
            "external_id": session.external_id,
            "status": session.status,
            "phone_number": session.phone_number,
            "worker_id": str(session.worker_id) if session.worker_id else None,
        },
        "error": error,
    }


def outbox_event(
    session: Session, event: str, path: str, *, trace_context: str = "", **fields: Any
) -> dict[str, Any]:
    """An event about `session` (`id`, `event`, `occurred_at`, the session's next `sequence`,
    `session`, then `fields`), into the outbox (`enqueue`). Every event about a session comes
    through here, so a session's events are numbered in one sequence. Call inside the transaction
    that made the change. `trace_context`: the stored trace of what caused it, for when no span
    is current. Inside `events_together`, its `sequence` is set when that ends."""
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "event": event,
        "occurred_at": timezone.now().isoformat(),
        "sequence": None,
        "session": session_state(session)["session"],
        **fields,
    }
    trace = tracing.context(otherwise=trace_context)
    held = _held.get()
    if held is not None and held[0] == session.pk:
        held[1].append((body, path, trace))
        return body
    body["sequence"] = _next_sequence(session)
    enqueue(session_id=session.pk, events=[(body, path, body["sequence"], trace)])
    return body


def session_status_changed(
    session: Session, *, qr: dict[str, Any] | None = None, pair_code: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Record and announce the session's current state. Call inside the changing transaction."""
    extra: dict[str, Any] = {"error": session_state(session)["error"]}
    if qr is not None:
        extra["qr"] = qr  # its text: whoever shows it draws it (sessions_app.services.qr)
    if pair_code is not None:
        extra["pair_code"] = pair_code
    body = outbox_event(session, "session.status", SESSION_STATUS_PATH, **extra)
    transaction.on_commit(lambda: push(session.pk, body))
    return body


def push(session_id: object, body: dict[str, Any]) -> None:
    """Best effort after commit: a channel layer that is down costs a live update, nothing more
    (the outbox row and the database hold the truth)."""
    message = {"type": "session.status", "payload": body}
    try:
        layer = get_channel_layer()
        async_to_sync(layer.group_send)(f"session.{session_id}", message)
        async_to_sync(layer.group_send)("sessions", message)
    except Exception:
        logger.warning("live push failed", exc_info=True, extra={"session_id": str(session_id)})


def presence_changed(session: Session, presence: dict[str, Any]) -> dict[str, Any]:
    """A contact's presence (`presence.update`): online/offline or typing in a chat. Call inside
    the transaction that took the session's row."""
    return outbox_event(session, "presence.update", PRESENCE_PATH, presence=presence)


def blocklist_changed(session: Session, changes: list[dict[str, Any]]) -> dict[str, Any]:
    """The account's blocklist changed on another device (`blocklist.changed`). Call inside the
    transaction that took the session's row."""
    return outbox_event(session, "blocklist.changed", BLOCKLIST_PATH, changes=changes)


def usage_reported(session: Session, usage: dict[str, Any]) -> dict[str, Any]:
    """A session's usage on one UTC day (`usage.report`), in the shape of `GET /usage`'s results
    with `granularity: day`. Call inside the transaction that claimed the day's report."""
    return outbox_event(session, "usage.report", USAGE_PATH, usage=usage)
