"""The floor's tables: what every app may rely on (see the modules that define them).

- `UsageCounter`, `UsageReport`: how much each session did, per hour (gateway/core/usage.py is
  their one door).
"""

from __future__ import annotations

from django.db import models


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
