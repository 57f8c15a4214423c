"""Where a session's changes leave: the webhook outbox (`enqueue`) and the live pushes.

`session_status_changed` runs inside the transaction that made the change. It takes the session's
next event sequence, writes the `session.status` outbox row (when a backend is configured) in that
same transaction — so no event is lost and none is invented by a rollback — and pushes the event
to the channel layer (groups `session.<id>` and `sessions`) only after the commit.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.utils import timezone

from gateway.outbox import enqueue
from sessions_app.models import Session

logger = logging.getLogger(__name__)
SESSION_STATUS_PATH = "/api/webhooks/session-status"
PRESENCE_PATH = "/api/webhooks/presence"
BLOCKLIST_PATH = "/api/webhooks/blocklist"
USAGE_PATH = "/api/webhooks/usage"


def _next_sequence(session: Session) -> int:
    """The session's next event number, taken in one statement (the row stays locked until the
    transaction ends, so the numbers are gap-free and in commit order per session)."""
    key = Session._meta.pk.get_db_prep_value(session.pk, connection)  # a uuid, or hex on SQLite
    with connection.cursor() as cursor:
        cursor.execute(_NEXT_SEQUENCE, [key])
        return cursor.fetchone()[0]


_NEXT_SEQUENCE = (
    f"UPDATE {Session._meta.db_table} SET event_sequence = event_sequence + 1 "  # noqa: S608
    "WHERE id = %s RETURNING event_sequence"
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
    is current."""
    body: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "event": event,
        "occurred_at": timezone.now().isoformat(),
        "sequence": _next_sequence(session),
        "session": session_state(session)["session"],
        **fields,
    }
    enqueue(
        body=body,
        path=path,
        session_id=session.pk,
        sequence=body["sequence"],
        trace_context=trace_context,
    )
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
