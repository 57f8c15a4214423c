"""The floor's tables: what every app may rely on (see the modules that define them).

- `UsageCounter`, `UsageReport`: how much each session did, per hour (gateway/core/usage.py is
  their one door).
- `ScopedAPIKey`: an API key limited to some sessions and scopes (gateway/core/scopes.py decides
  what that allows; gateway/core/keys.py is its API).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from rest_framework_api_key.models import APIKey


class UsageCounter(models.Model):
    """One figure of one session in one hour (UTC): `count` of `metric` (a name of
    gateway.core.usage.METRICS), per message type in `kind` ("" for figures without a type).
    Only ever incremented, in the transaction that made what it counts, so a rollback counts
    nothing; the API sums the hours."""

    session = models.ForeignKey(
        "sessions_app.Session", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    period_start = models.DateTimeField(help_text="The hour counted (UTC).")
    metric = models.CharField(max_length=32)
    kind = models.CharField(max_length=16, blank=True, default="")
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["session", "period_start", "metric", "kind"], name="usage_counter_unique"
            )
        ]
        indexes = [models.Index(fields=["period_start"], name="usage_counter_period_idx")]

    def __str__(self) -> str:
        return f"{self.session_id} {self.period_start:%Y-%m-%dT%H} {self.metric}:{self.kind}"


class UsageReport(models.Model):
    """A session's daily `usage.report` was written for `day` (UTC): claimed with the event in one
    transaction, so however many workers try, a day is reported once."""

    session = models.ForeignKey(
        "sessions_app.Session", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    day = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session", "day"], name="usage_report_unique")
        ]

    def __str__(self) -> str:
        return f"{self.session_id} {self.day}"


# What a key may do (README, "Scoped API keys"). `None` in a key's `scopes` means all of them.
SCOPES = ("read", "send", "control", "manage")


class ScopedAPIKey(APIKey):
    """An API key limited to some sessions and some actions (gateway/core/scopes.py).

    A multi-table child of djangorestframework-api-key's `APIKey`: the key is stored hashed by the
    library as ever, and a plain `APIKey` row without a child is a key with full access. The
    sessions a key created (`Session.created_by_key`) are its sessions too.
    """

    sessions = models.JSONField(
        null=True,
        blank=True,
        help_text="Session ids (a JSON list) this key may reach, besides those it created; "
        "empty (null) means every session.",
    )
    scopes = models.JSONField(
        null=True,
        blank=True,
        help_text='What it may do: a JSON list of "read", "send", "control", "manage"; empty '
        "(null) means everything.",
    )

    class Meta(APIKey.Meta):
        verbose_name = "scoped API key"
        verbose_name_plural = "scoped API keys"

    def clean(self) -> None:
        super().clean()
        errors: dict[str, str] = {}
        if self.sessions is not None:
            try:
                self.sessions = normal_sessions(self.sessions)
            except ValueError:
                errors["sessions"] = "A list of session ids (UUIDs), or empty for every session."
        if self.scopes is not None:
            try:
                self.scopes = normal_scopes(self.scopes)
            except ValueError:
                errors["scopes"] = f"A list of {', '.join(SCOPES)}, or empty for everything."
        if errors:
            raise ValidationError(errors)


def normal_sessions(value: Any) -> list[str]:
    """Session ids as the key keeps them: canonical UUID strings, once each, in order; or
    ValueError."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("not a list of strings")
    return list(dict.fromkeys(str(uuid.UUID(v)) for v in value))


def normal_scopes(value: Any) -> list[str]:
    """Scopes as the key keeps them: known names, once each, in SCOPES' order; or ValueError."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v in SCOPES for v in value):
        raise ValueError("not a list of scopes")
    return [scope for scope in SCOPES if scope in value]
