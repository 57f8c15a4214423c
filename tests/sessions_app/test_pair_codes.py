"""Pairing codes are limited per session and per number, wherever they are asked for."""

from __future__ import annotations

import pytest
from django.test import Client

from sessions_app.tokens import ws_token_make

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _quick(settings) -> None:
    # No worker runs these sessions: each allowed request ends 503 after this wait.
    settings.WORKER_CALL_SECONDS = 0.05
    settings.PAIR_CODE_RATE = "2/h"


def ask(api, session, number: str):
    return api.post(
        f"/api/v1/sessions/{session.id}/pair-code", {"phone_number": number}, format="json"
    )


def test_past_the_rate_a_session_gets_429_with_retry_after(api, make_session) -> None:
    session = make_session(status="scan_qr")
    assert [ask(api, session, "+15550009").status_code for _ in range(2)] == [503, 503]
    refused = ask(api, session, "+15550009")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused["Retry-After"]) <= 3600
    # The session's own limit: another number does not help…
    assert ask(api, session, "+15550010").status_code == 429
    # …and the number's: another session cannot ask for it either.
    assert ask(api, make_session(status="scan_qr"), "+15550009").status_code == 429
    assert ask(api, make_session(status="scan_qr"), "+15550011").status_code == 503


def test_requests_that_cannot_work_do_not_count(api, make_session) -> None:
    session = make_session(status="connected")
    for _ in range(3):
        assert ask(api, session, "+15550009").status_code == 409
    linking = make_session(status="scan_qr")
    assert ask(api, linking, "+15550009").status_code == 503


def test_the_link_page_and_the_admin_share_the_limit(
    api, make_session, staff_user, client: Client
) -> None:
    session = make_session(status="scan_qr")
    link = f"/link/{session.id}/pair-code?token={ws_token_make(session.id)}"
    body = {"phone_number": "+15550009"}
    assert client.post(link, body, content_type="application/json").status_code == 503
    assert ask(api, session, "+15550009").status_code == 503
    refused = client.post(link, body, content_type="application/json")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert int(refused["Retry-After"]) > 0
    client.force_login(staff_user)
    admin = f"/admin/sessions_app/session/{session.id}/pair-code/"
    assert client.post(admin, body, content_type="application/json").status_code == 429


def test_a_cache_that_is_down_is_a_503_not_a_500(
    api, make_session, client: Client, settings
) -> None:
    """The code comes back through the cache: while it is down, the API and the link page say so
    (they raised the cache's ConnectionError: a 500)."""
    import copy

    assert settings.REDIS_URL, "this test needs the Redis configuration of `make test`"
    session = make_session(status="scan_qr")
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = "redis://127.0.0.1:1/0"
    settings.CACHES = caches
    link = f"/link/{session.id}/pair-code?token={ws_token_make(session.id)}"
    for response in (
        ask(api, session, "+15550009"),
        client.post(link, {"phone_number": "+15550009"}, content_type="application/json"),
    ):
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "cache_unavailable"
