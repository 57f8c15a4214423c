"""Webhook delivery to a real HTTP receiver that verifies every request with the
`standardwebhooks` library (the dispatcher runs in process, on PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import threading
from collections import defaultdict
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.outbox.breaker import breaker_for
from gateway.outbox.deliveries import deliveries_replay
from gateway.outbox.models import WebhookDelivery
from messaging.models import Message
from sessions_app.events import outbox_event
from sessions_app.models import Session
from tests.processes import free_port
from tests.workers.runtime.test_runtime import linked, until
from workers.runtime.config import RuntimeConfig

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class Receiver:
    """The backend: answers what `answer(headers, body)` says, keeps what it verified."""

    def __init__(self, secret: str, port: int = 0) -> None:
        self.secret = secret
        self.received: list[tuple[dict, dict]] = []  # (headers, body) of verified requests
        self.unverified = 0
        self.answer = lambda headers, body: (200, {})
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    body = Webhook(receiver.secret).verify(raw, headers)
                except WebhookVerificationError:
                    receiver.unverified += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                status, extra = receiver.answer(headers, body)
                if 200 <= status < 300:
                    receiver.received.append((headers, body))
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend(settings):
    secret = new_secret()
    receiver = Receiver(secret)
    settings.BACKEND_URL = f"http://127.0.0.1:{receiver.port}"
    settings.WEBHOOK_SECRET = secret
    settings.WEBHOOK_BREAKER_FAILURES = 3
    settings.WEBHOOK_BREAKER_COOL_DOWN_SECONDS = 3
    yield receiver
    receiver.close()


def produce(sessions: list[Session], per_session: int) -> None:
    for n in range(per_session):
        for session in sessions:
            with transaction.atomic():
                outbox_event(session, "test.event", "/api/webhooks/test", n=n)


def sessions(count: int) -> list[Session]:
    return [Session.objects.create(engine="sandbox") for _ in range(count)]


def in_order_per_session(received: list[tuple[dict, dict]]) -> dict[str, list[int]]:
    seen = defaultdict(list)
    for _, body in received:
        seen[body["session"]["id"]].append(body["sequence"])
    return seen


async def test_a_deliverys_log_lines_say_which_delivery_they_are_about(
    backend, dispatch, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="workers.runtime.dispatcher")
    [session] = await sync_to_async(sessions)(1)
    await sync_to_async(produce)([session], 1)
    await dispatch()
    await until(lambda: len(backend.received) == 1, what="the webhook")
    [line] = await until(
        lambda: [r for r in caplog.records if r.getMessage().startswith("webhook test.event to ")]
    )
    row = await sync_to_async(WebhookDelivery.objects.get)(session=session)
    assert (line.delivery_id, line.event_id, line.session_id) == (
        str(row.pk),
        str(row.event_id),
        str(session.pk),
    )


async def test_events_arrive_signed_and_in_order_per_session(backend, dispatch, settings) -> None:
    settings.WEBHOOK_SECRET_PREVIOUS = old = new_secret()  # a rotation: both signatures go out
    made = await sync_to_async(sessions)(3)
    await sync_to_async(produce)(made, 20)
    await dispatch()
    await until(lambda: len(backend.received) == 60, what="60 webhooks")
    assert backend.unverified == 0
    for sequences in in_order_per_session(backend.received).values():
        assert sequences == sorted(sequences) and len(sequences) == 20
    headers, body = backend.received[0]
    assert headers["webhook-id"] == body["id"] and len(headers["webhook-signature"].split()) == 2
    raw = json.dumps(body, separators=(",", ":"))
    Webhook(old).verify(raw, headers)  # the old secret's signature is there too
    with pytest.raises(WebhookVerificationError):
        Webhook(backend.secret).verify(raw.replace('"n":0', '"n":1'), headers)  # tampered
    await until(
        lambda: WebhookDelivery.objects.filter(status="delivered").count() == 60,
        what="all recorded as delivered",
    )


async def test_an_outage_loses_nothing_and_the_open_circuit_attempts_nothing(
    backend, dispatch, settings
) -> None:
    # The backend is away: nothing listens on its port (connection refused).
    port = free_port()
    settings.BACKEND_URL = f"http://127.0.0.1:{port}"
    made = await sync_to_async(sessions)(10)
    await sync_to_async(produce)(made, 100)  # 1,000 events while it is down
    await dispatch()
    breaker = breaker_for(settings.BACKEND_URL)
    await until(lambda: breaker.state() == "open", what="the circuit to open")
    await until(  # the requests in flight when it opened have failed too
        lambda: not WebhookDelivery.objects.filter(claimed_until__gt=timezone.now()).exists(),
        what="no request in flight",
    )

    def attempts() -> int:
        return sum(WebhookDelivery.objects.values_list("attempts", flat=True))

    during = await sync_to_async(attempts)()
    assert during <= settings.WEBHOOK_BREAKER_FAILURES + 8  # the ones in flight when it opened
    while True:  # the whole cool-down: no attempt
        now = await sync_to_async(attempts)()
        # Read before the state: a count read while the circuit is still open cannot include
        # the probe that its end lets through.
        if await sync_to_async(breaker.state)() != "open":
            break
        assert now == during
        await asyncio.sleep(0.05)

    # It comes back answering 503 for a while, then recovers.
    replies = {"n": 0}

    def flaky(headers, body):
        replies["n"] += 1
        return (503, {}) if replies["n"] <= 2 else (200, {})

    receiver = Receiver(backend.secret, port=port)
    receiver.answer = flaky
    try:
        await until(lambda: len(receiver.received) == 1000, timeout=90, what="all 1,000")
    finally:
        receiver.close()
    assert receiver.unverified == 0
    assert len({h["webhook-id"] for h, _ in receiver.received}) == 1000  # none twice, none lost
    for sequences in in_order_per_session(receiver.received).values():
        assert sequences == sorted(sequences) and len(sequences) == 100


async def test_retry_after_is_honoured(backend, dispatch) -> None:
    backend.answer = lambda headers, body: (429, {"Retry-After": "120"})
    [session] = await sync_to_async(sessions)(1)
    await sync_to_async(produce)([session], 1)
    await dispatch()
    row = await until(
        lambda: WebhookDelivery.objects.filter(attempts=1).first(), what="the first attempt"
    )
    assert row.status == "pending" and row.last_status_code == 429
    assert row.next_attempt_at >= timezone.now() + timedelta(seconds=115)


async def test_410_gone_stops_deliveries_to_that_target(backend, dispatch) -> None:
    backend.answer = lambda headers, body: (410, {})
    made = await sync_to_async(sessions)(2)
    await sync_to_async(produce)(made, 3)
    await dispatch()
    await until(
        lambda: WebhookDelivery.objects.filter(status="dead").count() == 6, what="all stopped"
    )
    rows = await sync_to_async(list)(WebhookDelivery.objects.all())
    assert sum(r.attempts for r in rows) <= 2  # the first of each session at most
    assert {r.last_status_code for r in rows} == {410}


async def test_too_old_is_dead_and_replay_delivers_with_the_same_id(
    backend, dispatch, settings, admin_client
) -> None:
    settings.WEBHOOK_MAX_AGE = 60
    backend.answer = lambda headers, body: (500, {})
    [session] = await sync_to_async(sessions)(1)
    await sync_to_async(produce)([session], 1)
    await sync_to_async(WebhookDelivery.objects.update)(
        created_at=timezone.now() - timedelta(hours=2)
    )
    await dispatch()
    row = await until(lambda: WebhookDelivery.objects.filter(status="dead").first(), what="dead")
    assert row.attempts == 1 and row.last_status_code == 500

    backend.answer = lambda headers, body: (200, {})
    response = await sync_to_async(admin_client.post)(
        "/admin/gateway/webhookdelivery/", {"action": "replay", "_selected_action": [row.pk]}
    )
    assert response.status_code == 302
    await until(lambda: len(backend.received) == 1, what="the replay")
    assert backend.received[0][0]["webhook-id"] == str(row.event_id)


async def test_an_event_rejected_for_good_is_dead_and_its_session_goes_on(
    backend, dispatch, settings
) -> None:
    """The poison event: the backend answers 400 to one event of a session, forever, and 200 to
    everything else. That event is `dead` after WEBHOOK_REJECTED_ATTEMPTS attempts (not retried
    for WEBHOOK_MAX_AGE with the session's later events waiting behind it), which then arrive in
    order, and the other session's are unaffected; replayed once the backend accepts it, it
    arrives with the same webhook-id."""
    assert settings.WEBHOOK_REJECTED_ATTEMPTS == 3  # the default
    poisoned, other = await sync_to_async(sessions)(2)
    await sync_to_async(produce)([poisoned, other], 5)
    poison = await sync_to_async(WebhookDelivery.objects.get)(session=poisoned, payload__n=1)
    theirs = await sync_to_async(list)(
        WebhookDelivery.objects.filter(session=poisoned).values_list("sequence", flat=True)
    )
    before = sorted(n for n in theirs if n < poison.sequence)
    after = sorted(n for n in theirs if n > poison.sequence)
    answered: list[tuple[str, int, int]] = []  # (session id, sequence, status), as answered

    def rejecting(headers, body):
        session = body["session"]["id"]
        status = 400 if (session, body["sequence"]) == (str(poisoned.pk), poison.sequence) else 200
        answered.append((session, body["sequence"], status))
        return status, {}

    backend.answer = rejecting
    await dispatch()
    dead = await until(
        lambda: WebhookDelivery.objects.filter(status="dead").first(),
        timeout=20,  # two backoffs: at most 2 s, then 4 s
        what="the rejected event dead",
    )
    assert (dead.pk, dead.attempts, dead.last_status_code) == (poison.pk, 3, 400)
    assert dead.last_error == (
        "rejected: HTTP 400 on 3 attempts; replay once the receiver accepts it"
    )
    await until(lambda: len(backend.received) == 9, what="every other event")
    await until(
        lambda: WebhookDelivery.objects.filter(status="delivered").count() == 9,
        what="all recorded as delivered",
    )
    assert backend.unverified == 0
    sequences = in_order_per_session(backend.received)
    assert sequences[str(other.pk)] == sorted(sequences[str(other.pk)])
    assert len(sequences[str(other.pk)]) == 5
    assert sequences[str(poisoned.pk)] == before + after
    # In order until it was given up: the session's later events only after its 3rd rejection.
    assert [(n, code) for session, n, code in answered if session == str(poisoned.pk)] == [
        *((n, 200) for n in before),
        *[(poison.sequence, 400)] * 3,
        *((n, 200) for n in after),
    ]

    backend.answer = lambda headers, body: (200, {})  # the backend is fixed: replay it
    assert await sync_to_async(deliveries_replay)(ids=[poison.pk]) == 1
    await until(lambda: len(backend.received) == 10, what="the replay")
    headers, body = backend.received[-1]
    assert headers["webhook-id"] == str(poison.event_id) == body["id"]
    await until(
        lambda: WebhookDelivery.objects.get(pk=poison.pk).status == "delivered",
        what="the replay recorded",
    )


async def test_a_stale_qr_event_is_not_delivered_as_current(backend, dispatch) -> None:
    [session] = await sync_to_async(sessions)(1)

    def changes() -> None:
        with transaction.atomic():
            outbox_event(session, "session.status", "/s", qr={"code": "old"})
        with transaction.atomic():
            outbox_event(session, "session.status", "/s")  # linked since
        with transaction.atomic():  # rolled back: no event
            outbox_event(session, "session.status", "/s", qr={"code": "never"})
            transaction.set_rollback(True)

    await sync_to_async(changes)()
    await dispatch()
    await until(lambda: len(backend.received) == 1, what="the current status")
    assert "qr" not in backend.received[0][1]
    # The receiver keeps a request before it answers: the dispatcher records it after.
    await until(
        lambda: (
            sorted(WebhookDelivery.objects.values_list("status", flat=True))
            == ["delivered", "superseded"]
        ),
        what="one delivered, the stale QR superseded",
    )


async def test_a_slow_backend_never_slows_whatsapp_traffic(backend, start_worker, api) -> None:
    held, holding = threading.Event(), threading.Event()
    backend.answer = lambda headers, body: (holding.set(), held.wait(30), (200, {}))[2]
    try:
        runtime = await start_worker()
        session = await linked(runtime)
        await until(holding.is_set, what="the backend to sit on a webhook")
        response = await sync_to_async(api.post)(
            f"/api/v1/sessions/{session.id}/messages",
            {"to": "+4915123456789", "text": "fast"},
            format="json",
        )
        # Read on the phone while the backend still sits on the first webhook.
        await until(
            lambda: Message.objects.get(pk=response.json()["id"]).status == "read",
            what="the message read",
        )
        assert not held.is_set() and backend.received == []  # still unanswered
    finally:
        held.set()
    cache.clear()


async def test_a_worker_told_not_to_deliver_leaves_its_webhooks_to_the_dispatchers(
    backend, start_worker, dispatch, settings
) -> None:
    """WORKER_DELIVERS_WEBHOOKS off: a busy worker's CPU goes to its sessions, and the
    `deliver_webhooks` processes deliver what it writes."""
    settings.WORKER_DELIVERS_WEBHOOKS = False
    assert not RuntimeConfig.from_settings().delivers_webhooks
    runtime = await start_worker(delivers_webhooks=False)
    assert runtime.dispatcher is None
    session = await linked(runtime)
    written = await sync_to_async(
        lambda: list(WebhookDelivery.objects.filter(session_id=session.id).values("attempts"))
    )()
    assert written and all(row["attempts"] == 0 for row in written)  # none attempted
    assert backend.received == []
    await dispatch()
    rows = WebhookDelivery.objects.filter(session_id=session.id)
    await until(lambda: not rows.filter(status="pending").exists(), what="a dispatcher")
    delivered = await sync_to_async(rows.filter(status="delivered").count)()
    assert delivered and len(backend.received) == delivered  # the rest were stale QR codes
