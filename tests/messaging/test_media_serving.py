"""Stored media are served so that nothing in them can run on the gateway's origin: inline only
for types that cannot script, told by their bytes; everything else a download of
application/octet-stream; a sandboxing CSP on every media response."""

from __future__ import annotations

import io

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from messaging.models import Message
from messaging.services import media

pytestmark = pytest.mark.django_db
TO = "+4915123456789"
HTML = b"<!doctype html><html><script>localStorage.setItem('pwned', '1')</script></html>"
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b"<script>localStorage.setItem('pwned', 'svg')</script></svg>"
)


def image(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (image("PNG"), "image/png"),
        (image("JPEG"), "image/jpeg"),
        (image("GIF"), "image/gif"),
        (image("WEBP"), "image/webp"),
        (b"OggS\x00\x02" + bytes(60), "audio/ogg"),
        (b"\x00\x00\x00\x18ftypmp42" + bytes(40), "video/mp4"),
    ],
)
def test_types_that_cannot_script_are_served_inline(data: bytes, content_type: str) -> None:
    assert media.served_as(data) == content_type
    assert media.response_headers(content_type, "a.bin") == {
        "Content-Type": content_type,
        "Content-Disposition": 'inline; filename="a.bin"',
    }


@pytest.mark.parametrize(
    "data",
    [HTML, SVG, b"%PDF-1.7\n", b"plain words", image("BMP"), image("TIFF"), b""],
    ids=["html", "svg", "pdf", "text", "bmp", "tiff", "empty"],
)
def test_everything_else_is_a_download_of_octet_stream(data: bytes) -> None:
    assert media.served_as(data) == "application/octet-stream"
    for stored in (media.served_as(data), "", "text/html", "image/svg+xml"):
        assert media.response_headers(stored, "x.html") == {
            "Content-Type": "application/octet-stream",
            "Content-Disposition": 'attachment; filename="x.html"',
        }


@pytest.fixture
def session(make_session):
    return make_session(status="connected", desired_state="running", jid="15550001@s.whatsapp.net")


def served(client, api: APIClient, message_id, settings) -> httpx.Headers | dict:
    """The headers a browser gets for the message's temporary media URL."""
    media_url = api.get(f"/api/v1/messages/{message_id}").json()["media"]["url"]
    if settings.S3_BUCKET:  # a presigned URL: S3 answers with the headers stored with the object
        response = httpx.get(media_url)
        assert response.status_code == 200
        return response.headers
    response = client.get(media_url[media_url.index("/media/") :])
    assert response.status_code == 200
    return response.headers


def inbound(session, kind: str, data: bytes, declared: str, name: str) -> Message:
    """A message a stranger sent, its media stored as the runtime stores it."""
    message = Message.objects.create(
        session=session, direction="in", chat="1@s.whatsapp.net", type=kind, status="received"
    )
    stored = media.store(
        session_id=session.pk,
        message_id=message.pk,
        kind=kind,
        content=data,
        mime_type=declared,
        filename=name,
    )
    Message.objects.filter(pk=message.pk).update(**stored.model_fields())
    return message


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("name", "data", "declared"),
    [
        ("x.html", HTML, "text/html"),
        ("x.html", HTML, "application/octet-stream"),
        ("report.svg", SVG, "image/svg+xml"),
    ],
)
def test_an_uploaded_document_that_is_html_or_svg_downloads(
    api: APIClient, client, session, settings, name: str, data: bytes, declared: str
) -> None:
    upload = SimpleUploadedFile(name, data, declared)
    response = api.post(
        f"/api/v1/sessions/{session.id}/messages",
        {"to": TO, "type": "document", "file": upload},
        format="multipart",
    )
    assert response.status_code == 202, response.json()
    headers = served(client, api, response.json()["id"], settings)
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"].startswith("attachment;")


@pytest.mark.smoke
@pytest.mark.parametrize(
    ("kind", "data", "declared", "name"),
    [
        ("document", HTML, "text/html", "invoice.html"),
        ("image", SVG, "image/svg+xml", "photo.svg"),
        ("image", HTML, "image/png", "photo.png"),  # a lie about the type changes nothing
    ],
)
def test_inbound_media_from_a_stranger_never_render_on_our_origin(
    api: APIClient, client, session, settings, kind, data, declared, name
) -> None:
    message = inbound(session, kind, data, declared, name)
    headers = served(client, api, message.pk, settings)
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"] == f'attachment; filename="{name}"'


@pytest.mark.smoke
def test_an_image_is_shown_inline_as_what_its_bytes_are(
    api: APIClient, client, session, settings
) -> None:
    message = inbound(session, "image", image("PNG"), "text/html", "a.html")  # what it claimed
    headers = served(client, api, message.pk, settings)
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"].startswith("inline")


@pytest.mark.smoke
def test_the_gateways_media_responses_are_sandboxed(
    api: APIClient, client, session, settings
) -> None:
    """`/media/<token>` (the embedded mode's temporary URLs) also sends a sandboxing CSP."""
    settings.S3_BUCKET = ""  # the gateway serves the file itself, from whatever storage holds it
    message = inbound(session, "document", HTML, "text/html", "x.html")
    media_url = api.get(f"/api/v1/messages/{message.pk}").json()["media"]["url"]
    response = client.get(media_url[media_url.index("/media/") :])
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="x.html"'
    assert response["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == HTML
