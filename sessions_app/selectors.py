"""Reading sessions (the API, the link page, the WebSockets)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from sessions_app.models import Session


def session_list(*, filters: dict[str, Any]) -> QuerySet[Session]:
    sessions = Session.objects.all()
    if filters.get("status"):
        sessions = sessions.filter(status__in=filters["status"])
    if filters.get("worker"):
        sessions = sessions.filter(worker_id=filters["worker"])
    if filters.get("external_id"):
        sessions = sessions.filter(external_id=filters["external_id"])
    return sessions


def session_find(*, session_id: Any) -> Session | None:
    return Session.objects.filter(pk=session_id).first()


def session_get(*, session_id: Any) -> Session:
    """The session, or Http404 (shaped as a JSON 404 by the API)."""
    return get_object_or_404(Session, pk=session_id)
