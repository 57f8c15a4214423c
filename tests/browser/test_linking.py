"""A person links a phone from the link page, and an operator watches it in the admin, in a real
browser against a real server process (the sandbox plays WhatsApp)."""

from __future__ import annotations

import base64

import pytest
import zxingcpp
from PIL import Image

from sessions_app.services import qr, session_create
from sessions_app.tokens import ws_token_make

pytestmark = pytest.mark.django_db(transaction=True)
PHONE = "+15550123"
WAIT_MS = 30_000


def qr_text(data_url: str) -> str:
    """What a phone's camera reads from the QR image the page shows."""
    import io

    png = base64.b64decode(data_url.removeprefix("data:image/png;base64,"))
    return zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))[0].text


def test_a_person_links_a_phone_on_the_link_page(gateway, page, screenshot) -> None:
    session, _ = session_create(external_id="browser-link", engine="sandbox")
    page.goto(f"{gateway.url}/link/{session.pk}/?token={ws_token_make(session.pk)}")

    page.wait_for_selector("#qr[src^='data:image/png']", timeout=WAIT_MS)
    first = page.get_attribute("#qr", "src")
    assert qr_text(first) == qr.code_get(session_id=session.pk, kind="qr")["code"]
    assert "changes in" in page.inner_text("#countdown")
    screenshot("qr")

    # The code rotates; the page follows without a reload.
    page.wait_for_function(
        "first => document.getElementById('qr').src !== first", arg=first, timeout=WAIT_MS
    )
    assert qr_text(page.get_attribute("#qr", "src")) != qr_text(first)

    gateway.post(f"/api/v1/sandbox/sessions/{session.pk}/scan", {"phone_number": PHONE})
    page.wait_for_selector("#linked:not([hidden])", timeout=WAIT_MS)
    assert page.inner_text("#number") == PHONE
    assert page.is_hidden("#scan")
    screenshot("linked")


def test_a_person_links_with_a_pairing_code_instead(gateway, page, screenshot) -> None:
    session, _ = session_create(external_id="browser-pair", engine="sandbox")
    page.goto(f"{gateway.url}/link/{session.pk}/?token={ws_token_make(session.pk)}")
    page.wait_for_selector("#qr[src^='data:image/png']", timeout=WAIT_MS)

    page.click("#use-phone")
    page.fill("#phone", "555")
    page.click("#pair-form button")
    page.wait_for_function(
        "() => document.getElementById('pair-error').textContent", timeout=WAIT_MS
    )
    assert "country code" in page.inner_text("#pair-error")

    page.fill("#phone", PHONE)
    page.click("#pair-form button")
    page.wait_for_selector("#pair-result:not([hidden])", timeout=WAIT_MS)
    assert page.inner_text("#code") == qr.code_get(session_id=session.pk, kind="pair_code")["code"]
    screenshot("pair-code")

    gateway.post(f"/api/v1/sandbox/sessions/{session.pk}/scan", {"phone_number": PHONE})
    page.wait_for_selector("#linked:not([hidden])", timeout=WAIT_MS)
    assert page.inner_text("#number") == PHONE


def test_an_expired_link_says_so(gateway, page, settings) -> None:
    session, _ = session_create(external_id="browser-bad", engine="sandbox", start=False)
    page.goto(f"{gateway.url}/link/{session.pk}/?token=not-a-token")
    assert "not valid" in page.inner_text("body")


def test_an_operator_watches_and_links_a_session_in_the_admin(
    gateway, page, screenshot, django_user_model
) -> None:
    django_user_model.objects.create_user(
        "operator", password="a-long-test-password", is_staff=True, is_superuser=True
    )
    session, _ = session_create(external_id="browser-admin", engine="sandbox", start=False)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{gateway.url}/admin/login/?next=/admin/sessions_app/session/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "a-long-test-password")
    page.click("input[type=submit]")
    badge = f"[data-session-status='{session.pk}']"
    page.wait_for_selector(f"{badge}[data-status='stopped']", timeout=WAIT_MS)
    page.wait_for_selector("[data-live-sessions][data-state='live']", timeout=WAIT_MS)

    # Started elsewhere (here: the admin action), the badge follows without a reload.
    page.check(f"input[name=_selected_action][value='{session.pk}']")
    page.select_option("select[name=action]", "start_sessions")
    page.click("button[name=index]")
    page.wait_for_selector(f"{badge}[data-status='scan_qr']", timeout=WAIT_MS)
    page.evaluate("window.gwMarker = 'no reload'")
    gateway.post(f"/api/v1/sandbox/sessions/{session.pk}/scan", {"phone_number": PHONE})
    page.wait_for_selector(f"{badge}[data-status='connected']", timeout=WAIT_MS)
    phone = page.locator(f"[data-session-phone='{session.pk}']")
    phone.filter(has_text=PHONE).wait_for(timeout=WAIT_MS)
    assert page.evaluate("window.gwMarker") == "no reload"
    screenshot("list")

    # The session page: logged out from the phone, it shows a new QR; a pairing code links it.
    page.goto(f"{gateway.url}/admin/sessions_app/session/{session.pk}/change/")
    page.wait_for_selector("#gw-live-session[data-state='live']", timeout=WAIT_MS)
    gateway.post(f"/api/v1/sandbox/sessions/{session.pk}/logout", {})
    page.wait_for_selector("#gw-qr[src^='data:image/png']", timeout=WAIT_MS)
    assert (
        qr_text(page.get_attribute("#gw-qr", "src"))
        == (qr.code_get(session_id=session.pk, kind="qr")["code"])
    )
    page.fill("#gw-phone", PHONE)
    page.click("#gw-pair-button")
    page.wait_for_function(
        "() => document.getElementById('gw-pair-code').textContent", timeout=WAIT_MS
    )
    screenshot("session")
    gateway.post(f"/api/v1/sandbox/sessions/{session.pk}/scan", {"phone_number": PHONE})
    page.wait_for_selector(f"{badge}[data-status='connected']", timeout=WAIT_MS)
    assert page.is_hidden("#gw-linking")
    timeline = page.inner_text("#gw-timeline tbody")
    assert "logged_out" in timeline and "connected" in timeline
