"""The group webhooks: `group.joined`, `group.updated`, `group.participants`, each an event in
the session's sequence (`sessions_app.events.outbox_event`)."""

from __future__ import annotations

from typing import Any

from sessions_app.events import outbox_event
from sessions_app.models import Session

GROUPS_PATH = "/api/webhooks/groups"


def group_joined(session: Session, group: dict[str, Any], by: dict[str, str], reason: str) -> None:
    outbox_event(session, "group.joined", GROUPS_PATH, group=group, by=by, reason=reason)


def group_updated(
    session: Session, group: str, changes: dict[str, Any], by: dict[str, str]
) -> None:
    outbox_event(session, "group.updated", GROUPS_PATH, group=group, changes=changes, by=by)


def group_participants(
    session: Session, group: str, action: str, participants: list[dict[str, str]], by: dict
) -> None:
    outbox_event(
        session,
        "group.participants",
        GROUPS_PATH,
        group=group,
        action=action,
        participants=participants,
        by=by,
    )
