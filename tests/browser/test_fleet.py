"""The admin home's fleet at a glance, in a real browser against a real `serve`: sessions by status,
the worker's load, messages a minute, the webhook backlog and an open circuit, all live."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from gateway.outbox import endpoints
from messaging.models import Message
from sessions_app.events import outbox_event
from sessions_app.models import Session
from sessions_app.services import session_create
from tests.browser.conftest import Gateway, start_gateway
from tests.processes import free_port

pytestmark = pytest.mark.django_db(transaction=True)
WAIT_MS = 30_000


@pytest.fixture
def gateway(tmp_path: Path, test_database_url: str, transactional_db) -> Iterator[Gateway]:
    # Webhooks to this machine, a breaker that opens at the first failure.
    yield from start_gateway(
        tmp_path,
        test_database_url,
        WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        WEBHOOK_BREAKER_FAILURES="1",
    )


def messages(session: Session, direction: str, status: str, count: int, minutes_ago: int) -> None:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    for _ in range(count):
        message = Message.objects.create(
            session=session, direction=direction, chat="15550002@s.whatsapp.net", status=status
        )
        Message.objects.filter(pk=message.pk).update(created_at=at)


def count_of(page, status: str) -> int:
    return int(
        page.get_attribute(f"[data-chart=sessions] tr[data-status={status}] td.gw-n", "data-count")
    )


def test_the_admin_home_shows_the_fleet_live(
    gateway, page, django_user_model, csp_violations, screenshot
) -> None:
    django_user_model.objects.create_user(
        "operator", password="a-long-test-password", is_staff=True, is_superuser=True
    )
    stopped = [
        session_create(external_id=f"fleet-{n}", engine="sandbox", start=False)[0] for n in range(2)
    ]
    session_create(external_id="fleet-running", engine="sandbox")  # the worker claims it
    messages(stopped[0], "out", "delivered", 3, minutes_ago=5)
    messages(stopped[0], "out", "failed", 1, minutes_ago=2)
    messages(stopped[0], "in", "received", 2, minutes_ago=0)
    messages(stopped[0], "out", "sent", 4, minutes_ago=90)  # before the hour: not shown
    # A webhook endpoint nobody listens on: its delivery stays pending and its circuit opens.
    endpoints.endpoint_create(url=f"http://127.0.0.1:{free_port()}/hook", events=["test.*"])
    with transaction.atomic():
        outbox_event(stopped[1], "test.event", "/api/webhooks/test")

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{gateway.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "a-long-test-password")
    page.click("input[type=submit]")
    page.wait_for_selector("[data-fleet-state][data-state=live]", timeout=WAIT_MS)

    assert count_of(page, "stopped") == 2
    page.wait_for_selector(
        "[data-chart=sessions] tr[data-status=scan_qr] td[data-count='1']", timeout=WAIT_MS
    )
    # The serve's own worker holds the running session.
    load = page.get_attribute(
        "[data-chart=workers] tr[data-status=active] td[data-load]", "data-load"
    )
    assert load.startswith("1/")
    totals = {
        name: int(page.get_attribute(f"[data-chart=messages] [data-series={name}]", "data-total"))
        for name in ("sent", "received", "failed")
    }
    assert totals == {"sent": 3, "received": 2, "failed": 1}
    assert int(page.get_attribute("[data-backlog]", "data-backlog")) == 1
    page.wait_for_selector("[data-chart=circuits] tr[data-circuit]", timeout=WAIT_MS)
    screenshot("laptop")

    # Without a reload, a new session shows up in the counts.
    page.evaluate("window.gwMarker = 'no reload'")
    session_create(external_id="fleet-new", engine="sandbox", start=False)
    page.wait_for_selector(
        "[data-chart=sessions] tr[data-status=stopped] td[data-count='3']", timeout=WAIT_MS
    )
    assert page.evaluate("window.gwMarker") == "no reload"

    # On a phone, the charts fit the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    right = page.evaluate("document.getElementById('gw-fleet').getBoundingClientRect().right")
    assert right <= 390
    screenshot("phone")
    assert csp_violations == []
