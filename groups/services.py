"""Every write of the groups cache, and the group events.

Two writers, one shape: the web process stores what a call to the session's worker answered
(`groups_refresh`, `group_create`, `group_fetch`, `group_update`, `group_leave`: each asks the
worker, then `groups_store`s or forgets), and the owning worker stores what
WhatsApp tells about groups (`group_*_announce`, fenced by the lease like all its writes, each
with its webhook in the same transaction). Both take the engines' group dicts
(`workers.engines.base.Group` as a dict).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from groups import events
from groups.models import Group, GroupSync
from groups.serializers import GroupDetailSerializer, MemberSerializer
from sessions_app.models import Session
from sessions_app.services import fenced_lock
from sessions_app.services.calls import session_call


def when(unix: float | None) -> datetime | None:
    """A Unix time (as the engines give them) as a datetime; None for none."""
    return datetime.fromtimestamp(unix, tz=UTC) if unix else None


def _fields(group: dict[str, Any]) -> dict[str, Any]:
    return {
        "subject": group.get("subject", ""),
        "description": group.get("description", ""),
        "owner": group.get("owner", ""),
        "owner_phone": group.get("owner_phone", ""),
        "created_at": when(group.get("created_at")),
        "announce": bool(group.get("announce")),
        "locked": bool(group.get("locked")),
        "participants": [
            {"jid": m["jid"], "phone_number": m.get("phone_number", ""), "role": m["role"]}
            for m in group.get("participants", ())
        ],
    }


def _upsert(session_id: uuid.UUID, group: dict[str, Any]) -> Group:
    row, _ = Group.objects.update_or_create(
        session_id=session_id, jid=group["jid"], defaults=_fields(group)
    )
    return row


def groups_store(
    *, session_id: uuid.UUID, groups: list[dict[str, Any]], whole: bool = False
) -> list[Group]:
    """Store `groups` as WhatsApp answered them. `whole`: the session's complete list (a
    refresh): groups missing from it are forgotten and the list counts as synced now."""
    with transaction.atomic():
        rows = [_upsert(session_id, group) for group in groups]
        if whole:
            Group.objects.filter(session_id=session_id).exclude(
                jid__in=[g["jid"] for g in groups]
            ).delete()
            GroupSync.objects.update_or_create(
                session_id=session_id, defaults={"synced_at": timezone.now()}
            )
    return rows


def group_forget(*, session_id: uuid.UUID, jid: str) -> None:
    Group.objects.filter(session_id=session_id, jid=jid).delete()


# --- through the session's worker (the web process) ----------------------------------------------
# Each asks the worker running the session (`session_call`: 409 `session_not_running`, 503
# `session_unavailable`, WhatsApp's refusals with their codes), then stores what it answered.


@dataclass(frozen=True)
class GroupCreated:
    group: Group
    participants: list[dict[str, Any]]  # each invited participant's outcome, as the engine said


def groups_refresh(*, session: Session) -> None:
    """Every group the number is in, asked of WhatsApp: the session's whole list, synced now."""
    groups_store(session_id=session.pk, groups=session_call(session, "groups"), whole=True)


def group_create(*, session: Session, subject: str, participants: list[str]) -> GroupCreated:
    """A new group with the number as its super admin; `participants` are user JIDs."""
    created = session_call(session, "create_group", subject=subject, participants=participants)
    [row] = groups_store(session_id=session.pk, groups=[created["group"]])
    return GroupCreated(group=row, participants=created["participants"])


def group_fetch(*, session: Session, jid: str) -> Group:
    """The group `jid` as WhatsApp knows it now, cached."""
    [row] = groups_store(
        session_id=session.pk, groups=[session_call(session, "group_info", jid=jid)]
    )
    return row


def group_update(
    *,
    session: Session,
    jid: str,
    subject: str | None = None,
    description: str | None = None,
    announce: bool | None = None,
    locked: bool | None = None,
) -> Group:
    """Change what is given (None: leave it), and cache the group as it is after."""
    changes = {
        name: value
        for name, value in (
            ("subject", subject),
            ("description", description),
            ("announce", announce),
            ("locked", locked),
        )
        if value is not None
    }
    group = session_call(session, "update_group", jid=jid, **changes)
    [row] = groups_store(session_id=session.pk, groups=[group])
    return row


def group_leave(*, session: Session, jid: str) -> None:
    """Leave the group `jid` and forget it (the group goes on for the others)."""
    session_call(session, "leave_group", jid=jid)
    group_forget(session_id=session.pk, jid=jid)


def groups_forget_all(*, session_id: uuid.UUID, epoch: int) -> None:
    """The device was unlinked: what it knew of groups is no one's now (a new link may be
    another number). Fenced like every write of the owning worker."""
    with transaction.atomic():
        fenced_lock(session_id, epoch)
        Group.objects.filter(session_id=session_id).delete()
        GroupSync.objects.filter(session_id=session_id).delete()


def _by(jid: str, phone: str) -> dict[str, str]:
    return {"jid": jid, "phone_number": phone}


def _is_own(session: Session, member: dict[str, Any]) -> bool:
    phone = member.get("phone_number", "")
    return member["jid"] == session.jid or bool(phone and phone == session.phone_number)


def group_joined_announce(
    *,
    session_id: uuid.UUID,
    epoch: int,
    group: dict[str, Any],
    by: str = "",
    by_phone: str = "",
    reason: str = "",
) -> None:
    """The session is in a new group (it created it, used a link, or was added)."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        row = _upsert(session_id, group)
        events.group_joined(session, GroupDetailSerializer(row).data, _by(by, by_phone), reason)


def group_updated_announce(
    *,
    session_id: uuid.UUID,
    epoch: int,
    group: str,
    changes: dict[str, Any],
    by: str = "",
    by_phone: str = "",
) -> None:
    """`changes`: the fields that changed (subject, description, announce, locked; picture:
    true for a new one, false when removed, not cached)."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        cached = {name: value for name, value in changes.items() if name != "picture"}
        Group.objects.filter(session_id=session_id, jid=group).update(
            **cached, updated_at=timezone.now()
        )
        events.group_updated(session, group, changes, _by(by, by_phone))


ROLE_AFTER = {"promote": "admin", "demote": "member"}


def group_participants_announce(
    *,
    session_id: uuid.UUID,
    epoch: int,
    group: str,
    action: str,
    participants: list[dict[str, Any]],
    by: str = "",
    by_phone: str = "",
) -> None:
    """`action`: add, remove (or left), promote, demote. The session's own removal forgets the
    group (WhatsApp tells it nothing more about it)."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        row = Group.objects.select_for_update().filter(session_id=session_id, jid=group).first()
        if row is not None:
            changed = {m["jid"] for m in participants} | {
                m["phone_number"] for m in participants if m.get("phone_number")
            }

            def named(member: dict[str, Any]) -> bool:
                return member["jid"] in changed or member.get("phone_number") in changed

            kept = [m for m in row.participants if not named(m)]
            if action == "add":
                kept += [{**m, "role": "member"} for m in participants]
            elif action in ROLE_AFTER:
                kept = [
                    {**m, "role": ROLE_AFTER[action]} if named(m) else m for m in row.participants
                ]
            row.participants = kept
            if action == "remove" and any(_is_own(session, m) for m in participants):
                row.delete()
            else:
                row.save(update_fields=["participants", "updated_at"])
        members = [
            dict(MemberSerializer({**m, "role": m.get("role", "member")}).data)
            for m in participants
        ]
        events.group_participants(session, group, action, members, _by(by, by_phone))
