"""The groups endpoints without a worker: the cache, validation, rate limits and pictures are
judged before any call reaches a session (what they do on both engines is in
tests/system/test_both_engines.py)."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from rest_framework.test import APIClient

from groups import services
from groups.models import Group

pytestmark = pytest.mark.django_db
GROUP = "120363000000000001@g.us"


def test_a_stopped_session_serves_its_cache_and_refuses_calls(api: APIClient, make_session) -> None:
    session = make_session(status="stopped")
    base = f"/api/v1/sessions/{session.id}/groups"
    assert api.get(base).json() == {"groups": [], "synced_at": None}
    services.groups_store(
        session_id=session.pk,
        groups=[
            {
                "jid": GROUP,
                "subject": "Team",
                "participants": [
                    {"jid": "1@s.whatsapp.net", "phone_number": "+1", "role": "admin"}
                ],
            }
        ],
        whole=True,
    )
    listed = api.get(base).json()
    assert [(g["jid"], g["member_count"]) for g in listed["groups"]] == [(GROUP, 1)]
    assert listed["synced_at"] is not None
    assert api.get(f"{base}/{GROUP}").json()["participants"][0]["role"] == "admin"
    for response in (
        api.get(f"{base}?refresh=true"),
        api.post(base, {"subject": "x", "participants": ["+4915123456789"]}, format="json"),
        api.patch(f"{base}/{GROUP}", {"subject": "y"}, format="json"),
        api.get(f"{base}/{GROUP}/invite-link"),
        api.post(f"{base}/{GROUP}/leave"),
        api.post(f"{base}/join", {"invite_link": "https://chat.whatsapp.com/AbCdEfGhIjK"}, "json"),
    ):
        assert response.status_code == 409, response.content
        assert response.json()["error"]["code"] == "session_not_running"
    assert Group.objects.get(jid=GROUP).subject == "Team"  # nothing changed


def test_bad_input_is_refused_before_any_call(api: APIClient, make_session) -> None:
    session = make_session(status="connected")
    base = f"/api/v1/sessions/{session.id}/groups"
    cases = [
        (api.post, base, {"subject": "", "participants": []}, 400),
        (api.post, base, {"subject": "x" * 101, "participants": []}, 400),
        (api.post, base, {"subject": "x", "participants": ["hello"]}, 400),
        (api.post, base, {"subject": "x", "participants": ["+1000000"]}, 422),
        (api.post, base, {"subject": "x", "participants": [GROUP]}, 422),
        (api.patch, f"{base}/{GROUP}", {}, 422),
        (api.patch, f"{base}/not-a-group", {"subject": "y"}, 422),
        (api.post, f"{base}/{GROUP}/participants", {"action": "kick", "participants": ["+1"]}, 400),
        (api.post, f"{base}/{GROUP}/participants", {"action": "add", "participants": []}, 422),
        (api.post, f"{base}/join", {"invite_link": "https://example.com/x"}, 400),
    ]
    for method, url, body, expected in cases:
        response = method(url, body, format="json")
        assert response.status_code == expected, (url, body, response.content)
        assert "error" in response.json()


def picture(fmt: str, size=(900, 600)) -> io.BytesIO:
    out = io.BytesIO()
    Image.new("RGB", size, "red").save(out, fmt)
    out.seek(0)
    out.name = f"p.{fmt.lower()}"
    return out


def test_pictures_must_be_jpeg_or_png_and_are_made_square(
    api: APIClient, make_session, monkeypatch
) -> None:
    session = make_session(status="connected")
    url = f"/api/v1/sessions/{session.id}/groups/{GROUP}/picture"
    for upload in (picture("GIF"), io.BytesIO(b"<script>alert(1)</script>")):
        upload.name = "p.gif"
        response = api.put(url, {"file": upload}, format="multipart")
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_image"
    sent = {}

    def call(session, method, **arguments):
        sent.update(method=method, **arguments)
        return "pic-1"

    monkeypatch.setattr("groups.views.session_call", call)
    response = api.put(url, {"file": picture("PNG")}, format="multipart")
    assert response.json() == {"picture_id": "pic-1"}
    import base64

    with Image.open(io.BytesIO(base64.b64decode(sent["jpeg_base64"]))) as made:
        assert (made.format, made.size) == ("JPEG", (600, 600))


def test_group_creation_is_rate_limited_per_session(api: APIClient, make_session, settings) -> None:
    settings.GROUP_CREATE_RATE, settings.WORKER_CALL_SECONDS = "1/h", 1
    session = make_session(status="connected")
    base = f"/api/v1/sessions/{session.id}/groups"
    body = {"subject": "x", "participants": ["+4915123456789"]}
    first = api.post(base, body, format="json")
    assert first.status_code == 503  # counted; no worker answered
    second = api.post(base, body, format="json")
    assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limited"
    assert int(second["Retry-After"]) > 0
