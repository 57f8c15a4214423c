"""What the owning worker hears about contacts: their presence (`presence.update`) and changes
of the account's blocklist made on another device (`blocklist.changed`), each an event in the
session's sequence (fenced like every write of the worker)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.db import transaction

from gateway.core.jids import jid_to_phone
from sessions_app import events
from sessions_app.services.fence import fenced_lock


def presence_announce(
    *,
    session_id: uuid.UUID,
    epoch: int,
    chat: str,
    sender: str,
    state: str,
    last_seen: float | None = None,
    sender_phone: str = "",
) -> None:
    """`state`: available, unavailable (with `last_seen`, a Unix time, when the contact shares
    it), typing, recording or paused (in `chat`, by `sender`, whose number is `sender_phone`
    when known)."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        seen = datetime.fromtimestamp(last_seen, tz=UTC).isoformat() if last_seen else None
        events.presence_changed(
            session,
            {
                "chat": chat,
                "sender": sender,
                "sender_phone": sender_phone or jid_to_phone(sender),
                "state": state,
                "last_seen": seen,
            },
        )


def blocklist_announce(*, session_id: uuid.UUID, epoch: int, changes: list[dict[str, str]]) -> None:
    """`changes`: {jid, phone_number, action: block|unblock} each."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        events.blocklist_changed(session, changes)
