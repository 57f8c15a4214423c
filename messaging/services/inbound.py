"""Inbound messages, as the owning worker stores them: once each (deduplicated by their
WhatsApp id), their media after them, and `read` once the phone was told."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from gateway.core.errors import Conflict
from messaging import events
from messaging.models import Message
from messaging.services.media import StoredMedia
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
