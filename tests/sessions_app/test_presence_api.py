"""The presence endpoints' errors, with no worker running (what they do on both engines is in
tests/system/test_both_engines.py)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
TO = "+4915123456789"


@pytest.fixture
def connected(make_session):
    return make_session(status="connected", jid="15550001@s.whatsapp.net")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("presence", {"state": "available"}),
        (f"chats/{TO}/typing", {"state": "typing"}),
        (f"presence/{TO}/subscribe", None),
    ],
)
def test_a_session_that_is_not_connected_is_409(api: APIClient, make_session, path, body) -> None:
    session = make_session(status="reconnecting")
    response = api.post(f"/api/v1/sessions/{session.id}/{path}", body, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "session_not_running"


def test_no_worker_answering_is_503(api: APIClient, connected, settings) -> None:
    settings.WORKER_CALL_SECONDS = 0.05
    response = api.post(
        f"/api/v1/sessions/{connected.id}/presence", {"state": "available"}, format="json"
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "session_unavailable"


def test_unknown_states_and_chats_are_refused_before_any_call(api: APIClient, connected) -> None:
    base = f"/api/v1/sessions/{connected.id}"
    response = api.post(f"{base}/presence", {"state": "busy"}, format="json")
    assert response.status_code == 400  # not in the schema
    response = api.post(f"{base}/chats/{TO}/typing", {"state": "dancing"}, format="json")
    assert response.status_code == 400
    for chat in ("hello", "+1000", "1@example.com"):  # not a number, not possible, not a JID
        response = api.post(f"{base}/chats/{chat}/typing", {"state": "typing"}, format="json")
        assert response.status_code == 422, chat
        assert response.json()["error"]["code"] == "validation_error"
    response = api.post(f"{base}/presence/hello/subscribe")
    assert response.status_code == 422
    response = api.post(f"{base}/presence/120363000000000001@g.us/subscribe")
    assert response.status_code == 422  # a group has no online status


def test_an_unknown_session_is_404(api: APIClient) -> None:
    response = api.post(
        "/api/v1/sessions/00000000-0000-0000-0000-000000000000/presence",
        {"state": "available"},
        format="json",
    )
    assert response.status_code == 404
