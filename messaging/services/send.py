"""Accepting an outbound message (the API): idempotently, only for a session that will send it,
with its media checked and stored before the row that points at it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from gateway.core import tracing
from gateway.core.errors import Conflict, Unprocessable
from gateway.core.wake import MESSAGES, wake
from messaging.models import Message
from messaging.services import media
from messaging.services.fetch import fetch
from messaging.states import Direction, MessageStatus
from sessions_app.models import Session
from sessions_app.states import DesiredState, SessionStatus


class SessionNotRunning(Conflict):
    """The session is stopped, logged out or failed: nothing would send the message."""

    code = "session_not_running"


class IdempotencyConflict(Unprocessable):
    """The Idempotency-Key was used before with another request body."""

    code = "idempotency_key_reused"
    message = "This Idempotency-Key was used with another request; use a new key."


@dataclass(frozen=True)
class Upload:
    """A file sent with the message (multipart): its bytes, declared type and name."""

    content: bytes
    content_type: str = ""
    name: str = ""


@dataclass(frozen=True)
class Accepted:
    message: Message
    created: bool  # False: the same Idempotency-Key and body returned the first message


def session_accepts_messages(session: Session) -> bool:
    """Running and linked: connected, reconnecting (its queue waits), or restarting a linked
    session."""
    S = SessionStatus
    if session.desired_state != DesiredState.RUNNING:
        return False
    return session.status in (S.CONNECTED, S.RECONNECTING) or (
        session.status == S.STARTING and bool(session.jid)
    )


def _existing(session: Session, key: str, fingerprint: str) -> Message:
    message = Message.objects.get(session=session, idempotency_key=key)
    if message.request_fingerprint != fingerprint:
        raise IdempotencyConflict()
    return message


def message_send(
    *,
    session: Session,
    to: str,
    type: str,
    fingerprint: str,
    text: str = "",
    caption: str = "",
    reply_to: str = "",
    payload: dict[str, Any] | None = None,
    upload: Upload | None = None,
    media_url: str = "",
    filename: str = "",
    idempotency_key: str | None = None,
) -> Accepted:
    """Queue an outbound message to `to` (a JID). Media come as an `upload` or a `media_url`
    (fetched only for a new message). The same Idempotency-Key with the same `fingerprint` (what
    identifies the request) returns the first message, also under concurrency (the unique index
    decides); with another one it raises IdempotencyConflict. SessionNotRunning when nothing would
    send it; MediaRefused/UrlRefused for media it cannot carry. A row never points at a file
    that is missing: the file is stored first."""
    mime_type = ""
    if upload is not None:  # checked before anything else, as the bytes are here already
        mime_type = media.inspect(type, upload.content, upload.content_type, upload.name)
    if (
        idempotency_key
        and Message.objects.filter(session=session, idempotency_key=idempotency_key).exists()
    ):
        return Accepted(_existing(session, idempotency_key, fingerprint), created=False)
    if not session_accepts_messages(session):
        raise SessionNotRunning(f"The session is {session.status}; start it first.")
    message_id = uuid.uuid4()
    media_fields: dict[str, Any] = {}
    if type in media.MEDIA_TYPES:
        if upload is not None:
            content, name = upload.content, filename or upload.name
        else:
            fetched = fetch(media_url, max_bytes=media.max_bytes(type))
            content, name = fetched.data, filename or fetched.filename
            mime_type = media.inspect(type, content, fetched.content_type, name)
        media_fields = media.store(
            session_id=session.pk,
            message_id=message_id,
            kind=type,
            content=content,
            mime_type=mime_type,
            filename=name,
        ).model_fields()
    try:
        with transaction.atomic():
            message = Message.objects.create(
                id=message_id,
                session=session,
                direction=Direction.OUT,
                status=MessageStatus.QUEUED,
                idempotency_key=idempotency_key or None,
                request_fingerprint=fingerprint,
                chat=to,
                type=type,
                text=text,
                caption=caption,
                reply_to=reply_to,
                payload=payload or {},
                trace_context=tracing.context(),
                **media_fields,
            )
            wake(MESSAGES, session.pk)
    except IntegrityError:
        if media_fields.get("media"):
            default_storage.delete(media_fields["media"])
        if not idempotency_key:
            raise
        return Accepted(_existing(session, idempotency_key, fingerprint), created=False)
    return Accepted(message, created=True)
