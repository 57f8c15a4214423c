"""`/api/v1/webhooks`: endpoints as a resource, their checks, secrets and the fan-out of events.

No dispatcher runs here (tests/workers/runtime/test_endpoints.py delivers): these look at the
outbox rows an event leaves for each destination."""

from __future__ import annotations

import socket

import pytest
from django.db import transaction

from gateway.outbox.models import Endpoint, Event, WebhookDelivery
from sessions_app.events import outbox_event

pytestmark = pytest.mark.django_db
LOCAL = "http://127.0.0.1:9/hook"


@pytest.fixture(autouse=True)
def _local_receivers(settings, monkeypatch) -> None:
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]

    def no_connection(sock, address):
        # Nothing here delivers: a refused URL (10.0.0.1, 169.254.169.254) is refused before
        # any socket connects, and any connection at all is a failure.
        raise AssertionError(f"connected to {address}")

    connect = socket.socket.connect

    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not str(address[0]).startswith(
            "127."
        ):
            no_connection(sock, address)
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


def create(api, **body) -> dict:
    response = api.post("/api/v1/webhooks", {"url": LOCAL, **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def emit(session, event: str = "message.received") -> dict:
    with transaction.atomic():
        return outbox_event(session, event, "/api/webhooks/x", n=1)


def test_an_endpoint_is_created_with_a_secret_shown_once(api) -> None:
    made = create(api, events=["message.*"], headers={"X-Token": "t0k3n"}, description="crm")
    assert made["secret"].startswith("whsec_") and made["kind"] == "webhook"
    assert (made["events"], made["sessions"], made["headers"]) == (["message.*"], None, ["X-Token"])
    shown = api.get(f"/api/v1/webhooks/{made['id']}").json()
    assert "secret" not in shown and shown["description"] == "crm"
    assert [e["id"] for e in api.get("/api/v1/webhooks").json()["results"]] == [made["id"]]


def test_a_given_secret_is_kept(api) -> None:
    secret = "whsec_" + "A" * 44
    assert create(api, secret=secret)["secret"] == secret


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://example.com/x"}, "url_scheme"),
        ({"url": "http://10.0.0.1/x"}, "url_forbidden"),
        ({"url": "http://169.254.169.254/latest"}, "url_forbidden"),
        ({"url": "nats://10.1.1.1:4222"}, "url_forbidden"),
        ({"url": "http://[::1/"}, "url_invalid"),
        ({"url": "http://user:pw@127.0.0.1/x"}, "url_credentials"),
        ({"events": ["mesage.*"]}, "event_unknown"),
        ({"events": []}, "endpoint_invalid"),
        ({"headers": {"webhook-signature": "forged"}}, "endpoint_invalid"),
        ({"headers": {"X-A": "line\r\nbreak"}}, "endpoint_invalid"),
        ({"secret": "not-a-secret"}, "secret_invalid"),
        ({"sessions": ["6f1c7e0e-0000-4000-8000-000000000000"]}, "session_not_found"),
    ],
)
def test_bad_endpoints_are_refused_with_a_code(api, body, code) -> None:
    response = api.post("/api/v1/webhooks", {"url": LOCAL, **body}, format="json")
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == code
    assert not Endpoint.objects.exists()


def test_loopback_is_refused_unless_allowed(api, settings) -> None:
    settings.WEBHOOK_ALLOWED_NETWORKS = []
    response = api.post("/api/v1/webhooks", {"url": LOCAL}, format="json")
    assert response.json()["error"]["code"] == "url_forbidden"


def test_events_fan_out_by_pattern_and_session(api, make_session, settings) -> None:
    settings.BACKEND_URL = "http://127.0.0.1:9"
    a, b = make_session(), make_session()
    messages_of_a = create(api, events=["message.*"], sessions=[str(a.pk)])
    statuses = create(api, events=["session.status"])
    everything = create(api)
    emit(a, "message.received")
    emit(b, "message.received")
    emit(b, "session.status")
    emit(a, "group.joined")

    def got(endpoint: dict) -> list[tuple[str, str]]:
        rows = WebhookDelivery.objects.filter(endpoint_id=endpoint["id"]).order_by("id")
        return [(str(r.session_id), r.event_type) for r in rows]

    assert got(messages_of_a) == [(str(a.pk), "message.received")]
    assert got(statuses) == [(str(b.pk), "session.status")]
    assert len(got(everything)) == 4
    assert WebhookDelivery.objects.filter(endpoint__isnull=True).count() == 4  # the backend
    assert Event.objects.count() == 4  # and once in the log, whatever the destinations
    # One event id everywhere it went.
    first = Event.objects.order_by("id").first()
    assert WebhookDelivery.objects.filter(event_id=first.event_id).count() == 3


def test_the_log_keeps_events_without_any_destination(make_session, settings) -> None:
    settings.BACKEND_URL = ""
    emit(make_session())
    assert Event.objects.count() == 1 and not WebhookDelivery.objects.exists()


def test_a_rolled_back_change_leaves_nothing(api, make_session) -> None:
    create(api)
    session = make_session()
    with pytest.raises(RuntimeError), transaction.atomic():
        outbox_event(session, "message.received", "/x")
        raise RuntimeError
    assert not Event.objects.exists() and not WebhookDelivery.objects.exists()


def test_a_disabled_endpoint_gets_nothing(api, make_session) -> None:
    made = create(api)
    response = api.patch(f"/api/v1/webhooks/{made['id']}", {"enabled": False}, format="json")
    assert response.status_code == 200 and response.json()["enabled"] is False
    emit(make_session())
    assert not WebhookDelivery.objects.filter(endpoint_id=made["id"]).exists()


def test_patch_checks_what_it_changes_and_keeps_the_rest(api) -> None:
    made = create(api, events=["message.*"])
    refused = api.patch(
        f"/api/v1/webhooks/{made['id']}", {"url": "http://10.0.0.1/"}, format="json"
    )
    assert refused.status_code == 422
    changed = api.patch(
        f"/api/v1/webhooks/{made['id']}", {"events": ["group.*", "poll.vote"]}, format="json"
    ).json()
    assert changed["events"] == ["group.*", "poll.vote"] and changed["url"] == LOCAL


def test_rotation_keeps_the_old_secret_for_the_overlap(api) -> None:
    made = create(api)
    rotated = api.post(
        f"/api/v1/webhooks/{made['id']}/rotate-secret", {"overlap_seconds": 3600}, format="json"
    ).json()
    assert rotated["secret"] != made["secret"] and rotated["previous_secret_until"]
    endpoint = Endpoint.objects.get(pk=made["id"])
    assert (endpoint.secret, endpoint.previous_secret) == (rotated["secret"], made["secret"])


def test_the_test_event_goes_to_that_endpoint_only(api, settings) -> None:
    settings.BACKEND_URL = "http://127.0.0.1:9"
    made, _other = create(api), create(api)
    response = api.post(f"/api/v1/webhooks/{made['id']}/test")
    assert response.status_code == 202 and response.json()["event"] == "webhook.test"
    rows = list(WebhookDelivery.objects.all())
    assert [(str(r.endpoint_id), r.event_type) for r in rows] == [(made["id"], "webhook.test")]


def test_deliveries_are_listed_filtered_and_replayed(api, make_session) -> None:
    made = create(api)
    a, b = make_session(), make_session()
    emit(a)
    emit(b, "session.status")
    WebhookDelivery.objects.filter(session=a).update(status="dead")
    url = f"/api/v1/webhooks/{made['id']}/deliveries"
    assert len(api.get(url).json()["results"]) == 2
    dead = api.get(url, {"status": "dead"}).json()["results"]
    assert [d["session"] for d in dead] == [str(a.pk)]
    assert len(api.get(url, {"event": "session.status"}).json()["results"]) == 1
    assert len(api.get(url, {"session": str(b.pk)}).json()["results"]) == 1
    replayed = api.post(f"{url}/replay", {}, format="json")
    assert replayed.status_code == 202 and replayed.json() == {"replayed": 1}
    assert not WebhookDelivery.objects.filter(status="dead").exists()


def test_deleting_an_endpoint_drops_its_deliveries(api, make_session) -> None:
    made = create(api)
    emit(make_session())
    assert api.delete(f"/api/v1/webhooks/{made['id']}").status_code == 204
    assert not WebhookDelivery.objects.exists()
    assert api.get(f"/api/v1/webhooks/{made['id']}").status_code == 404


def test_unknown_endpoints_are_404(api) -> None:
    response = api.get("/api/v1/webhooks/6f1c7e0e-0000-4000-8000-000000000000")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "webhook_not_found"


def test_broker_urls_hide_their_password(api, settings) -> None:
    made = create(api, url="amqp://guest:guest@127.0.0.1:5672/", subject="wa.{event}")
    assert made["url"] == "amqp://guest:***@127.0.0.1:5672/" and made["kind"] == "amqp"
    assert made["exchange"] == "whatsapp"
    assert WebhookDelivery.objects.count() == 0


def test_the_services_take_only_an_endpoints_fields() -> None:
    """endpoint_create and endpoint_update (gateway/outbox/endpoints.py) take the fields by name:
    a misspelt one, or the secret (changed only by a rotation), is a TypeError, not a silent
    write; `sessions=None` (every session) is a change, leaving it out is none."""
    from gateway.outbox import endpoints

    with pytest.raises(TypeError):
        endpoints.endpoint_create(url=LOCAL, session=["x"])
    endpoint = endpoints.endpoint_create(url=LOCAL, sessions=None, description="crm")
    assert (endpoint.events, endpoint.headers, endpoint.secret[:6]) == (["*"], {}, "whsec_")
    secret = endpoint.secret
    with pytest.raises(TypeError):
        endpoints.endpoint_update(endpoint, secret="whsec_" + "A" * 44)
    endpoints.endpoint_update(endpoint, description="crm 2")
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.description, endpoint.sessions) == (secret, "crm 2", None)
    Endpoint.objects.filter(pk=endpoint.pk).update(
        sessions=["x"], enabled=False, disabled_reason="410"
    )
    endpoint.refresh_from_db()
    endpoints.endpoint_update(endpoint, sessions=None, enabled=True)
    endpoint.refresh_from_db()
    assert (endpoint.sessions, endpoint.enabled, endpoint.disabled_reason) == (None, True, "")


def test_every_change_to_the_endpoints_reaches_the_next_event(
    api, make_session, django_assert_num_queries
) -> None:
    """The endpoints are read again only when their version (count, latest change) moved."""
    from gateway.outbox.endpoints import endpoints_for

    session = make_session()
    first = create(api)["id"]
    assert [str(e.pk) for e in endpoints_for(session_id=session.pk, event_type="x.y")] == [first]
    with django_assert_num_queries(1):  # the version alone
        endpoints_for(session_id=session.pk, event_type="x.y")

    second = create(api, events=["message.*"])["id"]
    assert {str(e.pk) for e in endpoints_for(session_id=session.pk, event_type="message.sent")} == {
        first,
        second,
    }
    api.patch(f"/api/v1/webhooks/{first}", {"enabled": False}, format="json")
    assert [str(e.pk) for e in endpoints_for(session_id=session.pk, event_type="message.sent")] == [
        second
    ]
    api.delete(f"/api/v1/webhooks/{second}")
    assert endpoints_for(session_id=session.pk, event_type="message.sent") == []
