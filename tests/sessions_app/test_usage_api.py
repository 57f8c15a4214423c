"""`GET /api/v1/usage` on counters written through the door (the figures' sources are tested in
tests/messaging/test_usage_counts.py and end to end in tests/workers/runtime/test_usage.py):
periods summed by hour and day, the session filter, the validation, and the door's upsert."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from rest_framework.test import APIClient

from gateway.core import usage
from gateway.core.models import UsageCounter

pytestmark = pytest.mark.django_db
DAY = datetime(2026, 1, 15, tzinfo=UTC)


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def get(api: APIClient, **params):
    return api.get("/api/v1/usage", params)


def zero() -> dict:
    return {"sent": 0, "delivered": 0, "read": 0, "failed": 0, "received": 0}


@pytest.fixture
def two(make_session):
    """Two sessions' counters: A in two hours of DAY and the next day, B in one hour."""
    a, b = make_session(name="a"), make_session(name="b")
    usage.usage_add(a.pk, kind="text", at=at(10.1), messages_sent=2, messages_delivered=1)
    usage.usage_add(a.pk, kind="text", at=at(10.9), messages_sent=1, messages_read=1)
    usage.usage_add(a.pk, kind="image", at=at(10.5), messages_sent=1, media_bytes_sent=500)
    usage.usage_add(a.pk, kind="image", at=at(13), messages_received=1, media_bytes_received=70)
    usage.usage_add(a.pk, at=at(13.5), webhooks_delivered=4, webhooks_failed=1)
    usage.usage_add(a.pk, kind="text", at=at(25), messages_failed=1)
    usage.usage_add(b.pk, kind="video", at=at(10.2), messages_sent=1, messages_delivered=1)
    return a, b


@pytest.mark.smoke
def test_counters_sum_per_hour_and_per_day(api: APIClient, two) -> None:
    a, b = two
    assert UsageCounter.objects.filter(session=a, metric="messages_sent", kind="text").get().count
    response = get(api, granularity="hour", **{"from": "2026-01-15T00:00:00Z"}, to="2026-01-17")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["from"], body["to"], body["granularity"]) == (
        "2026-01-15T00:00:00Z",
        "2026-01-17T00:00:00Z",
        "hour",
    )
    results = body["results"]
    assert [r["period"] for r in results] == sorted(r["period"] for r in results)
    hours = {(r["session"], r["period"]): r for r in results}
    assert set(hours) == {
        (str(a.pk), "2026-01-15T10:00:00Z"),
        (str(b.pk), "2026-01-15T10:00:00Z"),
        (str(a.pk), "2026-01-15T13:00:00Z"),
        (str(a.pk), "2026-01-16T01:00:00Z"),
    }  # hours without activity are left out
    ten = hours[(str(a.pk), "2026-01-15T10:00:00Z")]
    assert ten["messages"] == {
        **zero(),
        "sent": 4,
        "delivered": 1,
        "read": 1,
        "by_type": {
            "text": {**zero(), "sent": 3, "delivered": 1, "read": 1},
            "image": {**zero(), "sent": 1},
        },
    }
    assert ten["media_bytes"] == {"sent": 500, "received": 0}
    assert ten["webhooks"] == {"delivered": 0, "failed": 0}
    thirteen = hours[(str(a.pk), "2026-01-15T13:00:00Z")]
    assert thirteen["messages"]["received"] == 1 and thirteen["media_bytes"]["received"] == 70
    assert thirteen["webhooks"] == {"delivered": 4, "failed": 1}

    days = get(api, granularity="day", **{"from": "2026-01-15T00:00:00Z"}, to="2026-01-17")
    by_day = {(r["session"], r["period"]): r for r in days.json()["results"]}
    assert set(by_day) == {
        (str(a.pk), "2026-01-15T00:00:00Z"),
        (str(b.pk), "2026-01-15T00:00:00Z"),
        (str(a.pk), "2026-01-16T00:00:00Z"),
    }
    first = by_day[(str(a.pk), "2026-01-15T00:00:00Z")]
    assert first["messages"] == {
        "sent": 4,
        "delivered": 1,
        "read": 1,
        "failed": 0,
        "received": 1,
        "by_type": {
            "text": {**zero(), "sent": 3, "delivered": 1, "read": 1},
            "image": {**zero(), "sent": 1, "received": 1},
        },
    }
    assert first["media_bytes"] == {"sent": 500, "received": 70}
    assert first["webhooks"] == {"delivered": 4, "failed": 1}
    assert by_day[(str(a.pk), "2026-01-16T00:00:00Z")]["messages"]["failed"] == 1
    assert by_day[(str(b.pk), "2026-01-15T00:00:00Z")]["messages"]["by_type"] == {
        "video": {**zero(), "sent": 1, "delivered": 1}
    }


def test_the_session_filter_and_the_range(api: APIClient, two) -> None:
    a, b = two
    only_b = get(api, session=str(b.pk), **{"from": "2026-01-15T00:00:00Z"}, to="2026-01-17")
    assert [r["session"] for r in only_b.json()["results"]] == [str(b.pk)]
    # from and to are rounded out to whole periods: 10:30 to 10:31 is the hour 10:00 to 11:00
    hour = get(
        api, granularity="hour", **{"from": "2026-01-15T10:30:00Z"}, to=at(10.52).isoformat()
    )
    assert hour.json()["from"] == "2026-01-15T10:00:00Z"
    assert hour.json()["to"] == "2026-01-15T11:00:00Z"
    assert {r["session"] for r in hour.json()["results"]} == {str(a.pk), str(b.pk)}
    # other time zones are the same instants
    later = get(
        api, granularity="hour", **{"from": "2026-01-15T12:00:00-02:00"}, to=at(48).isoformat()
    )
    assert [r["period"] for r in later.json()["results"]] == ["2026-01-16T01:00:00Z"]
    assert get(api, **{"from": "2026-02-01T00:00:00Z"}, to="2026-02-02").json()["results"] == []


def test_the_default_is_the_last_24_hours_by_day(api: APIClient, make_session) -> None:
    session = make_session()
    usage.usage_add(session.pk, kind="text", messages_sent=1)  # now
    body = get(api).json()
    assert body["granularity"] == "day"
    start, end = (datetime.fromisoformat(body[k]) for k in ("from", "to"))
    assert end - start == timedelta(days=2)  # yesterday and today
    assert [r["messages"]["sent"] for r in body["results"]] == [1]


@pytest.mark.smoke
def test_bad_requests_say_what_is_wrong(api: APIClient, make_session) -> None:
    for params, field in [
        ({"granularity": "week"}, "granularity"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01T00:00:00Z"}, "to"),
        ({"session": "not-a-uuid"}, "session"),
    ]:
        response = get(api, **params)
        assert response.status_code == 400, (params, response.json())
        error = response.json()["error"]
        assert error["code"] == "validation_error" and field in error["details"], error
    for params, field in [
        ({"from": "2026-01-15T10:00:00Z", "to": "2026-01-15T10:00:00Z"}, "to"),
        ({"from": "2026-01-16T00:00:00Z", "to": "2026-01-15T00:00:00Z"}, "to"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-01-15T00:00:00Z"}, "to"),  # > 366 days
        (
            {"granularity": "hour", "from": "2026-01-01T00:00:00Z", "to": "2026-02-15T00:00Z"},
            "to",
        ),  # > 31 days of hours
        ({"to": "0001-01-01T05:00:00Z"}, "non_field_errors"),  # from: a day before
        ({"from": "9999-12-31T22:00:00Z", "to": "9999-12-31T23:30:00Z"}, "non_field_errors"),
        ({"from": "0001-01-01T00:30:00+01:00", "to": "2026-01-01T00:00Z"}, "from"),
    ]:
        response = get(api, **params)
        assert response.status_code == 422, (params, response.json())
        error = response.json()["error"]
        assert error["code"] == "validation_error" and field in error["details"], error
    # a whole year of days and 31 days of hours are fine
    assert get(api, **{"from": "2025-01-15T00:00:00Z"}, to="2026-01-15").status_code == 200
    hours = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z", "granularity": "hour"}
    assert get(api, **hours).status_code == 200
    unknown = get(api, session=str(uuid.uuid4()))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert APIClient().get("/api/v1/usage").status_code == 401


@pytest.mark.smoke
def test_the_door_refuses_unknown_figures(make_session) -> None:
    session = make_session()
    with pytest.raises(ValueError, match="unknown usage metrics: messages_snt"):
        usage.usage_add(session.pk, messages_snt=1)
    with pytest.raises(ValueError):
        usage.usage_add(session.pk, messages_sent=-1)
    usage.usage_add(session.pk, messages_sent=0)  # nothing to count: no row
    assert not UsageCounter.objects.exists()


@pytest.mark.smoke
def test_a_rolled_back_transaction_counts_nothing(make_session) -> None:
    session = make_session()
    usage.usage_add(session.pk, kind="text", messages_sent=1)
    with pytest.raises(RuntimeError), transaction.atomic():
        usage.usage_add(session.pk, kind="text", messages_sent=5)
        raise RuntimeError
    assert UsageCounter.objects.get().count == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_increments_lose_nothing(make_session) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers")
    session = make_session()
    threads, rounds = 6, 20
    start = threading.Barrier(threads)

    def add() -> None:
        try:
            start.wait()
            for _ in range(rounds):
                with transaction.atomic():
                    usage.usage_add(session.pk, kind="text", messages_sent=1, messages_read=2)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=add) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    counts = dict(UsageCounter.objects.values_list("metric", "count"))
    assert counts == {"messages_sent": threads * rounds, "messages_read": 2 * threads * rounds}
