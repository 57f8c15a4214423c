"""The sandbox's groups: the simulated servers' records of them (`GroupBook`, one JSON file
each under the world's directory) and WhatsApp's rules for changing them, which the sandbox engine
applies (roles, per-participant answers, invite links, the history of changes)."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

from gateway.core.jids import jid_to_phone, jid_user, phone_to_jid
from workers.engines.base import (
    EngineError,
    Event,
    Group,
    GroupMember,
    GroupRole,
    GroupUpdated,
    ParticipantResult,
    ParticipantStatus,
)

NOT_ON_WHATSAPP_SUFFIX = "0000"

GROUP_JID_PATTERN = re.compile(r"[0-9]+(-[0-9]+)?@g\.us")


class GroupBook:
    """The groups while `SandboxWorld.groups_locked` holds their lock: one JSON file each.

    A record: `jid`, `subject`, `description`, `owner` (the creator's JID), `created_at` (Unix
    seconds), `announce`, `locked`, `participants` ({JID: member | admin | superadmin}, in the
    order they came), `invite` (the current invite code), `revoked_invites`, `picture` (its id),
    and `history`: every change as {at, by, what, value}.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, jid: str) -> Path:
        if not GROUP_JID_PATTERN.fullmatch(jid):
            raise ValueError(f"not a group JID: {jid!r}")
        return self.directory / f"{jid_user(jid)}.json"

    def get(self, jid: str) -> dict | None:
        try:
            path = self._path(jid)
        except ValueError:
            return None
        return json.loads(path.read_text()) if path.exists() else None

    def put(self, record: dict) -> None:
        self._path(record["jid"]).write_text(json.dumps(record))

    def all(self) -> list[dict]:
        records = [json.loads(path.read_text()) for path in self.directory.glob("*.json")]
        return sorted(records, key=lambda record: (record["created_at"], record["jid"]))

    def new_jid(self) -> str:
        """A JID no group has, as WhatsApp makes them today: 120363 and 12 more digits."""
        while True:
            jid = f"120363{secrets.randbelow(10**12):012d}@g.us"
            if not self._path(jid).exists():
                return jid

    def by_invite(self, code: str) -> tuple[dict | None, bool]:
        """The group whose invite code is `code`; else (None, whether it is a revoked one)."""
        revoked = False
        for record in self.all():
            if record["invite"] == code:
                return record, False
            revoked = revoked or code in record["revoked_invites"]
        return None, revoked


# --- Groups: WhatsApp's rules, applied to the servers' records ---------------------------------

INVITE_ONLY_SUFFIX = "9999"  # numbers whose privacy settings let only an invite add them
ADD_REQUEST_VALID = 3 * 24 * 3600.0  # seconds an add request (the invite they get) stays valid
SUBJECT_MAX, DESCRIPTION_MAX, GROUP_SIZE_MAX = 100, 2048, 1024
PARTICIPANT_ACTIONS = ("add", "remove", "promote", "demote")
GROUP_EVENTS = (
    "join",
    "leave",
    *PARTICIPANT_ACTIONS,
    "subject",
    "description",
    "announce",
    "locked",
)
INVITE_PATTERN = re.compile(r"(?:(?:https?://)?chat\.whatsapp\.com/)?([A-Za-z0-9_-]{16,32})/?")


def group_updated(group: str, by: str, change: dict, session_id: str, _own: str) -> Event:
    return GroupUpdated(session_id, group, by=by, by_phone=jid_to_phone(by), **change)


def refused(code: str, message: str) -> EngineError:
    return EngineError(message, permanent=True, code=code)


def invite_code() -> str:
    return secrets.token_urlsafe(16)  # 22 url-safe characters, like WhatsApp's


def note(record: dict, by: str, what: str, value: object) -> None:
    record["history"].append({"at": time.time(), "by": by, "what": what, "value": value})


def new_group(jid: str, subject: str, owner: str) -> dict:
    record = {
        "jid": jid,
        "subject": subject,
        "description": "",
        "owner": owner,
        "created_at": int(time.time()),
        "announce": False,
        "locked": False,
        "participants": {owner: "superadmin"},
        "invite": invite_code(),
        "revoked_invites": [],
        "picture": "",
        "history": [],
    }
    note(record, owner, "create", subject)
    return record


def group_of(record: dict) -> Group:
    return Group(
        jid=record["jid"],
        subject=record["subject"],
        description=record["description"],
        owner=record["owner"],
        owner_phone=jid_to_phone(record["owner"]),
        created_at=float(record["created_at"]),
        announce=record["announce"],
        locked=record["locked"],
        participants=tuple(member_of(jid, role) for jid, role in record["participants"].items()),
    )


def member_of(jid: str, role: GroupRole) -> GroupMember:
    return GroupMember(jid, jid_to_phone(jid), role)


def visible(book: GroupBook, jid: str, me: str) -> dict:
    """The group `jid` as the account `me` may see it."""
    record = book.get(jid)
    if record is None:
        raise refused("group_not_found", "that group does not exist")
    if me not in record["participants"]:
        raise refused("not_in_group", "you're not participating in that group")
    return record


def is_admin(record: dict, jid: str) -> bool:
    return record["participants"].get(jid) in ("admin", "superadmin")


def require_admin(record: dict, jid: str, what: str) -> None:
    if not is_admin(record, jid):
        raise refused("not_admin", f"only the group's admins {what}")


def number_jid(number: str) -> str:
    """The JID of a number (E.164) a sandbox control names."""
    if not re.fullmatch(r"\+?[0-9][0-9 ()-]*", number.strip()):
        raise refused("bad_request", f"{number!r} is not a phone number")
    return phone_to_jid(number)


def user_jid(jid: str) -> str:
    """A participant's JID without its device (the sandbox's users are phone-number JIDs)."""
    if not jid_to_phone(jid):
        raise refused("bad_request", f"{jid!r} is not the JID of a user's phone number")
    return phone_to_jid(jid_user(jid))


def check_info(subject: str | None, description: str | None) -> None:
    if subject is not None and not (subject.strip() and len(subject) <= SUBJECT_MAX):
        raise refused("bad_request", f"a group's subject is 1 to {SUBJECT_MAX} characters")
    if description is not None and len(description) > DESCRIPTION_MAX:
        raise refused("bad_request", f"a group's description is up to {DESCRIPTION_MAX} characters")


def change_info(record: dict, by: str, requested: dict[str, Any]) -> dict[str, Any]:
    """Set the fields in `requested` as `by`, if WhatsApp lets them; returns what changed. Anyone
    edits the subject and description unless the group is `locked`; only admins change its
    settings (announce, locked)."""
    if not requested:
        return {}
    if not is_admin(record, by):
        if "announce" in requested or "locked" in requested:
            require_admin(record, by, "change its settings")
        if record["locked"]:
            require_admin(record, by, "edit its info")
    changed = {name: value for name, value in requested.items() if record[name] != value}
    for name, value in changed.items():
        record[name] = value
        note(record, by, name, value)
    return changed


def change_participant(
    record: dict, by: str, action: str, target: str
) -> tuple[ParticipantResult, GroupMember | None]:
    """`by` adds, removes, promotes or demotes `target`: WhatsApp's answer for them, and the
    member as the change notification names them (None when nothing changed)."""
    participants = record["participants"]
    role, user = participants.get(target), jid_user(target)

    def answer(
        status: ParticipantStatus, error: int = 0, invite: bool = False
    ) -> ParticipantResult:
        if not invite:
            return ParticipantResult(target, jid_to_phone(target), status, error)
        expires = time.time() + ADD_REQUEST_VALID
        return ParticipantResult(
            target, jid_to_phone(target), status, error, invite_code(), expires
        )

    if action == "add":
        if user.endswith(NOT_ON_WHATSAPP_SUFFIX):
            return answer("not_found", 404), None
        if role is not None:
            return answer("already_member", 409), None
        if user.endswith(INVITE_ONLY_SUFFIX):  # WhatsApp sends them an add request instead
            return answer("invite_required", 403, invite=True), None
        participants[target] = role = "member"
    elif role is None:
        return answer("not_found", 404), None
    elif action == "promote":
        if role != "member":
            return answer("ok"), None
        participants[target] = "admin"
    elif action == "demote":
        if role == "superadmin":  # the creator stays the creator
            return answer("refused", 403), None
        if role == "member":
            return answer("ok"), None
        participants[target] = "member"
    else:  # remove: only the creator may remove the creator (that is, leave)
        if role == "superadmin" and participants.get(by) != "superadmin":
            return answer("refused", 403), None
        del participants[target]
    note(record, by, action, target)
    return answer("ok"), member_of(target, participants.get(target, role))
