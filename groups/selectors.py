"""Reading the groups cache (the API, the admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from groups.models import Group, GroupSync


def groups_list(*, session_id: Any) -> QuerySet[Group]:
    return Group.objects.filter(session_id=session_id)


def group_cached(*, session_id: Any, jid: str) -> Group | None:
    return Group.objects.filter(session_id=session_id, jid=jid).first()


def groups_synced_at(*, session_id: Any) -> datetime | None:
    return (
        GroupSync.objects.filter(session_id=session_id).values_list("synced_at", flat=True).first()
    )
