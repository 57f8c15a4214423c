"""GET /sessions/{id}/messages and GET /messages/{id}."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from messaging.models import Message

pytestmark = pytest.mark.django_db
CHAT = "4915123456789@s.whatsapp.net"


@pytest.fixture
def history(make_session):
    session = make_session(status="connected")
    for n in range(12):
        Message.objects.create(
            session=session,
            direction="out" if n % 2 else "in",
            chat=CHAT if n % 3 else "491510000000@s.whatsapp.net",
            type="text",
            text=f"m{n}",
            status="read" if n % 2 else "received",
        )
    return session


def test_history_newest_first_with_filters(api: APIClient, history) -> None:
    base = f"/api/v1/sessions/{history.id}/messages"
    everything = api.get(base).json()["results"]
    assert [m["text"] for m in everything] == [f"m{n}" for n in reversed(range(12))]
    assert {m["direction"] for m in api.get(base + "?direction=in").json()["results"]} == {"in"}
    assert {m["status"] for m in api.get(base + "?status=read").json()["results"]} == {"read"}
    by_chat = api.get(base + "?chat=%2B4915123456789").json()["results"]  # E.164 → JID
    assert by_chat and {m["chat"] for m in by_chat} == {CHAT}
    later = (timezone.now() + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert api.get(base, {"since": later}).json()["results"] == []
    assert api.get(base + "?status=nonsense").status_code == 400


def test_history_pages_in_a_constant_number_of_queries(api: APIClient, history) -> None:
    base = f"/api/v1/sessions/{history.id}/messages"
    api.get(base)  # the key verified (and kept: API_KEY_CACHE_SECONDS) before counting
    counts = []
    for size in (2, 12):
        with CaptureQueriesContext(connection) as queries:
            assert api.get(base, {"page_size": size}).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]
    page = api.get(base, {"page_size": 5}).json()
    assert len(page["results"]) == 5 and page["next"]
    rest = api.get(page["next"]).json()["results"]
    assert {m["id"] for m in rest}.isdisjoint({m["id"] for m in page["results"]})


def test_a_message_with_its_temporary_media_url(api: APIClient, make_session) -> None:
    session = make_session()
    message = Message.objects.create(
        session=session,
        direction="in",
        chat=CHAT,
        type="image",
        status="received",
        media_mime_type="image/png",
        media_size=3,
        media_filename="x.png",
    )
    message.media.save("x.png", ContentFile(b"abc"))
    body = api.get(f"/api/v1/messages/{message.id}").json()
    assert body["media"]["mime_type"] == "image/png" and body["media"]["url"]
    listed = api.get(f"/api/v1/sessions/{session.id}/messages").json()["results"][0]
    assert "url" not in listed["media"]  # only the detail signs URLs
    assert api.get("/api/v1/messages/00000000-0000-0000-0000-000000000000").status_code == 404


@pytest.mark.smoke
def test_the_temporary_media_url_serves_the_file_and_only_with_its_signature(
    api: APIClient, client, make_session, settings
) -> None:
    """Presigned by S3 in production; signed and served by the gateway in the embedded mode."""
    import httpx

    session = make_session()
    message = Message.objects.create(
        session=session, direction="in", chat=CHAT, type="document", status="received"
    )
    message.media.save("doc.txt", ContentFile(b"secret"))
    media_url = api.get(f"/api/v1/messages/{message.id}").json()["media"]["url"]
    if settings.S3_BUCKET:
        assert httpx.get(media_url).content == b"secret"
        assert httpx.get(media_url.replace("Signature=", "Signature=0")).status_code == 403
    else:
        path = media_url[media_url.index("/media/") :]
        assert b"".join(client.get(path).streaming_content) == b"secret"
        assert client.get(path[:-3] + "xyz").status_code == 404
