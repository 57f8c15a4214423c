"""The daily `usage.report`: once per session and UTC day with message activity, through the
outbox, however many workers ask at once (the worker's loop is tested in
tests/workers/runtime/test_usage.py)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections
from rest_framework.test import APIClient

from gateway.core import usage
from gateway.core.models import UsageReport
from gateway.outbox.models import WebhookDelivery
from sessions_app import services

pytestmark = pytest.mark.django_db
DAY = datetime(2026, 1, 15, tzinfo=UTC)
NEXT_MORNING = DAY + timedelta(days=1, minutes=10)


@pytest.fixture(autouse=True)
def _backend(settings) -> None:
    settings.BACKEND_URL = "http://backend.test"


def reports() -> list[dict]:
    return [
        d.payload for d in WebhookDelivery.objects.filter(event_type="usage.report").order_by("id")
    ]


def test_each_active_session_is_reported_once_a_day(make_session, api: APIClient, settings) -> None:
    a, b, idle, hooks_only = (make_session(name=n) for n in ("a", "b", "idle", "hooks"))
    usage.usage_add(a.pk, kind="text", at=DAY + timedelta(hours=9), messages_sent=3)
    usage.usage_add(a.pk, kind="image", at=DAY + timedelta(hours=20), messages_received=1)
    usage.usage_add(a.pk, at=DAY + timedelta(hours=20), webhooks_delivered=7)
    usage.usage_add(b.pk, kind="text", at=DAY + timedelta(hours=23.9), messages_failed=1)
    usage.usage_add(b.pk, kind="text", at=DAY + timedelta(days=1, hours=1), messages_sent=1)
    # A day with only webhooks is no activity (a report's own delivery would be, every day).
    usage.usage_add(hooks_only.pk, at=DAY + timedelta(hours=3), webhooks_delivered=2)

    # Five minutes into the next day, the day before is not due yet (its last counts commit).
    assert services.usage_reports_send(now=DAY + timedelta(days=1, minutes=2)).sent == 0
    done = services.usage_reports_send(now=NEXT_MORNING)
    assert (done.sent, done.through) == (2, DAY.date())
    assert services.usage_reports_send(now=NEXT_MORNING).sent == 0  # once
    assert services.usage_reports_send(now=NEXT_MORNING + timedelta(hours=5)).sent == 0

    sent = reports()
    assert sorted(r["session"]["id"] for r in sent) == sorted([str(a.pk), str(b.pk)])
    delivery = WebhookDelivery.objects.filter(event_type="usage.report").first()
    assert delivery is not None and delivery.target == "http://backend.test/api/webhooks/usage"
    day = api.get(
        "/api/v1/usage", {"from": DAY.isoformat(), "to": (DAY + timedelta(days=1)).isoformat()}
    ).json()["results"]
    by_session = {r["session"]: r for r in day}
    for report in sent:
        assert report["event"] == "usage.report" and report["sequence"] >= 1
        assert report["usage"] == by_session[report["session"]["id"]]  # the API's shape
    mine = next(r["usage"] for r in sent if r["session"]["id"] == str(a.pk))
    assert mine["period"] == "2026-01-15T00:00:00Z"
    assert mine["messages"]["sent"] == 3 and mine["messages"]["received"] == 1
    assert mine["webhooks"] == {"delivered": 7, "failed": 0}
    assert {idle.pk, hooks_only.pk}.isdisjoint(
        UsageReport.objects.values_list("session_id", flat=True)
    )

    # The next day's activity is reported the day after; days missed are caught up.
    later = services.usage_reports_send(now=NEXT_MORNING + timedelta(days=2))
    assert later.sent == 1 and len(reports()) == 3
    assert reports()[-1]["usage"]["period"] == "2026-01-16T00:00:00Z"
    assert reports()[-1]["session"]["id"] == str(b.pk)


def test_days_older_than_a_week_are_not_reported(make_session) -> None:
    session = make_session()
    usage.usage_add(session.pk, kind="text", at=DAY, messages_sent=1)
    assert services.usage_reports_send(now=NEXT_MORNING + timedelta(days=7)).sent == 0
    assert services.usage_reports_send(now=NEXT_MORNING + timedelta(days=6)).sent == 1


@pytest.mark.django_db(transaction=True)
def test_workers_reporting_at_once_report_each_day_once(make_session) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers")
    sessions = [make_session(name=str(n)) for n in range(8)]
    for session in sessions:
        usage.usage_add(session.pk, kind="text", at=DAY + timedelta(hours=12), messages_sent=1)
    threads = 4
    start = threading.Barrier(threads)
    sent: list[int] = []

    def report() -> None:
        try:
            start.wait()
            sent.append(services.usage_reports_send(now=NEXT_MORNING).sent)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=report) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert sum(sent) == len(sessions) and len(sent) == threads
    assert len(reports()) == len(sessions)
    assert len({r["session"]["id"] for r in reports()}) == len(sessions)
