"""Every transition and every new QR code: a `session.status` outbox row in the same transaction,
and a live push after the commit."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from gateway.outbox.models import WebhookDelivery
from sessions_app.services import qr, session_set_status
from workers.models import Worker


@pytest.fixture
def backend(settings):
    settings.BACKEND_URL = "https://backend.example.com"
    return settings


@pytest.fixture
def leased(make_session):
    return make_session(
        status="stopped",
        lease_epoch=2,
        external_id="card-9",
        worker=Worker.objects.create(name="w"),
    )


@pytest.mark.django_db
def test_a_transition_writes_one_outbox_row_with_the_protocol_body(backend, leased) -> None:
    session_set_status(session_id=leased.id, status="starting", epoch=2)
    session_set_status(
        session_id=leased.id, status="failed", epoch=2, error_code="qr_timeout", error="not scanned"
    )

    first, second = WebhookDelivery.objects.order_by("sequence")
    assert first.target == "https://backend.example.com/api/webhooks/session-status"
    assert (first.event_type, first.sequence, second.sequence) == ("session.status", 1, 2)
    assert first.payload["id"] == str(first.event_id)
    assert first.payload["session"] == {
        "id": str(leased.id),
        "external_id": "card-9",
        "status": "starting",
        "phone_number": "",
        "worker_id": str(leased.worker_id),
    }
    assert second.payload["error"] == {"code": "qr_timeout", "message": "not scanned"}
    assert {"occurred_at", "event", "sequence"} <= set(first.payload)


@pytest.mark.django_db
def test_every_new_qr_code_is_announced_as_its_text_never_drawn(
    backend, leased, monkeypatch
) -> None:
    monkeypatch.setattr(qr, "qr_image", lambda code: pytest.fail(f"{code} drawn"))
    session_set_status(session_id=leased.id, status="starting", epoch=2)
    for code in ("2@first", "2@second"):
        session_set_status(
            session_id=leased.id,
            status="scan_qr",
            epoch=2,
            qr={"code": code, "expires_at": "2026-11-29T10:00:00+00:00"},
        )

    qr_events = [d.payload["qr"] for d in WebhookDelivery.objects.order_by("sequence")[1:]]
    assert qr_events == [
        {"code": code, "expires_at": "2026-11-29T10:00:00+00:00"}
        for code in ("2@first", "2@second")
    ]


@pytest.mark.django_db
def test_a_new_qr_code_on_a_session_showing_one_leaves_its_row_alone(backend, leased) -> None:
    session_set_status(session_id=leased.id, status="starting", epoch=2)
    session_set_status(session_id=leased.id, status="scan_qr", epoch=2, qr={"code": "2@first"})
    with CaptureQueriesContext(connections["default"]) as queries:
        session_set_status(session_id=leased.id, status="scan_qr", epoch=2, qr={"code": "2@next"})

    assert not [q["sql"] for q in queries if q["sql"].startswith('UPDATE "sessions_app_session"')]
    assert WebhookDelivery.objects.latest("sequence").payload["qr"] == {"code": "2@next"}
    leased.refresh_from_db()
    assert leased.status == "scan_qr"


@pytest.mark.django_db
def test_without_a_backend_nothing_is_queued(leased) -> None:
    session_set_status(session_id=leased.id, status="starting", epoch=2)
    assert not WebhookDelivery.objects.exists()
    leased.refresh_from_db()
    assert leased.event_sequence == 1


@pytest.mark.django_db
def test_a_rolled_back_change_produces_no_event(backend, leased) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        session_set_status(session_id=leased.id, status="starting", epoch=2)
        raise RuntimeError("something after it failed")

    assert not WebhookDelivery.objects.exists()
    leased.refresh_from_db()
    assert (leased.status, leased.event_sequence) == ("stopped", 0)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_change_is_pushed_to_the_session_group_after_commit(make_session) -> None:
    session = await sync_to_async(make_session)(status="stopped", lease_epoch=1)
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(f"session.{session.id}", channel)

    await sync_to_async(session_set_status)(session_id=session.id, status="starting", epoch=1)

    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert message["type"] == "session.status"
    assert message["payload"]["session"]["status"] == "starting"
    assert message["payload"]["sequence"] == 1
    await layer.group_discard(f"session.{session.id}", channel)
    await sync_to_async(connections.close_all)()
