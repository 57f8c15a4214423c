"""The outbox: every event once (`Event`, the log the live stream resumes from), and one delivery
per event and destination (`WebhookDelivery`), written with the change they report. Destinations
are the built-in backend (BACKEND_URL, `endpoint` empty) and the `Endpoint`s made through the API:
webhooks, NATS JetStream and RabbitMQ."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models.functions import Now
from django.utils import timezone

from gateway.core import tracing


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    DEAD = "dead", "Dead"
    # A QR code event that a newer status of its session made stale: never delivered as current.
    SUPERSEDED = "superseded", "Superseded"


BUILTIN = models.Q(endpoint__isnull=True)


def default_events() -> list[str]:
    return ["*"]


class Endpoint(models.Model):
    """Where a tenant wants events: a webhook (http/https) or a broker (nats://, amqp://), the
    events it wants (patterns such as `message.*`) of the sessions it wants (or all)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.CharField(max_length=500, help_text="https://…, nats://… or amqp://…")
    events = models.JSONField(
        default=default_events, help_text="Event patterns: `*`, `message.*`, `session.status`."
    )
    sessions = models.JSONField(
        null=True,
        blank=True,
        help_text="Session ids (at least one); null (left empty) means every session.",
    )
    secret = models.CharField(max_length=200, help_text="Standard Webhooks signing secret.")
    previous_secret = models.CharField(max_length=200, blank=True)
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    subject = models.CharField(max_length=200, default="wa.{session}.{event}")
    stream = models.CharField(max_length=100, blank=True, help_text="NATS JetStream stream.")
    exchange = models.CharField(max_length=100, blank=True, help_text="RabbitMQ exchange.")
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    description = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.description or self.url


class Event(models.Model):
    """Every event once, whatever its destinations: what `/ws/events/` replays after a reconnect
    (kept EVENT_RETENTION_HOURS)."""

    event_id = models.UUIDField(unique=True, editable=False)
    event_type = models.CharField(max_length=50)
    session = models.ForeignKey(
        "sessions_app.Session", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sequence = models.BigIntegerField()
    payload = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The trace of what caused the event (gateway.core.tracing.context(); "" with tracing off):
    # its delivery's span joins it.
    trace_context = models.CharField(
        max_length=tracing.MAX_STORED, blank=True, default="", editable=False
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.sequence}"


class WebhookDelivery(models.Model):
    # The event id is the `webhook-id` header (a broker's message id): fixed at creation, the
    # same on every retry and
    # replay. The same for every destination of the event.
    event_id = models.UUIDField(default=uuid.uuid4, editable=False)
    event_type = models.CharField(max_length=50, db_index=True)
    # Empty: the built-in backend (BACKEND_URL and its paths).
    endpoint = models.ForeignKey(
        Endpoint, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    target = models.CharField(max_length=500)
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
    # Due at once by the database's clock (that of the dispatchers' claims), not the producer's.
    next_attempt_at = models.DateTimeField(db_default=Now())
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_response = models.TextField(blank=True, help_text="The start of the last response body.")
    # A dispatcher working on it until then (a crashed one's claim simply runs out).
    claimed_until = models.DateTimeField(null=True, blank=True)
    # The event's trace context, as in the event log (what the delivery's span is a child of).
    trace_context = models.CharField(
        max_length=tracing.MAX_STORED, blank=True, default="", editable=False
    )
    # The database's clock, as WEBHOOK_MAX_AGE is judged by.
    created_at = models.DateTimeField(db_default=Now())
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
            # Each destination's oldest pending delivery of each session (the only one that may
            # go now).
            models.Index(
                fields=["endpoint", "session", "sequence"],
                condition=models.Q(status="pending"),
                name="delivery_head_idx",
            ),
        ]
        # One delivery per event and destination, numbered in its session's sequence. (Partial
        # constraints: the built-in backend's rows have no endpoint, and a deleted session's rows
        # no session.)
        constraints = [
            models.UniqueConstraint(
                fields=["session", "sequence"], condition=BUILTIN, name="delivery_session_seq_uniq"
            ),
            models.UniqueConstraint(
                fields=["event_id"], condition=BUILTIN, name="delivery_event_uniq"
            ),
            models.UniqueConstraint(
                fields=["endpoint", "session", "sequence"],
                condition=~BUILTIN,
                name="delivery_endpoint_seq_uniq",
            ),
            models.UniqueConstraint(
                fields=["endpoint", "event_id"],
                condition=~BUILTIN,
                name="delivery_endpoint_event_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.sequence} → {self.target}"
