"""Reading sessions (the API, the link page, the WebSockets) and their usage."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from gateway.core import usage
from gateway.core.auth import ApiClient
from sessions_app.models import Session


def sessions_visible(sessions: QuerySet[Session], client: ApiClient | None) -> QuerySet[Session]:
    """Only the sessions `client` may see (gateway/core/scopes.py): its listed ones and those its
    key created. None (a staff member) sees every session."""
    if client is None or client.sessions is None:
        return sessions
    allowed = Q(pk__in=sorted(client.sessions))
    if client.key_id is not None:
        allowed |= Q(created_by_key_id=client.key_id)
    return sessions.filter(allowed)


def session_list(*, filters: dict[str, Any], client: ApiClient | None = None) -> QuerySet[Session]:
    sessions = sessions_visible(Session.objects.all(), client)
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


def usage_sessions(
    *, session_id: Any = None, client: ApiClient | None = None
) -> QuerySet[Session] | None:
    """The sessions whose usage is asked for: the one named (Http404 when there is none, or when
    `client` may not see it), or every session `client` may see (None: all of them)."""
    visible = sessions_visible(Session.objects.all(), client)
    if session_id is None:
        return None if client is None or client.sessions is None else visible
    session = session_get(session_id=session_id)
    if client is not None and not client.may_see(session.pk):
        raise Http404()
    return Session.objects.filter(pk=session.pk)


def usage_for(
    *, sessions: QuerySet[Session] | None, start: datetime, end: datetime, granularity: str
) -> list[dict[str, Any]]:
    """Usage per session and hour or day from `start` to `end` (period boundaries), from the
    counters; `sessions` None: every session."""
    return usage.usage_periods(start=start, end=end, granularity=granularity, sessions=sessions)
