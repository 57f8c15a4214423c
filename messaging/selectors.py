"""Reading messages (the API)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Max, Q, QuerySet
from django.shortcuts import get_object_or_404

from groups.models import Group
from messaging.models import Message
from messaging.states import Direction, MessageStatus
from sessions_app.models import Session


def messages_list(*, session: Session, filters: dict[str, Any]) -> QuerySet[Message]:
    """A session's messages, by direction, status, chat and since when (all optional)."""
    messages = Message.objects.filter(session=session)
    if "direction" in filters:
        messages = messages.filter(direction=filters["direction"])
    if "status" in filters:
        messages = messages.filter(status=filters["status"])
    if "chat" in filters:
        messages = messages.filter(chat=filters["chat"])
    if "since" in filters:
        messages = messages.filter(created_at__gte=filters["since"])
    return messages


def message_get(*, message_id: Any, session_id: Any = None) -> Message:
    """The message (of that session, when given), or Http404 (a JSON 404 in the API)."""
    lookup = {"pk": message_id} | ({"session_id": session_id} if session_id else {})
    return get_object_or_404(Message, **lookup)


def chats_list(*, session: Session) -> QuerySet:
    """One row per chat of the session (a dict each): its JID, its last activity and how many
    inbound messages wait unread, most recent first. One aggregate query (an index on the
    session's chats serves it); `chats_details` adds what the page shows."""
    return (
        Message.objects.filter(session=session)
        .values("chat")
        .annotate(
            last_activity=Max("created_at"),
            unread=Count("id", filter=Q(direction=Direction.IN, status=MessageStatus.RECEIVED)),
        )
        .order_by("-last_activity")
    )


def chats_details(*, session: Session, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's rows with each chat's last message and a group's subject: two queries for
    the whole page (the last messages by their chat and time, the subjects from the groups
    cache), however many chats."""
    if not rows:
        return []
    when = Q()
    for row in rows:
        when |= Q(chat=row["chat"], created_at=row["last_activity"])
    last: dict[str, Message] = {}
    for message in Message.objects.filter(when, session=session).order_by("created_at", "id"):
        last[message.chat] = message  # the newest of those at the same instant wins
    subjects = dict(
        Group.objects.filter(session=session, jid__in=[r["chat"] for r in rows]).values_list(
            "jid", "subject"
        )
    )
    return [
        {**row, "subject": subjects.get(row["chat"]), "last_message": last.get(row["chat"])}
        for row in rows
    ]
