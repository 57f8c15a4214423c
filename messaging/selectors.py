"""Reading messages (the API)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from messaging.models import Message
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
