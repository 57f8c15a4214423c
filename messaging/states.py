"""A message's directions, types and statuses, and the rule that a status only moves forward.
Plain values: the runtime and the API use them without touching the model."""

from __future__ import annotations

from django.db import models


class Direction(models.TextChoices):
    OUT = "out", "Outbound"
    IN = "in", "Inbound"


class MessageType(models.TextChoices):
    TEXT = "text", "Text"
    IMAGE = "image", "Image"
    VIDEO = "video", "Video"
    AUDIO = "audio", "Audio"
    VOICE = "voice", "Voice note"
    DOCUMENT = "document", "Document"
    LOCATION = "location", "Location"
    CONTACT = "contact", "Contact"
    REACTION = "reaction", "Reaction"
    POLL = "poll", "Poll"
    STICKER = "sticker", "Sticker"


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    PLAYED = "played", "Played"
    FAILED = "failed", "Failed"
    RECEIVED = "received", "Received"
    REVOKED = "revoked", "Deleted for everyone"


M = MessageStatus

# The one place that says how a message's status may move. Outbound messages climb this ladder and
# never step down (a late `delivered` never overwrites `read`); they may skip rungs (a `read`
# receipt can arrive first). `failed` is reachable only before WhatsApp accepted the message.
# Inbound messages are `received`, then `read` once we mark them read.
_OUTBOUND_LADDER: list[str] = [M.QUEUED, M.SENDING, M.SENT, M.DELIVERED, M.READ, M.PLAYED]
_INBOUND_LADDER: list[str] = [M.RECEIVED, M.READ]


def message_status_advances(direction: str, source: str, target: str) -> bool:
    """True when moving from `source` to `target` is a forward step for a message of `direction`.
    `revoked` (deleted for everyone) is the last step from anywhere but `failed`: nothing moves
    a revoked message again."""
    if target == M.REVOKED:
        return source not in (M.FAILED, M.REVOKED)
    if direction == Direction.OUT and target == M.FAILED:
        return source in (M.QUEUED, M.SENDING)
    ladder = _OUTBOUND_LADDER if direction == Direction.OUT else _INBOUND_LADDER
    if source not in ladder or target not in ladder:
        return False
    return ladder.index(target) > ladder.index(source)


# The timestamp field stamped when a message reaches each status.
STATUS_TIMESTAMP_FIELDS: dict[str, str] = {
    M.SENDING: "sending_at",
    M.SENT: "sent_at",
    M.DELIVERED: "delivered_at",
    M.READ: "read_at",
    M.PLAYED: "played_at",
    M.FAILED: "failed_at",
    M.REVOKED: "revoked_at",
}
# What a move of status writes (`save(update_fields=…)`: not the other thirty columns).
STATUS_FIELDS: tuple[str, ...] = ("status", *STATUS_TIMESTAMP_FIELDS.values())
