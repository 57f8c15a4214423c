from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from workers.models import Worker

pytestmark = pytest.mark.django_db


def test_it_lists_workers_with_their_session_counts(api: APIClient, make_session) -> None:
    busy = Worker.objects.create(name="busy", hostname="h1", pid=10, engines=["sandbox"])
    Worker.objects.create(name="idle", status="stopped")
    make_session(worker=busy)
    make_session(worker=busy)

    body = api.get("/api/v1/workers").json()

    counts = {w["name"]: w["session_count"] for w in body["results"]}
    assert counts == {"busy": 2, "idle": 0}
    assert api.get("/api/v1/workers?status=stopped").json()["results"][0]["name"] == "idle"


def test_it_shows_one_worker(api: APIClient) -> None:
    worker = Worker.objects.create(name="w", hostname="h", pid=42, capacity=7)
    body = api.get(f"/api/v1/workers/{worker.id}").json()
    assert (body["name"], body["pid"], body["capacity"], body["session_count"]) == ("w", 42, 7, 0)


def test_it_answers_404_for_an_unknown_worker(api: APIClient) -> None:
    response = api.get(f"/api/v1/workers/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_it_rejects_a_bad_status_filter(api: APIClient) -> None:
    response = api.get("/api/v1/workers?status=sleepy")
    assert response.status_code == 400
    assert "status" in response.json()["error"]["details"]


def test_the_worker_list_takes_a_constant_number_of_queries(
    api: APIClient,
    django_assert_num_queries,
) -> None:
    for i in range(5):
        Worker.objects.create(name=f"w{i}")
    with django_assert_num_queries(2):
        assert len(api.get("/api/v1/workers").json()["results"]) == 5


def test_expired_finds_workers_past_their_lease_by_the_database_clock(settings) -> None:
    settings.WORKER_LEASE_SECONDS = 30
    alive = Worker.objects.create(name="alive")
    late = Worker.objects.create(name="late")
    gone = Worker.objects.create(name="gone", status="stopped")
    from datetime import timedelta

    from django.db.models.functions import Now

    Worker.objects.filter(pk__in=[late.pk, gone.pk]).update(
        last_heartbeat_at=Now() - timedelta(seconds=31)
    )

    assert list(Worker.objects.expired()) == [late]
    assert alive not in Worker.objects.expired()
