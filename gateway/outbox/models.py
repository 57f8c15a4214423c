"""The webhook outbox: one row per event for the backend, written with the change it reports."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    DEAD = "dead", "Dead"
    # A QR code event that a newer status of its session made stale: never delivered as current.
    SUPERSEDED = "superseded", "Superseded"


class WebhookDelivery(models.Model):
    # The event id is the `webhook-id` header: fixed at creation, the same on every retry and
    # replay.
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    event_type = models.CharField(max_length=50, db_index=True)
    target = models.URLField(max_length=500)
    payload = models.JSONField()
    session = models.ForeignKey(
        "sessions_app.Session",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="webhook_deliveries",
    )
    sequence = models.BigIntegerField(help_text="Per-session, increasing.")
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_response = models.TextField(blank=True, help_text="The start of the last response body.")
    # A dispatcher working on it until then (a crashed one's claim simply runs out).
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # The dispatcher's claim: pending rows that are due.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status="pending"),
                name="delivery_due_idx",
            ),
            # Each session's oldest pending delivery (the only one that may go now).
            models.Index(
                fields=["session", "sequence"],
                condition=models.Q(status="pending"),
                name="delivery_session_pending_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "sequence"], name="delivery_session_seq_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.sequence} → {self.target}"
