from __future__ import annotations

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_api_key.models import APIKey

from sessions_app.models import Session
from workers.models import Worker

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "sessions_app/session",
    "sessions_app/sessionevent",
    "workers/worker",
    "messaging/message",
    "groups/group",
    "gateway/webhookdelivery",
    "rest_framework_api_key/apikey",
    "core/scopedapikey",
]


@pytest.fixture
def operator(client: Client, staff_user) -> Client:
    client.force_login(staff_user)
    return client


@pytest.mark.smoke
@pytest.mark.parametrize("changelist", CHANGELISTS)
def test_every_admin_list_opens(operator: Client, make_session, changelist: str) -> None:
    make_session(worker=Worker.objects.create(name="w"))
    response = operator.get(f"/admin/{changelist}/")
    assert response.status_code == 200


def test_the_session_page_shows_its_timeline(operator: Client, make_session) -> None:
    session = make_session()
    session.events.create(from_status="stopped", to_status="starting", reason="claimed")
    response = operator.get(f"/admin/sessions_app/session/{session.id}/change/")
    assert response.status_code == 200
    assert "claimed" in response.content.decode()


def test_the_session_page_leads_to_its_groups(operator: Client, make_session) -> None:
    from groups import services

    session, other = make_session(), make_session()
    for owner, subject in ((session, "Team"), (other, "Elsewhere")):
        group = {"jid": f"1203630000000000{len(subject)}@g.us", "subject": subject}
        services.groups_store(session_id=owner.pk, groups=[group])
    page = operator.get(f"/admin/sessions_app/session/{session.id}/change/").content.decode()
    assert f"/admin/groups/group/?session__exact={session.id}" in page and "1 group<" in page
    listed = operator.get(f"/admin/groups/group/?session__exact={session.id}").content.decode()
    assert "Team" in listed and "Elsewhere" not in listed


def test_an_api_key_made_in_the_admin_is_shown_once_and_works(operator: Client) -> None:
    response = operator.post(
        "/admin/rest_framework_api_key/apikey/add/", {"name": "backend"}, follow=True
    )
    assert response.status_code == 200
    page = response.content.decode()
    key = re.search(r"The API key for [^:]+: ([A-Za-z0-9]+\.[A-Za-z0-9]+)", page)
    assert key, page[:2000]
    assert key.group(1) not in APIKey.objects.get().hashed_key

    client = APIClient()
    client.credentials(HTTP_X_API_KEY=key.group(1))
    assert client.get("/api/v1/sessions").status_code == 200
    assert (
        key.group(1)
        not in operator.get(
            f"/admin/rest_framework_api_key/apikey/{APIKey.objects.get().pk}/change/"
        ).content.decode()
    )


def test_admin_actions_call_the_services(operator: Client, make_session) -> None:
    sessions = [make_session(desired_state="running") for _ in range(2)]
    response = operator.post(
        "/admin/sessions_app/session/",
        {"action": "stop_sessions", "_selected_action": [str(s.id) for s in sessions]},
    )
    assert response.status_code == 302
    assert set(Session.objects.values_list("desired_state", flat=True)) == {"stopped"}


def test_the_admin_needs_a_login(client: Client) -> None:
    response = client.get("/admin/sessions_app/session/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_deleting_in_the_admin_goes_through_the_service(operator: Client, make_session) -> None:
    from datetime import timedelta

    from django.utils import timezone

    running = make_session(
        worker=Worker.objects.create(name="w"),
        lease_expires_at=timezone.now() + timedelta(seconds=30),
    )
    idle = make_session()
    response = operator.post(
        "/admin/sessions_app/session/",
        {
            "action": "delete_selected",
            "_selected_action": [str(running.id), str(idle.id)],
            "post": "yes",
        },
    )
    assert response.status_code == 302
    assert list(Session.objects.all()) == [running]
    running.refresh_from_db()
    assert running.delete_requested_at is not None


def test_the_session_list_has_live_badges(operator: Client, make_session) -> None:
    worker = Worker.objects.create(name="worker-a")
    session = make_session(status="connected", phone_number="+15550001", worker=worker)
    page = operator.get("/admin/sessions_app/session/").content.decode()
    assert f'data-status="connected" data-session-status="{session.id}"' in page
    assert f'data-session-phone="{session.id}">+15550001<' in page
    assert f'data-session-worker="{session.id}">worker-a<' in page
    assert f'data-session-changed="{session.id}"' in page
    assert "data-live-sessions" in page and "gateway/admin-live.js" in page
    assert f'"{worker.id}": "worker-a"' in page  # names for workers a session moves to


def test_the_session_page_has_the_live_panel_and_its_latest_events(
    operator: Client, make_session
) -> None:
    session = make_session(status="scan_qr")
    for n in range(60):
        session.events.create(from_status="starting", to_status="scan_qr", reason=f"event-{n}")
    page = operator.get(f"/admin/sessions_app/session/{session.id}/change/").content.decode()
    assert f'data-live-session="{session.id}"' in page
    assert 'id="gw-linking" hidden' not in page  # linking: the QR and pairing form show
    assert "event-59" in page and "event-10" in page and "event-9<" not in page  # newest 50
    assert f"?session__id__exact={session.id}" in page
    link = re.search(r'href="(/link/[^"]+)"', page).group(1).replace("&amp;", "&")
    assert operator.get(link).status_code == 200  # the link page for the phone's owner works

    connected = make_session(status="connected")
    page = operator.get(f"/admin/sessions_app/session/{connected.id}/change/").content.decode()
    assert 'id="gw-linking" hidden' in page


def test_the_admin_pairing_form_needs_csrf_and_change_permission(
    make_session, staff_user, django_user_model
) -> None:
    from django.contrib.auth.models import Permission

    session = make_session(status="connected")
    url = f"/admin/sessions_app/session/{session.id}/pair-code/"
    body = {"phone_number": "+15550001"}

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff_user)
    assert strict.post(url, body, content_type="application/json").status_code == 403

    client = Client()
    client.force_login(staff_user)
    response = client.post(url, body, content_type="application/json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_linking"
    response = client.post(url, {"phone_number": "555"}, content_type="application/json")
    assert response.status_code == 400
    assert client.get(url).status_code == 405

    viewer = django_user_model.objects.create_user("viewer", password="x" * 20, is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_session", content_type__app_label="sessions_app")
    )
    client.force_login(viewer)
    assert client.post(url, body, content_type="application/json").status_code == 403


def test_a_view_only_staff_member_gets_no_link_page_token_and_no_pairing_form(
    make_session, django_user_model
) -> None:
    """The link page's token can ask for pairing codes: handing it out is a change."""
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="x" * 20, is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_session", content_type__app_label="sessions_app")
    )
    client = Client()
    client.force_login(viewer)
    session = make_session(status="scan_qr")
    response = client.get(f"/admin/sessions_app/session/{session.id}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/link/" not in page and "token=" not in page
    assert 'id="gw-pair-button"' not in page
    assert 'id="gw-qr"' in page  # the live panel itself is still there to watch


def test_the_worker_list_shows_heartbeat_age_load_and_status(operator: Client, settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    fresh = Worker.objects.create(name="fresh", capacity=4)
    Session.objects.create(engine="sandbox", worker=fresh)
    stale = Worker.objects.create(name="stale", capacity=10)
    Worker.objects.filter(pk=stale.pk).update(
        last_heartbeat_at=timezone.now() - timedelta(seconds=settings.WORKER_LEASE_SECONDS + 5)
    )
    page = operator.get("/admin/workers/worker/").content.decode()
    assert "1 / 4" in page and "(25%)" in page and "0 / 10" in page
    assert re.search(r'<time [^>]*data-stale-after="\d+"[^>]*>\d+ s ago</time>', page)
    assert page.count('class="gw-stale"') == 1  # only the worker that missed its heartbeats
    assert page.count('data-status="active"') == 2


def test_a_delivery_shows_its_signed_request_and_can_be_replayed(
    operator: Client, make_session, settings
) -> None:
    from django.db import transaction

    from gateway.outbox.models import WebhookDelivery
    from sessions_app.events import outbox_event

    settings.BACKEND_URL = "http://backend.test"
    settings.WEBHOOK_SECRET = "whsec_" + "A" * 43 + "="
    with transaction.atomic():
        outbox_event(make_session(), "test.event", "/hook", n=1)
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.update(status="dead")
    page = operator.get(f"/admin/gateway/webhookdelivery/{delivery.pk}/change/").content.decode()
    assert f"webhook-id: {delivery.event_id}" in page and "webhook-signature: v1," in page
    assert "POST http://backend.test/hook" in page and "closed" in page
    operator.post(
        "/admin/gateway/webhookdelivery/", {"action": "replay", "_selected_action": [delivery.pk]}
    )
    delivery.refresh_from_db()
    assert (
        delivery.status == "pending" and delivery.event_id == WebhookDelivery.objects.get().event_id
    )


def test_a_message_page_shows_its_edits_reactions_and_deletion(
    operator: Client, make_session
) -> None:
    from messaging.models import Message

    session = make_session()
    message = Message.objects.create(
        session=session,
        direction="in",
        status="revoked",
        chat="15550002@s.whatsapp.net",
        text="hello!",
        payload={
            "edits": [{"text": "hello", "at": "2026-12-01T10:00:00+00:00", "by": "x"}],
            "reactions": {"15550002@s.whatsapp.net": {"emoji": "👍", "phone_number": "+15550002"}},
            "votes": {"15550003@s.whatsapp.net": {"options": ["Pizza"], "phone_number": "+1555"}},
            "undecryptable_votes": [{"by": "x", "error": "failed to decrypt"}],
        },
    )
    page = operator.get(f"/admin/messaging/message/{message.pk}/change/").content.decode()
    assert (
        "&#x27;hello&#x27; (2026-12-01T10:00:00)" in page or "'hello' (2026-12-01T10:00:00)" in page
    )
    assert "👍 +15550002" in page and "Deleted for everyone" in page
    assert "+1555: Pizza; 1 could not be decrypted" in page


def test_the_fleet_figures_need_staff_and_count_the_last_hour_by_minute(
    operator: Client, make_session
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from gateway.fleet import messages_per_minute
    from messaging.models import Message

    worker = Worker.objects.create(name="w-fleet", capacity=50)
    session = make_session(worker=worker)
    now = timezone.now()

    def made(direction: str, status: str, minutes_ago: float, **fields) -> None:
        message = Message.objects.create(
            session=session, direction=direction, chat="1@s.whatsapp.net", status=status, **fields
        )
        Message.objects.filter(pk=message.pk).update(
            created_at=now - timedelta(minutes=minutes_ago)
        )

    made("out", "read", 0)
    made("out", "queued", 0)  # not sent (yet)
    made("out", "failed", 3)
    made("in", "received", 59)
    made("in", "received", 1, history=True)  # a history sync is not traffic
    made("in", "received", 61)  # before the hour

    assert Client().get("/admin/fleet.json").status_code == 302  # to the login

    # Each minute in its place (counted at the test's own `now`: the page's may be a minute on).
    series = messages_per_minute(now)
    assert [len(s) for s in series.values()] == [60, 60, 60]
    assert (series["sent"][-1], sum(series["sent"])) == (1, 1)
    assert (series["failed"][-4], sum(series["failed"])) == (1, 1)
    assert (series["received"][0], sum(series["received"])) == (1, 1)

    fleet = operator.get("/admin/fleet.json").json()
    assert {k: sum(v) for k, v in fleet["messages_per_minute"].items()}.keys() == series.keys()
    assert sum(fleet["messages_per_minute"]["sent"]) == 1
    assert fleet["sessions"]["stopped"] == Session.objects.filter(status="stopped").count()
    [row] = [w for w in fleet["workers"] if w["name"] == "w-fleet"]
    assert (row["sessions"], row["capacity"], row["status"]) == (1, 50, "active")
    assert fleet["webhooks"] == {"backlog": 0, "oldest_pending_seconds": 0}


# --- Webhook endpoints ----------------------------------------------------------------------------

ENDPOINTS = "/admin/gateway/endpoint/"


def endpoint_form(**fields: str) -> dict[str, str]:
    """The admin's add/change form of a webhook endpoint, filled in as a browser sends it."""
    return {
        "url": "http://127.0.0.1:9/hook",
        "events": '["*"]',
        "sessions": "",
        "secret": "",
        "headers": "{}",
        "subject": "wa.{session}.{event}",
        "stream": "",
        "exchange": "",
        "enabled": "on",
        "description": "",
        **fields,
    }


def form_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code  # the form again, not a redirect
    errors = response.context["adminform"].form.errors
    return {name: list(messages) for name, messages in errors.items()}


@pytest.fixture
def _loopback(settings) -> None:
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.mark.usefixtures("_loopback")
def test_an_endpoint_made_in_the_admin_names_sessions_or_takes_them_all(
    operator: Client, make_session
) -> None:
    from gateway.outbox.endpoints import NO_SESSIONS
    from gateway.outbox.models import Endpoint

    refused = operator.post(f"{ENDPOINTS}add/", endpoint_form(sessions="[]"))
    assert form_errors(refused) == {"sessions": [NO_SESSIONS]}
    unknown = operator.post(f"{ENDPOINTS}add/", endpoint_form(sessions='["not-an-id"]'))
    assert list(form_errors(unknown)) == ["sessions"]
    assert not Endpoint.objects.exists()
    session = make_session()
    some = operator.post(f"{ENDPOINTS}add/", endpoint_form(sessions=f'["{session.pk}"]'))
    every = operator.post(f"{ENDPOINTS}add/", endpoint_form(description="every session"))
    assert some.status_code == every.status_code == 302
    assert Endpoint.objects.get(description="").sessions == [str(session.pk)]
    assert Endpoint.objects.get(description="every session").sessions is None
    page = operator.get(f"{ENDPOINTS}add/").content.decode()
    assert "null (left empty) means every session" in page


@pytest.mark.usefixtures("_loopback")
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"secret": "not-a-secret"}, "secret"),
        ({"secret": "whsec_" + "A" * 8}, "secret"),  # 6 bytes: too short
        ({"headers": '{"webhook-signature": "forged"}'}, "headers"),
        ({"headers": '{"Content-Type": "text/plain"}'}, "headers"),
        ({"headers": '{"X-A": "line\\r\\nbreak"}'}, "headers"),
        ({"headers": '["X-A"]'}, "headers"),
        ({"url": "nats://127.0.0.1:4222", "stream": "a.b"}, "stream"),
        ({"url": "nats://127.0.0.1:4222", "subject": "wa.>"}, "subject"),
        ({"url": "amqp://guest:guest@127.0.0.1:5672/", "exchange": "amq.topic"}, "exchange"),
        ({"url": "amqp://guest:guest@127.0.0.1:5672/", "subject": "{session}.{event}"}, "subject"),
    ],
)
def test_the_admin_checks_an_endpoint_as_the_api_does(
    operator: Client, fields: dict[str, str], field: str
) -> None:
    from gateway.outbox.models import Endpoint

    response = operator.post(f"{ENDPOINTS}add/", endpoint_form(**fields))
    assert list(form_errors(response)) == [field]
    assert not Endpoint.objects.exists()


@pytest.mark.usefixtures("_loopback")
def test_a_broker_made_in_the_admin_gets_the_apis_defaults(operator: Client) -> None:
    from gateway.outbox.models import Endpoint

    for url in ("nats://127.0.0.1:4222", "amqp://guest:guest@127.0.0.1:5672/"):
        response = operator.post(f"{ENDPOINTS}add/", endpoint_form(url=url, stream="", exchange=""))
        assert response.status_code == 302, form_errors(response)
    nats = Endpoint.objects.get(url__startswith="nats:")
    amqp = Endpoint.objects.get(url__startswith="amqp:")
    assert (nats.stream, nats.exchange, amqp.stream, amqp.exchange) == (
        "WHATSAPP",
        "",
        "",
        "whatsapp",
    )


@pytest.mark.usefixtures("_loopback")
def test_a_secret_changed_in_the_admin_keeps_the_old_one_for_the_overlap(operator: Client) -> None:
    from django.utils import timezone

    from gateway.outbox.deliveries import Destination
    from gateway.outbox.endpoints import DEFAULT_OVERLAP_SECONDS, new_secret
    from gateway.outbox.models import Endpoint

    first = new_secret()
    assert operator.post(f"{ENDPOINTS}add/", endpoint_form(secret=first)).status_code == 302
    endpoint = Endpoint.objects.get()
    assert (endpoint.secret, endpoint.previous_secret) == (first, "")
    change = f"{ENDPOINTS}{endpoint.pk}/change/"

    # Left empty: the secret stays, nothing rotates.
    assert operator.post(change, endpoint_form(description="crm")).status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secret, endpoint.description) == (first, "", "crm")

    second = new_secret()
    before = timezone.now()
    changed = operator.post(change, endpoint_form(secret=second, description="crm"), follow=True)
    page = changed.content.decode()
    assert second in page and "The previous secret signs too" in page  # shown once, as made
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secret) == (second, first)
    until = endpoint.previous_secret_until
    overlap = timezone.timedelta(seconds=DEFAULT_OVERLAP_SECONDS)
    assert until is not None and before + overlap <= until <= timezone.now() + overlap
    assert Destination.of(endpoint, timezone.now()).secrets == (second, first)  # both sign

    # The same secret typed again is no rotation: the overlap is not cut short.
    assert operator.post(change, endpoint_form(secret=second)).status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secret) == (second, first)
    assert endpoint.previous_secret_until == until
