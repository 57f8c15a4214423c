"""The wire format between a worker and its engine hosts: one JSON object per line.

    worker → host   {"v": 1, "id": 7, "op": "send", "args": {...}}
    host → worker   {"v": 1, "hello": {"engine": "neonize", "pid": 123}}        (first line)
                    {"v": 1, "id": 7, "ok": true, "result": ...}
                    {"v": 1, "id": 7, "ok": false, "error": {"message", "permanent", "code"}}
                    {"v": 1, "event": {"type": "receipt", ...}}

A host that speaks another version is refused. Events and arguments are the dataclasses of
`workers.engines.base`, turned into plain JSON by `encode` and back by `decode_event` and friends.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any, cast

from workers.engines import base

VERSION = 1

_EVENTS: dict[str, type] = {
    # Every event's `type` field has its name as a (str) default.
    cast(str, cls.__dataclass_fields__["type"].default): cls
    for cls in (
        base.QrCode,
        base.PairCode,
        base.Connected,
        base.Disconnected,
        base.LoggedOut,
        base.StreamReplaced,
        base.MessageReceived,
        base.MessageEdited,
        base.MessageRevoked,
        base.PollVote,
        base.HistorySynced,
        base.Receipt,
        base.Presence,
        base.BlocklistChanged,
        base.GroupJoined,
        base.GroupUpdated,
        base.GroupParticipantsChanged,
    )
}


def encode(value: Any) -> Any:
    """Dataclasses, paths and tuples as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    return value


def dumps(message: dict) -> bytes:
    return (json.dumps({"v": VERSION, **message}, separators=(",", ":")) + "\n").encode()


def _maybe(cls: type, value: dict | None) -> Any:
    return cls(**value) if value is not None else None


def decode_inbound(data: dict) -> base.InboundMessage:
    return base.InboundMessage(
        **{
            **data,
            "media": _maybe(base.InboundMedia, data.get("media")),
            "location": _maybe(base.Location, data.get("location")),
            "contact": _maybe(base.Contact, data.get("contact")),
            "mentions": tuple(data.get("mentions") or ()),
            "poll": _poll(data.get("poll")),
        }
    )


def _poll(data: dict | None) -> base.Poll | None:
    return base.Poll(**{**data, "options": tuple(data["options"])}) if data else None


def decode_event(data: dict) -> base.Event:
    cls = _EVENTS[data["type"]]
    fields = dict(data)
    if cls is base.MessageReceived:
        fields["message"] = decode_inbound(fields["message"])
    if cls is base.Receipt:
        fields["message_ids"] = tuple(fields["message_ids"])
    if cls is base.PollVote:
        fields["selected"] = tuple(fields["selected"])
    if cls is base.HistorySynced:
        fields["messages"] = tuple(decode_inbound(m) for m in fields["messages"])
    if cls is base.BlocklistChanged:
        fields["changes"] = tuple(base.BlocklistChange(**change) for change in fields["changes"])
    if cls is base.GroupJoined:
        fields["group"] = decode_group(fields["group"])
    if cls is base.GroupParticipantsChanged:
        fields["participants"] = _members(fields["participants"])
    return cls(**fields)


def _members(items: list[dict]) -> tuple[base.GroupMember, ...]:
    return tuple(base.GroupMember(**item) for item in items)


def decode_group(data: dict) -> base.Group:
    return base.Group(**{**data, "participants": _members(data["participants"])})


def decode_outbound(data: dict) -> base.OutboundMessage:
    media = data.get("media")
    return base.OutboundMessage(
        **{
            **data,
            "media": base.Media(**{**media, "path": Path(media["path"])}) if media else None,
            "location": _maybe(base.Location, data.get("location")),
            "contact": _maybe(base.Contact, data.get("contact")),
            "mentions": tuple(data.get("mentions") or ()),
            "poll": _poll(data.get("poll")),
            "preview": _maybe(base.LinkPreview, data.get("preview")),
        }
    )


def decode_result(op: str, value: Any) -> Any:
    if op in ("send", "edit_message", "revoke_message"):
        return base.SendResult(**value)
    if op == "check_numbers":
        return [base.NumberCheck(**item) for item in value]
    if op in ("blocklist", "update_blocklist"):
        return [base.Blocked(**item) for item in value]
    if op == "contact":
        return base.ContactInfo(**value)
    if op in ("profile", "update_profile"):
        return base.Profile(**value)
    if op == "groups":
        return [decode_group(item) for item in value]
    if op in ("group_info", "update_group"):
        return decode_group(value)
    if op == "create_group":
        return base.GroupCreated(
            group=decode_group(value["group"]),
            participants=tuple(base.ParticipantResult(**item) for item in value["participants"]),
        )
    if op == "update_participants":
        return [base.ParticipantResult(**item) for item in value]
    return value


# The engine commands a host serves, and the sandbox's controls (served by sandbox hosts only).
OPS = frozenset(
    {
        "start",
        "stop",
        "logout",
        "send",
        "edit_message",
        "revoke_message",
        "request_pair_code",
        "check_numbers",
        "mark_read",
        "set_presence",
        "set_chat_presence",
        "subscribe_presence",
        "blocklist",
        "update_blocklist",
        "contact",
        "phone_of_lid",
        "profile",
        "update_profile",
        "set_profile_picture",
        "groups",
        "group_info",
        "create_group",
        "update_group",
        "set_group_picture",
        "update_participants",
        "group_invite_link",
        "join_group",
        "leave_group",
        "download",
        "probe",
    }
)
SANDBOX_OPS = frozenset(
    {
        "scan",
        "receive",
        "drop_connection",
        "remote_logout",
        "replace",
        "freeze",
        "ban",
        "outdate",
        "receipts",
        "presence",
        "block_from_phone",
        "group_event",
        "history",
    }
)


def decode_args(op: str, args: dict) -> dict:
    """A request's arguments as the engine method takes them."""
    args = dict(args)
    if op == "start":
        args["auth_dir"] = Path(args["auth_dir"])
    elif op == "send":
        args["message"] = decode_outbound(args["message"])
    elif op == "download":
        args["media"] = base.InboundMedia(**args["media"])
        args["into"] = Path(args["into"])
    elif op == "receive" and args.get("media") is not None:
        args["media"] = base64.b64decode(args["media"])
    return args
