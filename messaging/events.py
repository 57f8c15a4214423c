"""Where a message's changes leave: a `message.status` event for every forward step of an
outbound message, and one `message.received` event per inbound message (once its media is
stored). Both go into the outbox in their session's event sequence
(`sessions_app.events.outbox_event`), in the transaction that made the change. The bodies are
also what the API shows of a message's error and media.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from messaging.models import Message
from messaging.services.media import media_url
from messaging.states import STATUS_TIMESTAMP_FIELDS
from sessions_app.events import outbox_event
from sessions_app.models import Session

MESSAGE_STATUS_PATH = "/api/webhooks/message-status"
MESSAGE_RECEIVED_PATH = "/api/webhooks/message-received"
MESSAGE_ACTIONS_PATH = "/api/webhooks/message-actions"
HISTORY_PATH = "/api/webhooks/history"


def message_error(message: Message) -> dict[str, str] | None:
    if not (message.error_code or message.error_message):
        return None
    return {"code": message.error_code, "message": message.error_message}


def message_media(message: Message, *, with_url: bool) -> dict[str, Any] | None:
    if not (message.media or message.media_pending):
        return None
    body: dict[str, Any] = {
        "mime_type": message.media_mime_type,
        "size": message.media_size,
        "sha256": message.media_sha256,
        "filename": message.media_filename,
    }
    if with_url:
        body["url"] = media_url(message)
    return body


def _timestamp(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def message_status_body(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.pk),
        "wa_message_id": message.wa_message_id,
        "status": message.status,
        "chat": message.chat,
        "idempotency_key": message.idempotency_key,
        "error": message_error(message),
        "timestamp": _timestamp(
            getattr(message, STATUS_TIMESTAMP_FIELDS.get(message.status, "created_at"))
        ),
    }


def message_received_body(message: Message) -> dict[str, Any]:
    payload = {k: v for k, v in message.payload.items() if k != "media_ref"}
    return {
        "id": str(message.pk),
        "wa_message_id": message.wa_message_id,
        "chat": message.chat,
        "sender": message.sender,
        "sender_phone": message.sender_phone,
        "type": message.type,
        "text": message.text,
        "caption": message.caption,
        "reply_to": message.reply_to,
        "timestamp": _timestamp(message.received_at),
        "media": message_media(message, with_url=True),
        **payload,
    }


def history_synced(session: Session, **counts: Any) -> None:
    outbox_event(session, "history.synced", HISTORY_PATH, **counts)


def message_status_changed(message: Message, session: Session) -> None:
    """Its `message.status` event, in the message's trace: the current span's (the worker's send)
    or, where none is current (a receipt), the one stored with the message."""
    outbox_event(
        session,
        "message.status",
        MESSAGE_STATUS_PATH,
        trace_context=message.trace_context,
        message=message_status_body(message),
    )


def message_received(message: Message, session: Session) -> None:
    outbox_event(
        session,
        "message.received",
        MESSAGE_RECEIVED_PATH,
        message=message_received_body(message),
    )


def _about(message: Message | None, chat: str, wa_message_id: str) -> dict[str, Any]:
    """The message acted on: ours when the gateway has it (`id`), else WhatsApp's id only."""
    return {
        "id": str(message.pk) if message is not None else None,
        "wa_message_id": wa_message_id,
        "chat": chat,
    }


def message_edited(
    session: Session,
    message: Message | None,
    *,
    chat: str,
    wa_message_id: str,
    by: dict[str, str],
    old_text: str,
    new_text: str,
) -> None:
    outbox_event(
        session,
        "message.edited",
        MESSAGE_ACTIONS_PATH,
        message=_about(message, chat, wa_message_id),
        by=by,
        old_text=old_text,
        new_text=new_text,
    )


def message_revoked(
    session: Session, message: Message | None, *, chat: str, wa_message_id: str, by: dict
) -> None:
    outbox_event(
        session,
        "message.revoked",
        MESSAGE_ACTIONS_PATH,
        message=_about(message, chat, wa_message_id),
        by=by,
    )


def message_reaction(
    session: Session,
    message: Message | None,
    *,
    chat: str,
    wa_message_id: str,
    by: dict[str, str],
    emoji: str,
) -> None:
    outbox_event(
        session,
        "message.reaction",
        MESSAGE_ACTIONS_PATH,
        message=_about(message, chat, wa_message_id),
        by=by,
        emoji=emoji,
    )


def poll_vote(
    session: Session,
    message: Message | None,
    *,
    chat: str,
    wa_message_id: str,
    by: dict[str, str],
    options: list[str],
    decrypted: bool,
    error: str = "",
) -> None:
    outbox_event(
        session,
        "poll.vote",
        MESSAGE_ACTIONS_PATH,
        message=_about(message, chat, wa_message_id),
        by=by,
        options=options,
        decrypted=decrypted,
        error=error,
    )
