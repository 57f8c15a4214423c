"""The link page an end user opens: /link/<id>/?token=…"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from sessions_app.tokens import ws_token_make

pytestmark = pytest.mark.django_db


@pytest.mark.smoke
def test_the_page_opens_with_a_valid_token_and_needs_nothing_from_outside(
    client: Client,
    make_session,
) -> None:
    session = make_session(status="scan_qr")
    response = client.get(f"/link/{session.id}/?token={ws_token_make(session.id)}")

    assert response.status_code == 200
    page = response.content.decode()
    assert str(session.id) in page and "/static/sessions_app/link.js" in page
    assert "/ws/sessions/" in (Path(finders.find("sessions_app/link.js")).read_text())
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no CDN, no outside assets
    assert "X-Frame-Options" not in response  # the backend may embed it
    assert response["Referrer-Policy"] == "no-referrer"
    assert 'name="viewport"' in page  # made for phones too


@pytest.mark.smoke
def test_the_page_runs_under_a_strict_csp_that_says_who_may_embed_it(
    client: Client, make_session, settings
) -> None:
    settings.LINK_FRAME_ANCESTORS = ["'self'", "https://app.example.com"]
    session = make_session(status="scan_qr")
    response = client.get(f"/link/{session.id}/?token={ws_token_make(session.id)}")
    policy = dict(
        part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'self' https://app.example.com"
    page = response.content.decode()
    assert not re.search(r"<script>|<style|\son\w+=", page)  # nothing inline to allow


@pytest.mark.parametrize("token", ["", "garbage", "other"])
def test_a_bad_token_gets_an_honest_error_page(client: Client, make_session, token: str) -> None:
    session, other = make_session(), make_session()
    if token == "other":
        token = ws_token_make(other.id)
    response = client.get(f"/link/{session.id}/?token={token}")
    assert response.status_code == 403
    assert "This link is not valid" in response.content.decode()


def test_an_expired_token_is_refused(client: Client, make_session, settings) -> None:
    session = make_session()
    token = ws_token_make(session.id)
    settings.WS_TOKEN_SECONDS = -1
    assert client.get(f"/link/{session.id}/?token={token}").status_code == 403


@pytest.mark.parametrize(
    ("status", "phone", "expected", "code"),
    [
        ("scan_qr", "555", 400, "validation_error"),
        ("connected", "+15550009", 409, "not_linking"),
    ],
)
def test_the_pairing_form_refuses_what_cannot_work(
    client: Client,
    make_session,
    status: str,
    phone: str,
    expected: int,
    code: str,
) -> None:
    session = make_session(status=status)
    response = client.post(
        f"/link/{session.id}/pair-code?token={ws_token_make(session.id)}",
        {"phone_number": phone},
        content_type="application/json",
    )
    assert response.status_code == expected
    assert response.json()["error"]["code"] == code


def test_the_pairing_form_needs_the_token(client: Client, make_session) -> None:
    session = make_session(status="scan_qr")
    response = client.post(
        f"/link/{session.id}/pair-code?token=nope",
        {"phone_number": "+15550009"},
        content_type="application/json",
    )
    assert response.status_code == 403


def test_ws_token_gives_the_link_page_url(api, make_session) -> None:
    session = make_session()
    body = api.post(f"/api/v1/sessions/{session.id}/ws-token").json()
    assert body["link_url"] == f"http://testserver/link/{session.id}/?token={body['token']}"
