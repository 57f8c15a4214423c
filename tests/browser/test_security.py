"""What a stranger on WhatsApp can plant, and the pages' Content-Security-Policies, in a real
browser against a real `serve`."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image

from messaging.models import Message
from sessions_app.services import session_create
from sessions_app.tokens import ws_token_make
from tests.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
PHONE = "+15550123"
WAIT_MS = 30_000
# Each payload leaves a mark in the gateway origin's storage if it ever runs there.
HTML = b"<!doctype html><script>localStorage.setItem('pwned', 'html')</script><p>invoice</p>"
SVG = (
    b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">'
    b"<script>localStorage.setItem('pwned', 'svg')</script><rect width='40' height='40'/></svg>"
)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "green").save(buffer, format="PNG")
    return buffer.getvalue()


def linked_session(gateway):
    session, _ = session_create(external_id="browser-media", engine="sandbox")
    wait_until(
        lambda: gateway.get(f"/api/v1/sessions/{session.pk}")["status"] == "scan_qr",
        30,
        "a QR code",
    )
    gateway.post(f"/api/v1/sandbox/sessions/{session.pk}/scan", {"phone_number": PHONE})
    wait_until(
        lambda: gateway.get(f"/api/v1/sessions/{session.pk}")["status"] == "connected",
        30,
        "the session to connect",
    )
    return session


def receive(gateway, session, kind: str, data: bytes, mime_type: str, filename: str) -> str:
    """A stranger sends the linked number a file; returns its temporary media URL."""
    before = set(Message.objects.filter(session=session).values_list("pk", flat=True))
    media = {"data": base64.b64encode(data).decode(), "mime_type": mime_type, "filename": filename}
    gateway.post(
        f"/api/v1/sandbox/sessions/{session.pk}/receive",
        {"from": "+15550999", "type": kind, "media": media},
    )

    def stored() -> Message | None:
        return (
            Message.objects.filter(session=session, media_pending=False)
            .exclude(pk__in=before)
            .exclude(media="")
            .first()
        )

    message = wait_until(stored, 30, f"the {kind} to be stored")
    url = gateway.get(f"/api/v1/messages/{message.pk}")["media"]["url"]
    assert url.startswith("/media/")  # served by the gateway, on the admin's origin
    return gateway.url + url


def open_media(page, url: str) -> str | None:
    """Open `url` as a victim would (a link in a chat, in the admin); the suggested file name
    when the browser downloads it instead of rendering it."""
    from playwright.sync_api import Error

    with page.expect_download(timeout=WAIT_MS) as download:
        try:
            page.goto(url)
        except Error as exc:  # a download is reported as an aborted navigation
            assert "Download is starting" in str(exc) or "ERR_ABORTED" in str(exc)
    return download.value.suggested_filename


def planted(page, gateway) -> str | None:
    page.goto(f"{gateway.url}/admin/login/")
    return page.evaluate("localStorage.getItem('pwned')")


def test_an_inbound_html_document_or_svg_image_never_runs_on_our_origin(
    gateway_with_local_files, page, screenshot
) -> None:
    gateway = gateway_with_local_files
    session = linked_session(gateway)
    document = receive(gateway, session, "document", HTML, "text/html", "invoice.html")
    image = receive(gateway, session, "image", SVG, "image/svg+xml", "photo.svg")

    assert open_media(page, document) == "invoice.html"
    assert open_media(page, image) == "photo.svg"
    assert planted(page, gateway) is None

    # A real image is still shown inline, as what its bytes are.
    picture = receive(gateway, session, "image", png(), "text/html", "photo.html")
    response = page.goto(picture)
    assert response.status == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["content-security-policy"] == "sandbox; default-src 'none'"
    screenshot("inline-image")


def test_the_admin_the_docs_and_the_link_page_work_under_their_csp(
    gateway, page, csp_violations, django_user_model
) -> None:
    django_user_model.objects.create_user(
        "operator", password="a-long-test-password", is_staff=True, is_superuser=True
    )
    session, _ = session_create(external_id="browser-csp", engine="sandbox")

    page.goto(f"{gateway.url}/link/{session.pk}/?token={ws_token_make(session.pk)}")
    page.wait_for_selector("#qr[src^='data:image/png']", timeout=WAIT_MS)

    page.goto(f"{gateway.url}/admin/login/?next=/admin/sessions_app/session/{session.pk}/change/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "a-long-test-password")
    page.click("input[type=submit]")
    page.wait_for_selector("#gw-live-session[data-state='live']", timeout=WAIT_MS)
    page.wait_for_selector("#gw-qr[src^='data:image/png']", timeout=WAIT_MS)

    page.goto(f"{gateway.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .information-container", timeout=WAIT_MS)
    page.goto(f"{gateway.url}/api/redoc/")
    page.wait_for_selector("redoc h1", timeout=WAIT_MS)
    assert "WhatsApp Gateway API" in page.inner_text("redoc h1")

    # Nothing of the gateway's own is refused; what is refused is from outside (ReDoc's logo from
    # its CDN), which is what the policies are for.
    ours = [v for v in csp_violations if not re.search(r"'https?://(?!127\.0\.0\.1)", v)]
    assert ours == []
