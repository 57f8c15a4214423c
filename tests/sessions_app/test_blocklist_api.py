"""The blocklist endpoints' errors, with no worker running (what they do on both engines is in
tests/system/test_both_engines.py)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_a_session_that_is_not_connected_is_409(api: APIClient, make_session) -> None:
    session = make_session(status="starting")
    url = f"/api/v1/sessions/{session.id}/blocklist"
    for response in (
        api.get(url),
        api.post(url, {"action": "block", "number": "+4915123456789"}, format="json"),
    ):
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "session_not_running"


def test_bad_input_is_refused_before_any_call(api: APIClient, make_session) -> None:
    session = make_session(status="connected")
    url = f"/api/v1/sessions/{session.id}/blocklist"
    response = api.post(url, {"action": "mute", "number": "+4915123456789"}, format="json")
    assert response.status_code == 400
    response = api.post(url, {"action": "block", "number": "hello"}, format="json")
    assert response.status_code == 400
    response = api.post(url, {"action": "block", "number": "+1000000"}, format="json")
    assert response.status_code == 422  # not a possible number
    response = api.post(
        url, {"action": "block", "number": "120363000000000001@g.us"}, format="json"
    )
    assert response.status_code == 422  # groups are left, not blocked
