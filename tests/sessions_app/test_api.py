from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.models import Session
from workers.models import Worker

pytestmark = pytest.mark.django_db


@pytest.mark.smoke
def test_it_creates_a_session_and_returns_201(api: APIClient) -> None:
    response = api.post(
        "/api/v1/sessions",
        {"external_id": "card-1", "name": "Sales", "engine": "sandbox", "metadata": {"team": "a"}},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert body["external_id"] == "card-1"
    assert body["status"] == "stopped"
    assert body["desired_state"] == "running"
    session = Session.objects.get(pk=body["id"])
    assert (session.name, session.engine, session.metadata) == ("Sales", "sandbox", {"team": "a"})


def test_it_returns_the_existing_session_for_a_known_external_id(api: APIClient) -> None:
    first = api.post(
        "/api/v1/sessions", {"external_id": "card-1", "engine": "sandbox"}, format="json"
    )
    again = api.post(
        "/api/v1/sessions",
        {"external_id": "card-1", "name": "other", "engine": "sandbox"},
        format="json",
    )

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["name"] == ""
    assert Session.objects.count() == 1


def test_it_creates_without_external_id_every_time(api: APIClient) -> None:
    for _ in range(2):
        assert api.post("/api/v1/sessions", {"engine": "sandbox"}, format="json").status_code == 201
    assert Session.objects.count() == 2


def test_start_false_creates_a_stopped_session(api: APIClient) -> None:
    body = api.post("/api/v1/sessions", {"engine": "sandbox", "start": False}, format="json").json()
    assert body["desired_state"] == "stopped"


def test_it_uses_the_default_engine(api: APIClient, settings) -> None:
    settings.DEFAULT_ENGINE = "neonize"
    assert api.post("/api/v1/sessions", {}, format="json").json()["engine"] == "neonize"


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"engine": "baileys"}, "engine", 400),
        ({"external_id": "x" * 201}, "external_id", 400),
        ({"metadata": ["not", "an", "object"]}, "metadata", 400),
        ({"start": "maybe"}, "start", 400),
        ({"start": 0}, "start", 400),  # a boolean is true or false, not 0
        ({"name": {"a": 1}}, "name", 400),
        ({"name": 5}, "name", 400),
        ({"name": "nul\x00byte"}, "name", 400),
        ({"metadata": {"note": "nul\x00byte"}}, "metadata", 400),
        ({"metadata": {"nul\x00key": 1}}, "metadata", 400),
        ({"metadata": {"deep": [{"x": "\ud800"}]}}, "metadata", 400),
        ({"metadata": {"blob": "x" * 20000}}, "metadata", 422),  # well-formed, too much of it
    ],
)
def test_it_rejects_invalid_fields_and_writes_nothing(
    api: APIClient, body: dict, field: str, status: int
) -> None:
    # Encoded by hand: a lone surrogate cannot pass through a UTF-8 encoder.
    payload = json.dumps(body, ensure_ascii=True)
    response = api.post("/api/v1/sessions", payload, content_type="application/json")

    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"]


def test_it_refuses_the_sandbox_engine_when_disabled(api: APIClient, settings) -> None:
    settings.SANDBOX_ENABLED = False
    response = api.post("/api/v1/sessions", {"engine": "sandbox"}, format="json")

    assert response.status_code == 422
    assert "engine" in response.json()["error"]["details"]
    settings.DEFAULT_ENGINE = "sandbox"
    response = api.post("/api/v1/sessions", {}, format="json")
    assert response.status_code == 422
    assert "engine" in response.json()["error"]["details"]
    assert Session.objects.count() == 0


def test_it_rejects_a_body_that_is_not_an_object(api: APIClient) -> None:
    response = api.post("/api/v1/sessions", ["a"], format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_creates_with_one_external_id_make_one_row(api_key: str) -> None:
    barrier = threading.Barrier(20)
    results: list[tuple[int, str]] = []
    lock = threading.Lock()

    def create() -> None:
        try:
            client = Client(HTTP_X_API_KEY=api_key)
            barrier.wait(timeout=30)
            response = client.post(
                "/api/v1/sessions",
                {"external_id": "race", "engine": "sandbox"},
                content_type="application/json",
            )
            with lock:
                results.append((response.status_code, response.json()["id"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 20
    assert sorted(code for code, _ in results) == [200] * 19 + [201]
    assert len({session_id for _, session_id in results}) == 1
    assert Session.objects.filter(external_id="race").count() == 1


@pytest.mark.smoke
def test_it_lists_sessions_newest_first_with_cursor_pagination(
    api: APIClient, make_session
) -> None:
    start = timezone.now()
    for i in range(5):  # distinct timestamps: ties would be ordered by the random id
        make_session(name=f"s{i}")
        Session.objects.filter(name=f"s{i}").update(created_at=start + timedelta(seconds=i))

    first = api.get("/api/v1/sessions?page_size=2").json()
    second = api.get(first["next"]).json()

    assert [s["name"] for s in first["results"]] == ["s4", "s3"]
    assert [s["name"] for s in second["results"]] == ["s2", "s1"]
    assert first["previous"] is None


def test_it_filters_sessions(api: APIClient, make_session) -> None:
    worker = Worker.objects.create(name="w1")
    make_session(name="a", status="connected", worker=worker)
    make_session(name="b", status="scan_qr", external_id="card-b")
    make_session(name="c", status="failed")

    def names(query: str) -> list[str]:
        response = api.get(f"/api/v1/sessions?{query}")
        assert response.status_code == 200, response.json()
        return sorted(s["name"] for s in response.json()["results"])

    assert names("status=connected&status=scan_qr") == ["a", "b"]
    assert names(f"worker={worker.id}") == ["a"]
    assert names("external_id=card-b") == ["b"]


@pytest.mark.parametrize("query", ["status=sleeping", "worker=not-a-uuid"])
def test_it_rejects_bad_filters(api: APIClient, query: str) -> None:
    response = api.get(f"/api/v1/sessions?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"


def test_it_rejects_a_bad_cursor(api: APIClient) -> None:
    response = api.get("/api/v1/sessions?cursor=garbage")
    assert response.status_code == 422
    assert response.json()["error"]["details"] == {"cursor": ["Invalid cursor"]}


@pytest.mark.parametrize(
    "query",
    [
        "page_size=0",
        "page_size=201",
        "page_size=abc",
        "page_size=",
        "worker=",
        "worker=nope",
        "status=bogus",
        "status=connected&status=bogus",
        "external_id=",
    ],
)
def test_wrongly_typed_query_parameters_are_400_not_ignored(api: APIClient, query: str) -> None:
    response = api.get(f"/api/v1/sessions?{query}")
    assert response.status_code == 400, response.json()
    assert query.split("=")[0] in response.json()["error"]["details"]


def test_the_list_takes_a_constant_number_of_queries(
    api: APIClient,
    make_session,
    django_assert_num_queries,
) -> None:
    worker = Worker.objects.create(name="w1")
    for i in range(3):
        make_session(name=f"s{i}", worker=worker)
    with django_assert_num_queries(2):  # the API key, the page
        api.get("/api/v1/sessions")
    for i in range(20):
        make_session(name=f"t{i}", worker=worker)
    with django_assert_num_queries(1):  # the page (the key verified is kept, API_KEY_CACHE_SECONDS)
        assert len(api.get("/api/v1/sessions").json()["results"]) == 23


def test_it_shows_one_session(api: APIClient, make_session) -> None:
    session = make_session(name="one", last_error="boom", last_error_code="qr_timeout")
    body = api.get(f"/api/v1/sessions/{session.id}").json()
    assert body["id"] == str(session.id)
    assert body["last_error"] == {"code": "qr_timeout", "message": "boom"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/sessions/{id}",
        "/api/v1/sessions/{id}/start",
        "/api/v1/sessions/{id}/stop",
        "/api/v1/sessions/not-a-uuid",
    ],
)
def test_it_answers_404_for_unknown_sessions(api: APIClient, path: str) -> None:
    url = path.format(id=uuid.uuid4())
    response = api.post(url) if url.endswith(("start", "stop")) else api.get(url)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("action", "desired", "stamped"),
    [
        ("start", "running", None),
        ("stop", "stopped", None),
        ("restart", "running", "restart_requested_at"),
        ("logout", "stopped", "logout_requested_at"),
    ],
)
def test_actions_set_what_is_wanted_not_the_status(
    api: APIClient,
    make_session,
    action: str,
    desired: str,
    stamped: str | None,
) -> None:
    session = make_session(
        status="connected", desired_state="running" if action != "start" else "stopped"
    )
    if action == "logout":
        session.desired_state = "stopped"
        session.save()

    response = api.post(f"/api/v1/sessions/{session.id}/{action}")

    assert response.status_code == 202
    session.refresh_from_db()
    assert session.desired_state == desired
    assert session.status == "connected"  # the status belongs to the worker
    assert response.json()["desired_state"] == desired
    if stamped:
        assert getattr(session, stamped) is not None
        assert response.json()[stamped] is not None


def test_logout_keeps_a_running_session_running(api: APIClient, make_session) -> None:
    session = make_session(status="connected", desired_state="running")
    api.post(f"/api/v1/sessions/{session.id}/logout")
    session.refresh_from_db()
    assert session.desired_state == "running"
    assert session.logout_requested_at is not None


def test_it_deletes_a_session_nobody_runs_at_once(api: APIClient, make_session) -> None:
    session = make_session()
    response = api.delete(f"/api/v1/sessions/{session.id}")
    assert response.status_code == 204
    assert not Session.objects.filter(pk=session.id).exists()


def test_it_marks_a_running_session_for_deletion_by_its_worker(
    api: APIClient, make_session
) -> None:
    worker = Worker.objects.create(name="w1")
    session = make_session(
        status="connected",
        worker=worker,
        lease_expires_at=timezone.now() + timedelta(seconds=30),
        lease_epoch=3,
    )

    response = api.delete(f"/api/v1/sessions/{session.id}")

    assert response.status_code == 202
    session.refresh_from_db()
    assert session.delete_requested_at is not None
    assert session.logout_requested_at is not None
    assert session.desired_state == "stopped"


@pytest.mark.parametrize("action", ["start", "restart"])
def test_a_session_being_deleted_cannot_be_started_again(
    api: APIClient, make_session, action: str
) -> None:
    session = make_session(desired_state="stopped", delete_requested_at=timezone.now())
    response = api.post(f"/api/v1/sessions/{session.id}/{action}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "session_deleting"
    session.refresh_from_db()
    assert session.desired_state == "stopped"
    assert session.restart_requested_at is None


def test_deleting_removes_every_snapshot_of_the_session(
    api: APIClient, make_session, django_capture_on_commit_callbacks
) -> None:
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    session, other = make_session(), make_session()
    snapshots = storages["sessions"]
    names = [
        f"{session.id}/latest.json",
        f"{session.id}/epoch-1/0001.bin",
        f"{session.id}/epoch-2/0002.bin",
        f"{other.id}/epoch-1/0001.bin",
    ]
    for name in names:
        snapshots.save(name, ContentFile(b"sealed"))

    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/sessions/{session.id}").status_code == 204

    assert [snapshots.exists(name) for name in names] == [False, False, False, True]


def test_it_deletes_at_once_when_the_lease_has_expired(api: APIClient, make_session) -> None:
    worker = Worker.objects.create(name="w1")
    session = make_session(worker=worker, lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert api.delete(f"/api/v1/sessions/{session.id}").status_code == 204
    assert not Session.objects.filter(pk=session.id).exists()
