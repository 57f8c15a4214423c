"""What happens to messages after they were sent: edits, deletions for everyone and reactions.

Ours go through the API (`message_edit`, `message_revoke`): a message still in the queue is
changed (or cancelled) here, one WhatsApp has is changed through the session's worker. The other
side's (and our phone's) come from the owning worker (`inbound_edited`, `inbound_revoked`,
`reaction_record`), fenced like all its writes. Each change is a webhook (`message.edited`,
`message.revoked`, `message.reaction`) in the transaction that made it; an action on a message
the gateway never had is announced all the same, with WhatsApp's id only.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from gateway.core.errors import Conflict
from messaging import events
from messaging.models import Message
from messaging.states import Direction, MessageStatus, MessageType
from sessions_app.models import Session
from sessions_app.services import calls, fenced_lock

M = MessageStatus
# WhatsApp's limits: an edit within 15 minutes of sending, a deletion for everyone within about
# two and a half days.
EDIT_WINDOW = timedelta(minutes=15)
REVOKE_WINDOW = timedelta(hours=60)


class NotEditable(Conflict):
    code = "not_editable"
    message = (
        "Only our own texts and the captions of our images, videos and documents can be edited."
    )


EDITABLE = (MessageType.TEXT, MessageType.IMAGE, MessageType.VIDEO, MessageType.DOCUMENT)


class EditWindowPassed(Conflict):
    code = "edit_window_passed"
    message = "WhatsApp lets a message be edited for 15 minutes after it was sent."


class NotRevocable(Conflict):
    code = "not_revocable"


class RevokeWindowPassed(Conflict):
    code = "revoke_window_passed"
    message = "WhatsApp lets a message be deleted for everyone for 60 hours after it was sent."


class MessageSending(Conflict):
    code = "message_sending"
    message = "The message is being sent right now; try again in a moment."


def _by(jid: str, phone: str) -> dict[str, str]:
    return {"jid": jid, "phone_number": phone}


def _own(session: Session) -> dict[str, str]:
    return _by(session.jid, session.phone_number)


def _locked(message: Message) -> Message:
    return Message.objects.select_for_update().get(pk=message.pk)


def _edit(message: Message, text: str, by: str) -> str:
    """Set the new text, or a media message's caption (unsaved), keeping the old one in the
    history; the old one."""
    old = message.text if message.type == MessageType.TEXT else message.caption
    message.payload = {
        **message.payload,
        "edits": [*message.payload.get("edits", []), {"text": old, "at": _now(), "by": by}],
    }
    if message.type == MessageType.TEXT:
        message.text = text
    else:
        message.caption = text
    return old


def _now() -> str:
    return timezone.now().isoformat()


def message_edit(*, message: Message, text: str) -> Message:
    """Edit one of our texts (or a caption): in the queue, it changes before it goes; sent, the
    edit goes to WhatsApp (within its 15 minutes) and a `message.edited` webhook follows."""
    if message.direction != Direction.OUT or message.type not in EDITABLE:
        raise NotEditable()
    with transaction.atomic():
        locked = _locked(message)
        if locked.status == M.QUEUED:
            _edit(locked, text, locked.sender)
            locked.save(update_fields=["text", "caption", "payload"])
            return locked
    if locked.status in (M.FAILED, M.REVOKED):
        raise NotEditable(f"The message is {locked.status}.")
    if locked.status == M.SENDING or not locked.wa_message_id:
        raise MessageSending()
    if timezone.now() - (locked.sent_at or locked.created_at) > EDIT_WINDOW:
        raise EditWindowPassed()
    session = locked.session
    calls.session_call(
        session,
        "edit_message",
        chat=locked.chat,
        wa_message_id=locked.wa_message_id,
        text=text,
        kind=locked.type,
    )
    with transaction.atomic():
        session = Session.objects.select_for_update().get(pk=session.pk)
        locked = _locked(message)
        old = _edit(locked, text, session.jid)
        locked.save(update_fields=["text", "caption", "payload"])
        events.message_edited(
            session,
            locked,
            chat=locked.chat,
            wa_message_id=locked.wa_message_id or "",
            by=_own(session),
            old_text=old,
            new_text=text,
        )
    return locked


def _revoke(message: Message, *, erase: bool) -> None:
    """Mark the message revoked (unsaved); with `erase`, what it said goes, its file too."""
    message.advance_to(M.REVOKED)
    if erase:
        message.text = message.caption = message.media_filename = ""
        message.payload = {"erased": True}
        if message.media:
            name, storage = message.media.name, message.media.storage
            transaction.on_commit(lambda: storage.delete(name))
            message.media = ""


def message_revoke(*, message: Message) -> Message:
    """Delete a message for everyone: one still queued is cancelled (it never goes); one
    WhatsApp has is revoked through the session's worker (ours, or as a group admin anyone's in
    the group) within WhatsApp's 60 hours; a `message.revoked` webhook follows."""
    with transaction.atomic():
        locked = _locked(message)
        if locked.status == M.QUEUED:  # cancelled: it never goes
            session = Session.objects.select_for_update().get(pk=locked.session_id)
            _revoke(locked, erase=False)
            locked.save(update_fields=["status", "revoked_at"])
            events.message_revoked(
                session, locked, chat=locked.chat, wa_message_id="", by=_own(session)
            )
            return locked
    if locked.status in (M.FAILED, M.REVOKED):
        raise NotRevocable(f"The message is {locked.status}.")
    if locked.status == M.SENDING or not locked.wa_message_id:
        raise MessageSending()
    sent = locked.sent_at or locked.received_at or locked.created_at
    if timezone.now() - sent > REVOKE_WINDOW:
        raise RevokeWindowPassed()
    session = locked.session
    theirs = locked.direction == Direction.IN
    calls.session_call(
        session,
        "revoke_message",
        chat=locked.chat,
        wa_message_id=locked.wa_message_id,
        sender=locked.sender if theirs else "",
    )
    with transaction.atomic():
        session = Session.objects.select_for_update().get(pk=session.pk)
        locked = _locked(message)
        _revoke(locked, erase=False)
        locked.save(update_fields=["status", "revoked_at"])
        events.message_revoked(
            session,
            locked,
            chat=locked.chat,
            wa_message_id=locked.wa_message_id or "",
            by=_own(session),
        )
    return locked


def _target(session_id: uuid.UUID, wa_message_id: str) -> Message | None:
    return (
        Message.objects.select_for_update()
        .filter(session_id=session_id, wa_message_id=wa_message_id)
        .first()
    )


def inbound_edited(
    *,
    session_id: uuid.UUID,
    epoch: int,
    chat: str,
    wa_message_id: str,
    text: str,
    sender: str,
    sender_phone: str = "",
    at: datetime | None = None,
) -> bool:
    """Its sender edited a message: the stored one says the new text (the old kept in its
    `edits`). False for an edit seen before (the text is that already)."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        message = _target(session_id, wa_message_id)
        old = ""
        if message is not None:
            current = message.text if message.type == MessageType.TEXT else message.caption
            if current == text or message.status == M.REVOKED:
                return False
            old = _edit(message, text, sender)
            message.save(update_fields=["text", "caption", "payload"])
        events.message_edited(
            session,
            message,
            chat=chat,
            wa_message_id=wa_message_id,
            by=_by(sender, sender_phone),
            old_text=old,
            new_text=text,
        )
    return True


def inbound_revoked(
    *,
    session_id: uuid.UUID,
    epoch: int,
    chat: str,
    wa_message_id: str,
    sender: str,
    sender_phone: str = "",
    at: datetime | None = None,
) -> bool:
    """A message was deleted for everyone: the stored one is `revoked`, its content kept or
    erased as `REVOKED_CONTENT` says. False when it was revoked already."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        message = _target(session_id, wa_message_id)
        if message is not None:
            if message.status == M.REVOKED:
                return False
            _revoke(message, erase=settings.REVOKED_CONTENT == "erase")
            message.save()
        events.message_revoked(
            session,
            message,
            chat=chat,
            wa_message_id=wa_message_id,
            by=_by(sender, sender_phone),
        )
    return True


def reaction_record(
    *,
    session_id: uuid.UUID,
    epoch: int,
    chat: str,
    reply_to: str,
    emoji: str,
    sender: str,
    sender_phone: str = "",
    wa_message_id: str = "",
) -> bool:
    """Someone reacted to a message (`emoji` "" takes a reaction back): recorded on the message
    reacted to, by who reacted (one reaction each, as on WhatsApp). False for a reaction seen
    before (its own WhatsApp id)."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        message = _target(session_id, reply_to)
        if message is not None:
            reactions: dict[str, Any] = dict(message.payload.get("reactions", {}))
            if wa_message_id and reactions.get(sender, {}).get("wa_message_id") == wa_message_id:
                return False
            if emoji:
                reactions[sender] = {
                    "emoji": emoji,
                    "phone_number": sender_phone,
                    "at": _now(),
                    "wa_message_id": wa_message_id,
                }
            else:
                reactions.pop(sender, None)
            message.payload = {**message.payload, "reactions": reactions}
            message.save(update_fields=["payload"])
        events.message_reaction(
            session,
            message,
            chat=chat,
            wa_message_id=reply_to,
            by=_by(sender, sender_phone),
            emoji=emoji,
        )
    return True


def poll_vote_record(
    *,
    session_id: uuid.UUID,
    epoch: int,
    chat: str,
    poll_id: str,
    voter: str,
    selected: list[str],
    voter_phone: str = "",
    error: str = "",
) -> None:
    """Someone voted in a poll: `selected`, the chosen options' SHA-256 hashes (hex), replace
    their earlier vote (none withdraws it). A vote that could not be decrypted, or names options
    the poll does not have, is recorded as such and announced with `decrypted: false`."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        message = _target(session_id, poll_id)
        poll = message.payload.get("poll") if message is not None else None
        names = {hashlib.sha256(o.encode()).hexdigest(): o for o in (poll or {}).get("options", [])}
        options = [names[h] for h in selected if h in names]
        if not error and poll is None:
            error = "the poll is not known to the gateway"
        elif not error and len(options) != len(selected):
            error = "the vote names options the poll does not have"
        if message is not None and poll is not None:
            payload = dict(message.payload)
            if error:
                failed = {"by": voter, "phone_number": voter_phone, "error": error, "at": _now()}
                payload["undecryptable_votes"] = [*payload.get("undecryptable_votes", []), failed]
            else:
                votes = dict(payload.get("votes", {}))
                votes[voter] = {"options": options, "phone_number": voter_phone, "at": _now()}
                payload["votes"] = votes
            message.payload = payload
            message.save(update_fields=["payload"])
        events.poll_vote(
            session,
            message,
            chat=chat,
            wa_message_id=poll_id,
            by=_by(voter, voter_phone),
            options=[] if error else options,
            decrypted=not error,
            error=error,
        )
