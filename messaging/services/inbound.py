"""Inbound messages, as the owning worker stores them: once each (deduplicated by their
WhatsApp id), their media after them, and `read` once the phone was told."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from gateway.core.errors import Conflict
from messaging import events
from messaging.models import Message
from messaging.services.media import StoredMedia
from messaging.services.usage import count_media_received, count_received
from messaging.states import Direction, MessageStatus
from sessions_app.services import calls, fenced_lock

M = MessageStatus


@dataclass(frozen=True)
class Received:
    """A message as the linked phone saw it: from someone else, or sent from the phone itself
    (`from_me`). `media` describes its file (mime_type, size, sha256, filename, and how the engine
    downloads it) until the file is stored."""

    wa_message_id: str
    chat: str
    sender: str
    type: str
    at: datetime
    from_me: bool = False
    sender_phone: str = ""
    text: str = ""
    caption: str = ""
    reply_to: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    media: dict[str, Any] | None = None


def inbound_store(*, session_id: uuid.UUID, epoch: int, message: Received) -> Message | None:
    """Store a received message once (deduplicated by its WhatsApp id); its `message.received`
    event is written now, or when its media is stored. None for a duplicate."""
    media = message.media or {}
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        try:
            with transaction.atomic():
                stored = Message.objects.create(
                    session=session,
                    direction=Direction.OUT if message.from_me else Direction.IN,
                    status=M.SENT if message.from_me else M.RECEIVED,
                    wa_message_id=message.wa_message_id,
                    chat=message.chat,
                    sender=message.sender,
                    sender_phone=message.sender_phone,
                    type=message.type,
                    text=message.text,
                    caption=message.caption,
                    reply_to=message.reply_to,
                    payload={**message.payload, **({"media_ref": media} if media else {})},
                    received_at=message.at,
                    media_pending=bool(media),
                    media_mime_type=media.get("mime_type", ""),
                    media_size=media.get("size"),
                    media_sha256=media.get("sha256", ""),
                    media_filename=media.get("filename", ""),
                )
        except IntegrityError:
            return None
        count_received(stored)
        if not media and stored.direction == Direction.IN:
            events.message_received(stored, session)
        return stored


def inbound_media_stored(
    *, session_id: uuid.UUID, epoch: int, message_id: uuid.UUID, stored: StoredMedia
) -> bool:
    """The message's file is in storage now: it points at it, and is announced (once)."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        message = Message.objects.select_for_update().get(pk=message_id)
        if not message.media_pending:
            return False
        for name, value in stored.model_fields().items():
            setattr(message, name, value)
        message.media_pending = False
        message.payload = {k: v for k, v in message.payload.items() if k != "media_ref"}
        message.save()
        count_media_received(message, stored.size)
        if message.direction == Direction.IN:
            events.message_received(message, session)
        return True


def media_pending(*, session_id: uuid.UUID) -> list[Message]:
    return list(
        Message.objects.filter(session_id=session_id, media_pending=True).order_by("created_at")[
            :20
        ]
    )


class NotInbound(Conflict):
    code = "not_inbound"
    message = "Only inbound messages can be marked read."


def message_read(*, message: Message) -> None:
    """Mark an inbound message read: the worker running its session sends the read receipt (blue
    ticks), then the message is `read`. Once read, nothing is sent again."""
    if message.direction != Direction.IN:
        raise NotInbound()
    if message.status == M.READ:
        return
    calls.call_or_raise(
        message.session_id,
        "mark_read",
        chat=message.chat,
        message_ids=[message.wa_message_id],
        sender=message.sender,
    )
    with transaction.atomic():
        locked = Message.objects.select_for_update().get(pk=message.pk)
        if locked.advance_to(M.READ):
            locked.save(update_fields=["status", "read_at"])
        message.status, message.read_at = locked.status, locked.read_at


def chat_read(*, session: Any, chat: str) -> int:
    """Mark a whole chat read: every inbound message still unread in it gets its read receipt
    (one call per sender, as WhatsApp keys receipts in groups by sender), then is `read`.
    How many were marked."""
    calls.session_connected(session)
    unread = list(
        Message.objects.filter(
            session=session, chat=chat, direction=Direction.IN, status=M.RECEIVED
        )
        .exclude(wa_message_id=None)
        .values_list("pk", "wa_message_id", "sender")
    )
    by_sender: dict[str, list[str]] = {}
    for _, wa_message_id, sender in unread:
        if wa_message_id:
            by_sender.setdefault(sender, []).append(wa_message_id)
    for sender, ids in by_sender.items():
        calls.session_call(session, "mark_read", chat=chat, message_ids=ids, sender=sender)
    marked = 0
    with transaction.atomic():
        for message in Message.objects.select_for_update().filter(pk__in=[u[0] for u in unread]):
            if message.advance_to(M.READ):
                message.save(update_fields=["status", "read_at"])
                marked += 1
    return marked


HISTORY_INSERT_BATCH = 1000


def history_store(
    *, session_id: uuid.UUID, epoch: int, messages: list[Received], sync_type: str = ""
) -> dict[str, int]:
    """Store a batch of history (what WhatsApp sent after linking): flagged `history`, without
    a webhook each, deduplicated with what is stored already (live or an earlier batch) by the
    WhatsApp id, inserted in batches; as much of it as `HISTORY_SYNC` keeps. One
    `history.synced` event says what the batch brought."""
    if settings.HISTORY_SYNC == "off":
        return {"stored": 0, "duplicates": 0, "skipped": len(messages)}
    oldest = timezone.now() - timedelta(days=settings.HISTORY_RECENT_DAYS)
    kept = [m for m in messages if settings.HISTORY_SYNC == "full" or m.at >= oldest]
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        ids = {m.wa_message_id for m in kept}
        known = set(
            Message.objects.filter(session=session, wa_message_id__in=ids).values_list(
                "wa_message_id", flat=True
            )
        )
        rows, seen = [], set(known)
        for m in kept:
            if m.wa_message_id in seen:
                continue
            seen.add(m.wa_message_id)
            media = m.media or {}
            rows.append(
                Message(
                    session=session,
                    direction=Direction.OUT if m.from_me else Direction.IN,
                    status=M.SENT if m.from_me else M.READ,  # the phone has seen its history
                    wa_message_id=m.wa_message_id,
                    chat=m.chat,
                    sender=m.sender,
                    sender_phone=m.sender_phone,
                    type=m.type,
                    text=m.text,
                    caption=m.caption,
                    reply_to=m.reply_to,
                    payload={**m.payload, **({"media_ref": media} if media else {})},
                    received_at=m.at,
                    media_mime_type=media.get("mime_type", ""),
                    media_size=media.get("size"),
                    media_filename=media.get("filename", ""),
                    history=True,
                )
            )
        Message.objects.bulk_create(rows, batch_size=HISTORY_INSERT_BATCH, ignore_conflicts=True)
        counts = {
            "stored": len(rows),
            "duplicates": len(kept) - len(rows),
            "skipped": len(messages) - len(kept),
        }
        events.history_synced(
            session,
            sync_type=sync_type,
            chats=len({row.chat for row in rows}),
            **counts,
        )
    return counts
