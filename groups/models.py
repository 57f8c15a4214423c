"""The groups each session is in, as last heard from WhatsApp (a cache: WhatsApp punishes
frequent metadata queries, so the API and the send path read this, never WhatsApp)."""

from __future__ import annotations

from django.db import models


class Group(models.Model):
    session = models.ForeignKey(
        "sessions_app.Session", on_delete=models.CASCADE, related_name="groups"
    )
    jid = models.CharField(max_length=100)
    subject = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    owner = models.CharField(max_length=100, blank=True)
    owner_phone = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(null=True, blank=True, help_text="On WhatsApp.")
    announce = models.BooleanField(default=False, help_text="Only admins send messages.")
    locked = models.BooleanField(default=False, help_text="Only admins edit the group's info.")
    # [{jid, phone_number, role}] as WhatsApp last told.
    participants = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "jid"], name="group_unique_per_session")
        ]
        ordering = ["subject", "jid"]

    def __str__(self) -> str:
        return self.subject or self.jid

    @property
    def member_count(self) -> int:
        return len(self.participants)


class GroupSync(models.Model):
    """When a session's list of groups was last fetched whole from WhatsApp."""

    session = models.OneToOneField(
        "sessions_app.Session", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    synced_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.session_id} synced at {self.synced_at}"
