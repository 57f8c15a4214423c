"""WhatsApp sessions (one linked phone each) and their event history (states: states.py)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from sessions_app.states import DesiredState, Engine, SessionStatus, session_transition_allowed


def default_engine() -> str:
    return settings.DEFAULT_ENGINE


class Session(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    external_id = models.CharField(
        max_length=200,
        unique=True,
        null=True,
        blank=True,
        help_text="The backend's own id for this session (its card id).",
    )
    name = models.CharField(max_length=200, blank=True)
    engine = models.CharField(max_length=20, choices=Engine.choices, default=default_engine)
    metadata = models.JSONField(default=dict, blank=True)

    desired_state = models.CharField(
        max_length=10, choices=DesiredState.choices, default=DesiredState.RUNNING, db_index=True
    )
    status = models.CharField(
        max_length=16, choices=SessionStatus.choices, default=SessionStatus.STOPPED, db_index=True
    )
    status_changed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_code = models.CharField(max_length=50, blank=True)

    # Requests the owning worker carries out and then clears (conditional on its lease epoch).
    restart_requested_at = models.DateTimeField(null=True, blank=True)
    logout_requested_at = models.DateTimeField(null=True, blank=True)
    delete_requested_at = models.DateTimeField(null=True, blank=True)
    pair_requested_at = models.DateTimeField(null=True, blank=True)
    pair_phone = models.CharField(max_length=32, blank=True, help_text="For the pairing code.")

    phone_number = models.CharField(max_length=32, blank=True)
    jid = models.CharField(max_length=100, blank=True)
    push_name = models.CharField(max_length=200, blank=True)
    linked_at = models.DateTimeField(null=True, blank=True)

    # The lease: which worker runs this session, until when, and the fencing token of its claim.
    worker = models.ForeignKey(
        "workers.Worker", null=True, blank=True, on_delete=models.SET_NULL, related_name="sessions"
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    lease_epoch = models.BigIntegerField(default=0)
    target_worker = models.ForeignKey(
        "workers.Worker",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Where an operator asked this session to move.",
    )

    # The latest encrypted auth snapshot (sessions_app.services.snapshots), made "latest" only
    # under the lease that took it.
    snapshot_key = models.CharField(max_length=300, blank=True)
    snapshot_epoch = models.BigIntegerField(null=True, blank=True)
    snapshot_number = models.PositiveIntegerField(default=0)
    snapshot_at = models.DateTimeField(null=True, blank=True)

    # Increments with every webhook event about this session (its per-session sequence).
    event_sequence = models.BigIntegerField(default=0)

    # The scoped API key that created it: a key limited to some sessions may also reach these.
    created_by_key = models.ForeignKey(
        "core.ScopedAPIKey",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="created_sessions",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The worker's claim query: running sessions whose lease is free or expired.
            models.Index(fields=["desired_state", "lease_expires_at"], name="session_claim_idx"),
            models.Index(fields=["-created_at", "-id"], name="session_created_idx"),
        ]

    def __str__(self) -> str:
        return self.name or self.external_id or str(self.id)

    def can_transition_to(self, target: str) -> bool:
        return session_transition_allowed(self.status, target)


class SessionEvent(models.Model):
    """One status change of a session: the audit trail operators read in the admin."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=16, choices=SessionStatus.choices)
    to_status = models.CharField(max_length=16, choices=SessionStatus.choices)
    reason = models.CharField(max_length=200, blank=True)
    worker = models.ForeignKey(
        "workers.Worker", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.from_status} → {self.to_status}"
