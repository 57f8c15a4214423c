"""Messages, inbound and outbound, and the rule that their status only moves forward."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import models
from django.utils import timezone

from gateway.core import tracing
from messaging.states import (
    STATUS_TIMESTAMP_FIELDS,
    Direction,
    MessageStatus,
    MessageType,
    message_status_advances,
)


def media_upload_to(message: Message, filename: str) -> str:
    return f"{message.session_id}/{message.id}/{filename}"


class Message(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(
        "sessions_app.Session", on_delete=models.CASCADE, related_name="messages"
    )
    direction = models.CharField(max_length=3, choices=Direction.choices)
    chat = models.CharField(max_length=100, help_text="The chat's JID.")
    sender = models.CharField(max_length=100, blank=True, help_text="The sender's JID.")
    sender_phone = models.CharField(
        max_length=32, blank=True, help_text="The phone number behind a @lid sender, when known."
    )
    type = models.CharField(max_length=10, choices=MessageType.choices, default=MessageType.TEXT)
    text = models.TextField(blank=True)
    caption = models.TextField(blank=True)
    payload = models.JSONField(
        default=dict,
        blank=True,
        help_text="Location, contact or reaction fields; `edits` (earlier texts), `reactions` "
        "(by who reacted), `mentions`.",
    )
    media = models.FileField(upload_to=media_upload_to, max_length=500, blank=True)
    media_mime_type = models.CharField(max_length=100, blank=True)
    media_size = models.PositiveBigIntegerField(null=True, blank=True)
    media_sha256 = models.CharField(max_length=64, blank=True)
    media_filename = models.CharField(max_length=255, blank=True)
    # The type the file is served as, told by its bytes when stored
    # (messaging.services.media.served_as): shown inline only for types that cannot script; ""
    # (or application/octet-stream) downloads.
    media_served_as = models.CharField(max_length=100, blank=True)
    reply_to = models.CharField(max_length=100, blank=True)
    # An inbound message whose media is not in storage yet (storage down, download failed): its
    # `message.received` webhook is written once the media is there. The engine's download
    # reference waits in `payload["media_ref"]`.
    media_pending = models.BooleanField(default=False)
    # Came with the history WhatsApp sent after linking (no webhook of its own).
    history = models.BooleanField(default=False)

    # NULL, not "", where absent: the unique constraints below apply only to rows that have one.
    wa_message_id = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)
    # The trace of the API request that accepted it (gateway.core.tracing.context(); "" with
    # tracing off): the worker's send joins it.
    trace_context = models.CharField(
        max_length=tracing.MAX_STORED, blank=True, default="", editable=False
    )

    status = models.CharField(max_length=10, choices=MessageStatus.choices, db_index=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_message = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    sending_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    played_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="message_idempotency_key_unique",
            ),
            models.UniqueConstraint(
                fields=["session", "direction", "wa_message_id"],
                condition=models.Q(wa_message_id__isnull=False),
                name="message_wa_id_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["session", "-created_at", "-id"], name="message_history_idx"),
            # Conversations: a session's chats and their latest messages.
            models.Index(fields=["session", "chat", "-created_at"], name="message_chat_idx"),
            # The send queue: a session's queued messages, oldest first.
            models.Index(
                fields=["session", "created_at"],
                condition=models.Q(status="queued"),
                name="message_queue_idx",
            ),
            # Inbound media still to store (the worker's sweep, messaging.services.queue).
            models.Index(
                fields=["session"],
                condition=models.Q(media_pending=True),
                name="message_media_pending_idx",
            ),
            # The admin's messages a minute over the last hour (gateway/fleet.py).
            models.Index(
                fields=["created_at"],
                condition=models.Q(history=False),
                name="message_recent_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.type} {self.id}"

    def can_advance_to(self, target: str) -> bool:
        return message_status_advances(self.direction, self.status, target)

    def advance_to(self, status: str, at: datetime | None = None) -> bool:
        """Move forward to `status`, stamping its time (unsaved); False when that is not forward."""
        if not self.can_advance_to(status):
            return False
        self.status = status
        stamp = STATUS_TIMESTAMP_FIELDS.get(status)
        if stamp:
            setattr(self, stamp, at or timezone.now())
        return True
