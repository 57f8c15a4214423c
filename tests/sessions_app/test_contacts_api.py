"""The contact, @lid and profile endpoints' errors, with no worker running (what they do on both
engines is in tests/system/test_both_engines.py)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_a_session_that_is_not_connected_is_409(api: APIClient, make_session) -> None:
    session = make_session(status="stopped")
    base = f"/api/v1/sessions/{session.id}"
    for response in (
        api.get(f"{base}/contacts/+4915123456789"),
        api.get(f"{base}/lids/123@lid"),
        api.get(f"{base}/profile"),
        api.patch(f"{base}/profile", {"about": "x"}, format="json"),
    ):
        assert response.status_code == 409, response.content
        assert response.json()["error"]["code"] == "session_not_running"


def test_bad_input_is_refused_before_any_call(api: APIClient, make_session) -> None:
    session = make_session(status="connected")
    base = f"/api/v1/sessions/{session.id}"
    for method, url, body, expected in [
        (api.get, f"{base}/contacts/hello", None, 422),
        (api.get, f"{base}/contacts/120363000000000001@g.us", None, 422),
        (api.get, f"{base}/lids/+4915123456789", None, 422),
        (api.patch, f"{base}/profile", {}, 422),
        (api.patch, f"{base}/profile", {"name": "x" * 26}, 400),
        (api.patch, f"{base}/profile", {"about": "x" * 140}, 400),
    ]:
        response = method(url, body, format="json") if body is not None else method(url)
        assert response.status_code == expected, (url, body, response.content)


def test_contact_lookups_are_rate_limited_per_session(
    api: APIClient, make_session, settings
) -> None:
    settings.CONTACT_LOOKUP_RATE, settings.WORKER_CALL_SECONDS = "1/min", 1
    session = make_session(status="stopped")
    url = f"/api/v1/sessions/{session.id}/contacts/+4915123456789"
    assert [api.get(url).status_code for _ in range(2)] == [409, 409]  # refused: not counted
    session.status = "connected"
    session.save(update_fields=["status"])
    assert api.get(url).status_code == 503  # counted; no worker answered
    response = api.get(url)
    assert response.status_code == 429 and response.json()["error"]["code"] == "rate_limited"
