"""The daily `usage.report` of each session: once per session and UTC day with message activity,
however many workers ask (each day's report is claimed with its event in one transaction)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from gateway.core import usage
from sessions_app import events
from sessions_app.models import Session

# A day is reported once it has been over for this long (what it counted has committed), and
# days missed while no worker ran are caught up this far back.
REPORT_GRACE = timedelta(minutes=5)
REPORT_DAYS_BACK = 7


@dataclass(frozen=True)
class UsageReports:
    sent: int  # reports written now
    through: date  # every day up to this one has been looked at


def usage_report_due_day(now: datetime | None = None) -> date:
    """The last UTC day that may be reported at `now`."""
    return ((now or timezone.now()) - REPORT_GRACE).astimezone(UTC).date() - timedelta(days=1)


def usage_reports_send(*, now: datetime | None = None) -> UsageReports:
    """Write the `usage.report` event of every session with message activity on a past day
    (the last REPORT_DAYS_BACK) that has none yet. Safe to call from every worker at once: a
    day's report is claimed by one of them (the others wait for its commit and skip it)."""
    last = usage_report_due_day(now)
    sent = 0
    for session_id, day in usage.usage_days_active(
        first=last - timedelta(days=REPORT_DAYS_BACK - 1), last=last
    ):
        start, end = usage.day_bounds(day)
        with transaction.atomic():
            if not usage.usage_report_claim(session_id, day):
                continue  # another worker reported it
            session = Session.objects.filter(pk=session_id).first()
            periods = usage.usage_periods(
                start=start, end=end, granularity="day", sessions=[session_id]
            )
            if session is None or not periods:  # pragma: no cover - deleted meanwhile
                transaction.set_rollback(True)
                continue
            events.usage_reported(session, periods[0])
            sent += 1
    return UsageReports(sent=sent, through=last)
