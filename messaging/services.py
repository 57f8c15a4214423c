"""Messages: accepting them (idempotently), the send queue of a session's owner, statuses from
receipts, and inbound messages.

Every forward status change writes its `message.status` outbox row in the same transaction, and
every inbound message exactly one `message.received` row (once its media is stored). The worker's
functions are fenced by the lease epoch like the session's (`LeaseLost`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.files.storage import default_storage
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from messaging import media
from messaging.models import STATUS_TIMESTAMP_FIELDS, Direction, Message, MessageStatus
from sessions_app.events import outbox_event
from sessions_app.models import DesiredState, Session, SessionStatus
from sessions_app.services import LeaseLost

logger = logging.getLogger(__name__)
M = MessageStatus
MESSAGE_STATUS_PATH = "/api/webhooks/message-status"
MESSAGE_RECEIVED_PATH = "/api/webhooks/message-received"
MEDIA_SALT = "messaging.media"


class SessionNotRunning(Exception):
    """The session is stopped, logged out or failed: nothing would send the message."""


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with another request body."""


# --- What webhooks and the API say about a message ----------------------------------------------


def media_url(message: Message) -> str | None:
    """A temporary URL of the message's media (`MEDIA_URL_SECONDS`): presigned on S3, signed and
    served by the gateway otherwise; either way it carries the headers the file is served with
    (`media.response_headers`), so no stored file can render as something that runs script."""
    if not message.media:
        return None
    headers = media.response_headers(message.media_served_as, message.media_filename)
    if settings.S3_BUCKET:
        return default_storage.url(
            message.media.name,
            expire=settings.MEDIA_URL_SECONDS,
            parameters={
                "ResponseContentType": headers["Content-Type"],
                "ResponseContentDisposition": headers["Content-Disposition"],
            },
        )
    token = signing.TimestampSigner(salt=MEDIA_SALT).sign_object(
        [message.media.name, message.media_served_as, message.media_filename]
    )
    return f"{settings.PUBLIC_URL}/media/{token}"


def media_from_token(token: str) -> tuple[str, dict[str, str]] | None:
    """The storage name and response headers of a `/media/<token>` URL."""
    try:
        signed = signing.TimestampSigner(salt=MEDIA_SALT).unsign_object(
            token, max_age=settings.MEDIA_URL_SECONDS
        )
    except signing.BadSignature:
        return None
    if not (
        isinstance(signed, list) and len(signed) == 3 and all(isinstance(v, str) for v in signed)
    ):
        return None
    name, served_as, filename = signed
    return name, media.response_headers(served_as, filename)


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


def _status_changed(message: Message, session: Session) -> None:
    outbox_event(
        session, "message.status", MESSAGE_STATUS_PATH, message=message_status_body(message)
    )


def _advance(message: Message, status: str, at: datetime | None = None) -> bool:
    """Move `message` forward to `status` (stamping its time); False when that is not forward."""
    if not message.can_advance_to(status):
        return False
    message.status = status
    stamp = STATUS_TIMESTAMP_FIELDS.get(status)
    if stamp:
        setattr(message, stamp, at or timezone.now())
    return True


# --- Accepting a message (web) ------------------------------------------------------------------


def session_accepts_messages(session: Session) -> bool:
    """Running and linked: connected, reconnecting (its queue waits), or restarting a linked
    session."""
    S = SessionStatus
    if session.desired_state != DesiredState.RUNNING:
        return False
    return session.status in (S.CONNECTED, S.RECONNECTING) or (
        session.status == S.STARTING and bool(session.jid)
    )


def notify_senders(session_id: object) -> None:
    """Wake the session's owner (LISTEN gateway_messages) when the transaction commits."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify('gateway_messages', %s)", [str(session_id)])


def _existing(session: Session, key: str, fingerprint: str) -> Message:
    message = Message.objects.get(session=session, idempotency_key=key)
    if message.request_fingerprint != fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was used with another request; use a new key."
        )
    return message


def message_create(
    *,
    session: Session,
    fields: dict[str, Any],
    fingerprint: str,
    idempotency_key: str | None = None,
    store_media=None,
) -> tuple[Message, bool]:
    """Queue an outbound message; `(message, created)`. The same Idempotency-Key with the same
    body returns the first message (also under concurrency: the unique index decides); with
    another body it raises IdempotencyConflict. `store_media(message_id)` stores the file first
    and returns the model fields for it, so a row never points at a missing file."""
    if (
        idempotency_key
        and Message.objects.filter(session=session, idempotency_key=idempotency_key).exists()
    ):
        return _existing(session, idempotency_key, fingerprint), False
    if not session_accepts_messages(session):
        raise SessionNotRunning(f"The session is {session.status}; start it first.")
    message_id = uuid.uuid4()
    media_fields = store_media(message_id) if store_media else {}
    try:
        with transaction.atomic():
            message = Message.objects.create(
                id=message_id,
                session=session,
                direction=Direction.OUT,
                status=M.QUEUED,
                idempotency_key=idempotency_key or None,
                request_fingerprint=fingerprint,
                **fields,
                **media_fields,
            )
            notify_senders(session.pk)
    except IntegrityError:
        if media_fields.get("media"):
            default_storage.delete(media_fields["media"])
        if not idempotency_key:
            raise
        return _existing(session, idempotency_key, fingerprint), False
    return message, True


# --- The send queue (the session's owner) -------------------------------------------------------


def _fenced_session(session_id: uuid.UUID, epoch: int) -> Session:
    """The session row, locked, if `epoch` still holds its lease."""
    session = (
        Session.objects.select_for_update(of=("self",))
        .filter(pk=session_id, lease_epoch=epoch)
        .first()
    )
    if session is None:
        raise LeaseLost(str(session_id))
    return session


@dataclass(frozen=True)
class SendJob:
    message_id: uuid.UUID
    wa_message_id: str
    chat: str
    type: str
    text: str = ""
    caption: str = ""
    reply_to: str = ""
    # What WhatsApp needs to show a quote or place a reaction: the quoted message's sender and
    # whether it is ours (known when the gateway stored that message), and its text.
    reply_to_sender: str = ""
    reply_to_from_me: bool = False
    reply_to_text: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    media_name: str = ""
    media_mime_type: str = ""
    media_filename: str = ""
    attempt: int = 1


def wa_message_id_for(message_id: uuid.UUID) -> str:
    """A WhatsApp-style id (`3EB0…`, like WhatsApp Web's) derived from ours, for engines that
    take the caller's id: the same on every retry, so a retry cannot make a second message."""
    return "3EB0" + message_id.hex[:18].upper()


def message_next(*, session_id: uuid.UUID, epoch: int, accepts_ids: bool) -> SendJob | float | None:
    """The session's next message to send, marked `sending` (with its WhatsApp id, where the
    engine takes ours) before the engine sees it. FIFO: a message waiting for a retry holds the
    ones behind it, and the seconds until it is due are returned instead. None: nothing to send."""
    with transaction.atomic():
        session = _fenced_session(session_id, epoch)
        message = (
            Message.objects.select_for_update()
            .filter(
                session_id=session_id, direction=Direction.OUT, status__in=[M.QUEUED, M.SENDING]
            )
            .order_by("created_at", "id")
            .first()
        )
        if message is None:
            return None
        now = timezone.now()
        if message.next_attempt_at and message.next_attempt_at > now:
            return (message.next_attempt_at - now).total_seconds()
        if message.status == M.QUEUED:
            _advance(message, M.SENDING, now)
            if accepts_ids:
                message.wa_message_id = wa_message_id_for(message.pk)
            _status_changed(message, session)
        message.attempts += 1
        message.save(
            update_fields=["status", "sending_at", "wa_message_id", "attempts", "next_attempt_at"]
        )
        quoted = _quoted(message)
        return SendJob(
            message_id=message.pk,
            wa_message_id=message.wa_message_id or "",
            chat=message.chat,
            type=message.type,
            text=message.text,
            caption=message.caption,
            reply_to=message.reply_to,
            reply_to_sender=quoted.sender if quoted else "",
            reply_to_from_me=bool(quoted and quoted.direction == Direction.OUT),
            reply_to_text=(quoted.text or quoted.caption)[:1024] if quoted else "",
            payload=message.payload,
            media_name=message.media.name if message.media else "",
            media_mime_type=message.media_mime_type,
            media_filename=message.media_filename,
            attempt=message.attempts,
        )


def _quoted(message: Message) -> Message | None:
    """The message `message` replies or reacts to, when this session stored it (same chat)."""
    if not message.reply_to:
        return None
    return (
        Message.objects.filter(
            session_id=message.session_id, chat=message.chat, wa_message_id=message.reply_to
        )
        .only("sender", "direction", "text", "caption")
        .first()
    )


def message_sent(
    *, session_id: uuid.UUID, epoch: int, message_id: uuid.UUID, wa_message_id: str, at: float
) -> None:
    with transaction.atomic():
        session = _fenced_session(session_id, epoch)
        message = Message.objects.select_for_update().get(pk=message_id)
        message.wa_message_id = wa_message_id or message.wa_message_id
        message.next_attempt_at = None
        message.error_code = message.error_message = ""
        if _advance(message, M.SENT, datetime.fromtimestamp(at, tz=UTC)):
            _status_changed(message, session)
        message.save()


def _backoff(attempt: int) -> timedelta:
    return timedelta(seconds=min(60, 2**attempt))


def message_send_error(
    *,
    session_id: uuid.UUID,
    epoch: int,
    message_id: uuid.UUID,
    code: str,
    error: str,
    retry: bool,
) -> bool:
    """After a failed engine call: retried later with backoff (True), or `failed` with the code."""
    with transaction.atomic():
        session = _fenced_session(session_id, epoch)
        message = Message.objects.select_for_update().get(pk=message_id)
        if message.status != M.SENDING:
            return False
        message.error_code, message.error_message = code[:50], error[:2000]
        if retry and message.attempts < settings.SEND_MAX_ATTEMPTS:
            message.next_attempt_at = timezone.now() + _backoff(message.attempts)
            message.save(update_fields=["error_code", "error_message", "next_attempt_at"])
            return True
        _advance(message, M.FAILED)
        message.next_attempt_at = None
        message.save()
        _status_changed(message, session)
        return False


def messages_recover(*, session_id: uuid.UUID, epoch: int, accepts_ids: bool) -> int:
    """When a worker takes a session over: messages another owner left in `sending`. Engines that
    take our ids resend them with the same id (WhatsApp drops the duplicate). For the others
    nobody knows whether they went out: they fail with `send_interrupted` (never a blind resend),
    and the backend decides."""
    if accepts_ids:
        return 0
    with transaction.atomic():
        session = _fenced_session(session_id, epoch)
        stuck = list(
            Message.objects.select_for_update().filter(
                session_id=session_id, direction=Direction.OUT, status=M.SENDING
            )
        )
        for message in stuck:
            _advance(message, M.FAILED)
            message.error_code = "send_interrupted"
            message.error_message = (
                "The worker stopped while sending; the message may or may not have been sent."
            )
            message.save()
            _status_changed(message, session)
    return len(stuck)


def receipts_apply(
    *, session_id: uuid.UUID, epoch: int, message_ids: list[str], status: str, at: float
) -> int:
    """Delivered/read/played receipts: each message moves forward only (a late `delivered` never
    overwrites `read`); returns how many moved."""
    moved = 0
    when = datetime.fromtimestamp(at, tz=UTC)
    with transaction.atomic():
        session = _fenced_session(session_id, epoch)
        for message in Message.objects.select_for_update().filter(
            session_id=session_id, direction=Direction.OUT, wa_message_id__in=message_ids
        ):
            if _advance(message, status, when):
                message.save()
                _status_changed(message, session)
                moved += 1
    return moved


# --- Inbound ------------------------------------------------------------------------------------


def _received(message: Message, session: Session) -> None:
    outbox_event(
        session,
        "message.received",
        MESSAGE_RECEIVED_PATH,
        message=message_received_body(message),
    )


def inbound_store(
    *, session_id: uuid.UUID, epoch: int, fields: dict[str, Any], media: bool
) -> Message | None:
    """Store an inbound message once (deduplicated by its WhatsApp id); its `message.received`
    row is written now, or when its media is stored. None for a duplicate."""
    with transaction.atomic():
        session = _fenced_session(session_id, epoch)
        try:
            with transaction.atomic():
                message = Message.objects.create(session=session, media_pending=media, **fields)
        except IntegrityError:
            return None
        if not media and message.direction == Direction.IN:
            _received(message, session)
        return message


def inbound_media_stored(
    *, session_id: uuid.UUID, epoch: int, message_id: uuid.UUID, media_fields: dict[str, Any]
) -> bool:
    with transaction.atomic():
        session = _fenced_session(session_id, epoch)
        message = Message.objects.select_for_update().get(pk=message_id)
        if not message.media_pending:
            return False
        for name, value in media_fields.items():
            setattr(message, name, value)
        message.media_pending = False
        message.payload = {k: v for k, v in message.payload.items() if k != "media_ref"}
        message.save()
        if message.direction == Direction.IN:
            _received(message, session)
        return True


def media_pending(*, session_id: uuid.UUID) -> list[Message]:
    return list(
        Message.objects.filter(session_id=session_id, media_pending=True).order_by("created_at")[
            :20
        ]
    )


def message_mark_read(*, message: Message) -> None:
    """After the owner told WhatsApp: the inbound message is `read`."""
    with transaction.atomic():
        locked = Message.objects.select_for_update().get(pk=message.pk)
        if _advance(locked, M.READ):
            locked.save(update_fields=["status", "read_at"])
        message.status, message.read_at = locked.status, locked.read_at
