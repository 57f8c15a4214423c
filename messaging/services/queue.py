"""A session's send queue, as its owning worker works through it: the next message (marked
`sending` before the engine sees it), its outcome (sent, retried with backoff, failed), the
messages a previous owner left in `sending`, and receipts. Every function is fenced by the
lease epoch (`sessions_app.services.fenced_lock`: LeaseLost when another worker owns the
session now)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gateway.core.usage import usage_together
from messaging import events
from messaging.models import Message
from messaging.services.usage import count_outbound
from messaging.states import STATUS_FIELDS, Direction, MessageStatus
from sessions_app.events import events_together
from sessions_app.models import Session
from sessions_app.services import fenced_lock

M = MessageStatus


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
    trace_context: str = ""  # the API request's (the send's span joins its trace)


def wa_message_id_for(message_id: uuid.UUID) -> str:
    """A WhatsApp-style id (`3EB0…`, like WhatsApp Web's) derived from ours, for engines that
    take the caller's id: the same on every retry, so a retry cannot make a second message."""
    return "3EB0" + message_id.hex[:18].upper()


@dataclass(frozen=True)
class NextSend:
    """What a send queue holds next: a `job` to send now, or, when its oldest message waits for
    a retry, the seconds until that one is `due_in`; neither when the queue is empty."""

    job: SendJob | None = None
    due_in: float | None = None


def message_next(*, session_id: uuid.UUID, epoch: int, accepts_ids: bool) -> NextSend:
    """The session's next message to send, marked `sending` (with its WhatsApp id, where the
    engine takes ours) before the engine sees it. FIFO: a message waiting for a retry holds the
    ones behind it."""
    with transaction.atomic():
        return _take_next(fenced_lock(session_id, epoch), accepts_ids)


def _take_next(session: Session, accepts_ids: bool) -> NextSend:
    """The next message of the locked `session` (see message_next)."""
    message = (
        Message.objects.select_for_update()
        .filter(session_id=session.pk, direction=Direction.OUT, status__in=[M.QUEUED, M.SENDING])
        .order_by("created_at", "id")
        .first()
    )
    if message is None:
        return NextSend()
    now = timezone.now()
    if message.next_attempt_at and message.next_attempt_at > now:
        return NextSend(due_in=(message.next_attempt_at - now).total_seconds())
    if message.status == M.QUEUED:
        message.advance_to(M.SENDING, now)
        if accepts_ids:
            message.wa_message_id = wa_message_id_for(message.pk)
        events.message_status_changed(message, session)
    message.attempts += 1
    message.save(
        update_fields=["status", "sending_at", "wa_message_id", "attempts", "next_attempt_at"]
    )
    quoted = _quoted(message)
    job = SendJob(
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
        trace_context=message.trace_context,
    )
    return NextSend(job=job)


def sessions_with_work(*, worker_id: uuid.UUID) -> set[uuid.UUID]:
    """The sessions `worker_id` holds that have a message queued or an inbound media file still
    to store: what its senders would find if each polled (one query each, on the partial
    indexes of those rows, whatever the number of sessions)."""
    held = Message.objects.filter(session__worker_id=worker_id)
    queued = held.filter(status=M.QUEUED, direction=Direction.OUT)
    media = held.filter(media_pending=True)
    return {
        *queued.values_list("session_id", flat=True).distinct(),
        *media.values_list("session_id", flat=True).distinct(),
    }


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
    *,
    session_id: uuid.UUID,
    epoch: int,
    message_id: uuid.UUID,
    wa_message_id: str,
    at: float,
    secret: str = "",
    take_next: bool = False,
    accepts_ids: bool = False,
) -> NextSend:
    """WhatsApp took the message. `secret`: a poll's message secret, which its votes are
    encrypted with (kept with the poll, besides the engine's own store). With `take_next` (no
    pause is due before the next message), the next message is taken in the same transaction, as
    `message_next(accepts_ids=…)` would: one round of locks and a commit per message instead of
    two."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        with events_together(session), usage_together():
            message = Message.objects.select_for_update().get(pk=message_id)
            message.wa_message_id = wa_message_id or message.wa_message_id
            if secret and "poll" in message.payload:
                message.payload = {
                    **message.payload,
                    "poll": {**message.payload["poll"], "secret": secret},
                }
            message.next_attempt_at = None
            message.error_code = message.error_message = ""
            before = message.status
            if message.advance_to(M.SENT, datetime.fromtimestamp(at, tz=UTC)):
                events.message_status_changed(message, session)
                count_outbound(message, before)
            message.save(
                update_fields=[
                    *STATUS_FIELDS,
                    "wa_message_id",
                    "payload",
                    "next_attempt_at",
                    "error_code",
                    "error_message",
                ]
            )
            return _take_next(session, accepts_ids) if take_next else NextSend()


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
        session = fenced_lock(session_id, epoch)
        message = Message.objects.select_for_update().get(pk=message_id)
        if message.status != M.SENDING:
            return False
        message.error_code, message.error_message = code[:50], error[:2000]
        if retry and message.attempts < settings.SEND_MAX_ATTEMPTS:
            message.next_attempt_at = timezone.now() + _backoff(message.attempts)
            message.save(update_fields=["error_code", "error_message", "next_attempt_at"])
            return True
        message.advance_to(M.FAILED)
        message.next_attempt_at = None
        message.save()
        events.message_status_changed(message, session)
        count_outbound(message, M.SENDING)
        return False


def messages_recover(*, session_id: uuid.UUID, epoch: int, accepts_ids: bool) -> int:
    """When a worker takes a session over: messages another owner left in `sending`. Engines that
    take our ids resend them with the same id (WhatsApp drops the duplicate). For the others
    nobody knows whether they went out: they fail with `send_interrupted` (never a blind resend),
    and the backend decides."""
    if accepts_ids:
        return 0
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        stuck = list(
            Message.objects.select_for_update().filter(
                session_id=session_id, direction=Direction.OUT, status=M.SENDING
            )
        )
        for message in stuck:
            message.advance_to(M.FAILED)
            message.error_code = "send_interrupted"
            message.error_message = (
                "The worker stopped while sending; the message may or may not have been sent."
            )
            message.save()
            events.message_status_changed(message, session)
            count_outbound(message, M.SENDING)
    return len(stuck)


def receipts_apply(
    *, session_id: uuid.UUID, epoch: int, receipts: list[tuple[list[str], str, float]]
) -> int:
    """Delivered/read/played receipts that came one after the other, `(message ids, status,
    at)` each, applied in that order in one transaction: one lock of the session's row, one read
    of their messages, one write of the messages moved, of their events and of what they count.
    Each message moves forward only (a late `delivered` never overwrites `read`); returns how
    many steps were made."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        wanted = {wa_id for ids, _, _ in receipts for wa_id in ids}
        found: dict[str | None, list[Message]] = {}
        for message in (
            Message.objects.select_for_update()
            .filter(session_id=session_id, direction=Direction.OUT, wa_message_id__in=wanted)
            .order_by("created_at", "id")
        ):
            found.setdefault(message.wa_message_id, []).append(message)
        changed: dict[uuid.UUID, Message] = {}
        moved = 0
        with events_together(session), usage_together():
            for ids, status, at in receipts:
                when = datetime.fromtimestamp(at, tz=UTC)
                for message in (m for wa_id in dict.fromkeys(ids) for m in found.get(wa_id, [])):
                    before = message.status
                    if message.advance_to(status, when):
                        events.message_status_changed(message, session)
                        count_outbound(message, before)
                        changed[message.pk] = message
                        moved += 1
        if len(changed) == 1:
            next(iter(changed.values())).save(update_fields=STATUS_FIELDS)
        elif changed:
            Message.objects.bulk_update(changed.values(), STATUS_FIELDS)
    return moved
