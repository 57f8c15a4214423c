from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_api_key.models import APIKey

from sessions_app.models import Session
from workers.models import Worker

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "sessions_app/session",
    "sessions_app/sessionevent",
    "workers/worker",
    "messaging/message",
    "gateway/webhookdelivery",
    "rest_framework_api_key/apikey",
]


@pytest.fixture
def operator(client: Client, staff_user) -> Client:
    client.force_login(staff_user)
    return client


@pytest.mark.smoke
@pytest.mark.parametrize("changelist", CHANGELISTS)
def test_every_admin_list_opens(operator: Client, make_session, changelist: str) -> None:
    make_session(worker=Worker.objects.create(name="w"))
    response = operator.get(f"/admin/{changelist}/")
    assert response.status_code == 200


def test_the_session_page_shows_its_timeline(operator: Client, make_session) -> None:
    session = make_session()
    session.events.create(from_status="stopped", to_status="starting", reason="claimed")
    response = operator.get(f"/admin/sessions_app/session/{session.id}/change/")
    assert response.status_code == 200
    assert "claimed" in response.content.decode()


def test_an_api_key_made_in_the_admin_is_shown_once_and_works(operator: Client) -> None:
    response = operator.post(
        "/admin/rest_framework_api_key/apikey/add/", {"name": "backend"}, follow=True
    )
    assert response.status_code == 200
    page = response.content.decode()
    key = re.search(r"The API key for [^:]+: ([A-Za-z0-9]+\.[A-Za-z0-9]+)", page)
    assert key, page[:2000]
    assert key.group(1) not in APIKey.objects.get().hashed_key

    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key.group(1))
    assert client.get("/api/v1/sessions").status_code == 200
    assert (
        key.group(1)
        not in operator.get(
            f"/admin/rest_framework_api_key/apikey/{APIKey.objects.get().pk}/change/"
        ).content.decode()
    )


def test_admin_actions_call_the_services(operator: Client, make_session) -> None:
    sessions = [make_session(desired_state="running") for _ in range(2)]
    response = operator.post(
        "/admin/sessions_app/session/",
        {"action": "stop_sessions", "_selected_action": [str(s.id) for s in sessions]},
    )
    assert response.status_code == 302
    assert set(Session.objects.values_list("desired_state", flat=True)) == {"stopped"}


def test_the_admin_needs_a_login(client: Client) -> None:
    response = client.get("/admin/sessions_app/session/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_deleting_in_the_admin_goes_through_the_service(operator: Client, make_session) -> None:
    from datetime import timedelta

    from django.utils import timezone

    running = make_session(
        worker=Worker.objects.create(name="w"),
        lease_expires_at=timezone.now() + timedelta(seconds=30),
    )
    idle = make_session()
    response = operator.post(
        "/admin/sessions_app/session/",
        {
            "action": "delete_selected",
            "_selected_action": [str(running.id), str(idle.id)],
            "post": "yes",
        },
    )
    assert response.status_code == 302
    assert list(Session.objects.all()) == [running]
    running.refresh_from_db()
    assert running.delete_requested_at is not None
