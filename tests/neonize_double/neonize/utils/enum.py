"""The enums of neonize/utils/enum.py the gateway uses, with neonize 0.5.2's values (including
`ReceiptType.RETRY = b"RETRY"`, which whatsmeow does not know, and a str `HISTORY_SYNC`)."""

from __future__ import annotations

from enum import Enum


class ChatPresence(Enum):
    CHAT_PRESENCE_COMPOSING = 0
    CHAT_PRESENCE_PAUSED = 1


class ChatPresenceMedia(Enum):
    CHAT_PRESENCE_MEDIA_TEXT = 0
    CHAT_PRESENCE_MEDIA_AUDIO = 1


class ReceiptType(Enum):
    DELIVERED = b""
    SENDER = b"sender"
    RETRY = b"RETRY"
    READ = b"read"
    READ_SELF = b"read-self"
    PLAYED = b"played"
    PLAYED_SELF = b"played-self"
    SERVER_ERROR = b"server-error"
    INACTIVE = b"inactive"
    PEER_MSG = b"peer_msg"
    HISTORY_SYNC = "hist_sync"


class BlocklistAction(Enum):
    """PY utils/enum.py L343-353."""

    BLOCK = "block"
    UNBLOCK = "unblock"


class Presence(Enum):
    """PY utils/enum.py L386-388: the bytes are whatsmeow's types.Presence strings."""

    AVAILABLE = b"available"
    UNAVAILABLE = b"unavailable"


class ParticipantChange(Enum):
    """PY utils/enum.py L356-372: whatsmeow's ParticipantChange strings (group.go)."""

    ADD = "add"
    REMOVE = "remove"
    PROMOTE = "promote"
    DEMOTE = "demote"


class VoteType(Enum):
    """PY utils/enum.py L391-401: build_poll_vote_creation passes `.value` as whatsmeow's
    selectableOptionCount (0: any number of options)."""

    MULTIPLE = 0
    SINGLE = 1
