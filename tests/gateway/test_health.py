from __future__ import annotations

import copy
import time

import pytest
from django.conf import settings as django_settings
from django.test import Client

from gateway.outbox.models import WebhookDelivery
from messaging.models import Message
from workers.models import Worker

pytestmark = pytest.mark.django_db
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@pytest.mark.smoke
def test_liveness_answers_without_credentials(client: Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.smoke
def test_readiness_checks_every_dependency(client: Client) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "channel_layer", "storage"}
    assert all(check["ok"] for check in body["checks"].values())


def test_readiness_is_503_naming_redis_when_redis_is_unreachable(client: Client, settings) -> None:
    assert settings.REDIS_URL, "this test needs the Redis configuration of `make test`"
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": UNREACHABLE_REDIS}}
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["hosts"][0]["address"] = UNREACHABLE_REDIS
    settings.CHANNEL_LAYERS = layers

    response = client.get("/health/ready")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["cache", "channel_layer"]
    assert body["checks"]["database"]["ok"] and body["checks"]["storage"]["ok"]
    assert "127.0.0.1:1" not in response.content.decode()


def test_readiness_is_503_naming_storage_when_s3_is_unreachable(client: Client, settings) -> None:
    assert settings.S3_BUCKET, "this test needs the S3 configuration of `make test`"
    storages = copy.deepcopy(django_settings.STORAGES)
    storages["sessions"]["OPTIONS"]["endpoint_url"] = "http://127.0.0.1:1"
    settings.STORAGES = storages

    response = client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["failed"] == ["storage"]


@pytest.mark.smoke
def test_metrics_report_the_fleet(client: Client, make_session) -> None:
    worker = Worker.objects.create(name="w")
    first = make_session(status="connected", worker=worker)
    worker.stats = {"last_event_at": {str(first.pk): time.time() - 600}}
    worker.save()
    Worker.objects.create(name="old", status="dead", stats={"last_event_at": {"gone": 0}})
    make_session(status="connected")
    make_session(status="scan_qr")
    for _ in range(3):
        Message.objects.create(
            session=first, direction="out", chat="1@s.whatsapp.net", status="queued"
        )
    Message.objects.create(session=first, direction="out", chat="1@s.whatsapp.net", status="sent")
    WebhookDelivery.objects.create(
        event_type="session.status",
        target="https://b.example/h",
        payload={},
        session=first,
        sequence=1,
    )

    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 200
    text = response.content.decode()
    assert 'gateway_sessions{status="connected"} 2.0' in text
    assert 'gateway_sessions{status="scan_qr"} 1.0' in text
    assert 'gateway_sessions{status="failed"} 0.0' in text
    assert 'gateway_workers{status="active"} 1.0' in text
    assert 'gateway_workers{status="dead"} 1.0' in text
    assert "gateway_messages_queued 3.0" in text
    assert "gateway_webhook_backlog 1.0" in text
    [age] = [line for line in text.splitlines() if line.startswith("gateway_session_last_event")]
    assert f'session_id="{first.pk}"' in age and 600 <= float(age.split()[-1]) < 660
    assert "django_http_requests_total_by_method_total" in text


def test_metrics_take_one_query_per_gauge(client: Client, django_assert_num_queries) -> None:
    # Sessions (by worker and status, with the oldest change), workers, queued messages, backlog;
    # webhook statuses, totals, pending targets; the workers shown (stats, counters, last events).
    with django_assert_num_queries(7):
        client.get("/metrics", REMOTE_ADDR="127.0.0.1")


def test_metrics_are_refused_to_other_addresses(client: Client) -> None:
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_metrics_accept_the_metrics_token(client: Client, settings) -> None:
    settings.METRICS_TOKEN = "scrape-me"
    ok = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer scrape-me")
    wrong = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer nope")
    assert (ok.status_code, wrong.status_code) == (200, 403)


def test_concurrent_readiness_probes_all_pass(live_server) -> None:
    """A threaded server answers many probes at once; none may fail for want of an event loop."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def probe(_: int) -> int:
        with urllib.request.urlopen(f"{live_server.url}/health/ready", timeout=30) as response:
            return response.status

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(probe, range(40))) == [200] * 40


def test_metrics_are_refused_to_proxied_requests_from_loopback(client: Client) -> None:
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert response.status_code == 403


def test_metrics_show_the_webhook_outbox(client: Client, settings, make_session) -> None:
    from django.db import transaction

    from sessions_app.events import outbox_event

    settings.BACKEND_URL = "http://backend.test"
    with transaction.atomic():
        outbox_event(make_session(), "test.event", "/hook")
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'gateway_webhook_deliveries{status="pending"} 1.0' in text
    assert "gateway_webhook_oldest_pending_seconds" in text
    assert 'gateway_webhook_circuit_open{target="http://backend.test"} 0.0' in text
