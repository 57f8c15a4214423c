"""Reading messages (the API)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery
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
    """One row per chat of the session (a dict each): its JID, its last activity and last
    message, how many inbound messages wait unread, and a group's subject. One query, however
    many chats."""
    latest = Message.objects.filter(session=session, chat=OuterRef("chat")).order_by(
        "-created_at", "-id"
    )
    subject = Group.objects.filter(session=session, jid=OuterRef("chat")).values("subject")[:1]
    last = {
        f"last_{name}": Subquery(latest.values(name)[:1])
        for name in ("id", "type", "direction", "status", "text", "caption", "sender")
    }
    return (
        Message.objects.filter(session=session)
        .values("chat")
        .annotate(
            last_activity=Max("created_at"),
            unread=Count("id", filter=Q(direction=Direction.IN, status=MessageStatus.RECEIVED)),
            subject=Subquery(subject),
            **last,
        )
        .order_by("-last_activity")
    )
