"""Redis going away and coming back, and Redis flushed, under real worker processes (PostgreSQL,
the sandbox engine, a webhook receiver).

Each test runs a Redis of its own on a free port (never the machine's, which other tests share),
killed and started again on the same port, or flushed; the workers and this process (the API, the
sandbox controls) use only it. Throughout: the sessions stay connected, messages are sent, every
webhook is delivered; while Redis is away the QR code and a pairing code answer 503, and once it
is back (or flushed) they answer again and the controls reach the worker again.

REDIS_OUTAGE_SECONDS sets how long Redis stays away (a longer chaos run raises it).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import redis

from gateway.outbox.breaker import breaker_for
from gateway.outbox.models import WebhookDelivery
from messaging.models import Message
from messaging.services import message_send
from sessions_app import services as sessions
from sessions_app.models import Session, SessionEvent
from sessions_app.sandbox import sandbox_control_send
from tests.processes import Processes, free_port, wait_until
from tests.workers.runtime.test_faults import LEASE, held_by, link_all
from tests.workers.runtime.test_webhooks import Receiver, new_secret

pytestmark = pytest.mark.django_db(transaction=True)
REDIS_OUTAGE_SECONDS = float(os.environ.get("REDIS_OUTAGE_SECONDS", "15"))
SENT = ("sent", "delivered", "read", "played")


class PrivateRedis:
    """A redis-server of the test's own, without persistence: a restart forgets everything, as a
    Redis used as a cache does."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = workdir / "redis.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [
                    *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.answers, 10, "the private Redis to answer")

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def flushall(self) -> None:
        self.client().flushall()


@pytest.fixture
def private_redis(tmp_path: Path, settings):
    """The private Redis, as this process's cache and channel layer too."""
    server = PrivateRedis(tmp_path)
    server.start()
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = server.url
    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["hosts"][0]["address"] = server.url
    # Both reset what they made of the old values: Django's caches and channels' layers.
    settings.CACHES, settings.CHANNEL_LAYERS = caches, layers
    settings.WORKER_CALL_SECONDS = 5  # how long a pairing code is waited for
    yield server
    server.kill()


@pytest.fixture
def receiver(settings):
    secret = new_secret()
    backend = Receiver(secret)
    settings.BACKEND_URL = f"http://127.0.0.1:{backend.port}"
    settings.WEBHOOK_SECRET = secret
    yield backend
    backend.close()


@pytest.fixture
def workers(tmp_path: Path, test_database_url: str, private_redis: PrivateRedis, receiver):
    fleet = Processes(
        tmp_path,
        DATABASE_URL=test_database_url,
        REDIS_URL=private_redis.url,
        BACKEND_URL=f"http://127.0.0.1:{receiver.port}",
        WEBHOOK_SECRET=receiver.secret,
        WEBHOOK_BREAKER_FAILURES="3",
        WEBHOOK_BREAKER_COOL_DOWN_SECONDS="2",
        SANDBOX_TIMINGS=json.dumps({"qr_first": 120, "qr_next": 120}),
        WORKER_LEASE_SECONDS=str(LEASE),
        # Paced (the pacing state lives in Redis), by a second at most.
        SEND_INTERVAL_MIN_SECONDS="0",
        SEND_INTERVAL_MAX_SECONDS="1",
    )
    yield fleet
    fleet.stop_all()


_texts = itertools.count()


def send_to_each(ids: list, count: int) -> list:
    """`count` messages queued to each session as the API queues them; their ids."""
    queued = []
    for session in Session.objects.filter(pk__in=ids):
        for _ in range(count):
            accepted = message_send(
                session=session,
                to="4915123456789@s.whatsapp.net",
                type="text",
                text=f"message {next(_texts)}",
                fingerprint="",
            )
            queued.append(accepted.message.pk)
    return queued


def all_sent(message_ids: list) -> bool:
    return Message.objects.filter(pk__in=message_ids, status__in=SENT).count() == len(message_ids)


def sent_webhooks(receiver: Receiver) -> set[str]:
    """The messages whose `sent` status the backend received."""
    return {
        body["message"]["id"]
        for _, body in list(receiver.received)
        if body.get("event") == "message.status" and body["message"]["status"] == "sent"
    }


def pair_code_webhooks(receiver: Receiver, session: Session) -> list[str]:
    """The pairing codes of `session` the backend received, in order."""
    return [
        body["pair_code"]["code"]
        for _, body in list(receiver.received)
        if body.get("pair_code") and body["session"]["id"] == str(session.pk)
    ]


def linking(name: str) -> Session:
    """A session showing a QR code on worker `name`."""
    session, _ = sessions.session_create(external_id=None, engine="sandbox")
    wait_until(lambda: held_by(name, [session.pk], "scan_qr"), 60, "a QR code")
    return session


def qr_status(api, session: Session) -> tuple[int, str]:
    response = api.get(f"/api/v1/sessions/{session.pk}/qr")
    return response.status_code, response.json().get("error", {}).get("code", "")


def pair_code(api, session: Session) -> tuple[int, dict]:
    response = api.post(
        f"/api/v1/sessions/{session.pk}/pair-code", {"phone_number": "+15559990000"}, format="json"
    )
    return response.status_code, response.json()


def control_reaches_the_worker(session_id: object, timeout: float) -> float:
    """Send a `receive` control every half second until one is stored as an inbound message (a
    control published while the worker is not in the session's group is lost, as a push is);
    how long it took."""
    started, sent = time.monotonic(), 0

    def arrived() -> bool:
        nonlocal sent
        if time.monotonic() - started >= sent / 2:
            session = Session.objects.get(pk=session_id)
            text = f"probe {next(_texts)}"
            sandbox_control_send(
                session=session, action="receive", sender_phone="+155501", text=text
            )
            sent += 1
        return Message.objects.filter(
            session_id=session_id, direction="in", text__startswith="probe"
        ).exists()

    wait_until(arrived, timeout, "a control to reach the worker")
    return time.monotonic() - started


def left_connected(ids: list, since: int) -> list:
    """Status changes away from `connected` of the sessions after event `since`."""
    return list(
        SessionEvent.objects.filter(session_id__in=ids, from_status="connected", pk__gt=since)
        .exclude(to_status="connected")
        .values_list("session_id", "to_status", "reason")
    )


def came_back(session_id: object, since: int) -> bool:
    """The session restarted after event `since` and is connected again."""
    after = SessionEvent.objects.filter(session_id=session_id, pk__gt=since).order_by("pk")
    statuses = list(after.values_list("to_status", flat=True))
    return "starting" in statuses and statuses[-1] == "connected"


def last_event() -> int:
    return SessionEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def assert_every_webhook_delivered(receiver: Receiver) -> None:
    """Every row of the outbox delivered (a QR code made stale by a newer status is not sent),
    each one received by the backend, and nothing received that was never written."""
    wait_until(
        lambda: (
            not WebhookDelivery.objects.exclude(status__in=("delivered", "superseded")).exists()
        ),
        60,
        "every webhook delivered",
    )
    delivered = {
        str(e)
        for e in WebhookDelivery.objects.filter(status="delivered").values_list(
            "event_id", flat=True
        )
    }
    received = {headers["webhook-id"] for headers, _ in receiver.received}
    assert delivered and received == delivered


def test_redis_away_for_a_while_costs_no_session_message_or_webhook(
    workers: Processes, private_redis: PrivateRedis, receiver: Receiver, api
) -> None:
    workers.worker("a")
    *steady, restarted = ids = link_all(workers, "a", 3)
    showing = linking("a")
    assert qr_status(api, showing)[0] == 200
    since = last_event()

    private_redis.kill()
    away = time.monotonic()
    # A connection that comes up while Redis is away (here a restart; a WhatsApp drop, a
    # takeover) is connected all the same: its codes cannot be cleared from the cache, no more.
    sessions.session_request_restart(session=Session.objects.get(pk=restarted))
    wait_until(lambda: came_back(restarted, since), REDIS_OUTAGE_SECONDS, "the restart")
    queued = send_to_each(ids, 2)
    wait_until(lambda: all_sent(queued), REDIS_OUTAGE_SECONDS, "messages sent with Redis away")
    wait_until(
        lambda: sent_webhooks(receiver) >= {str(m) for m in queued},
        REDIS_OUTAGE_SECONDS,
        "their webhooks with Redis away",
    )
    assert qr_status(api, showing) == (503, "cache_unavailable")
    status, body = pair_code(api, showing)
    assert (status, body["error"]["code"]) == (503, "cache_unavailable")
    # The worker got the request all the same: its code comes as a webhook.
    wait_until(
        lambda: pair_code_webhooks(receiver, showing), REDIS_OUTAGE_SECONDS, "the code's webhook"
    )
    time.sleep(max(0.0, REDIS_OUTAGE_SECONDS - (time.monotonic() - away)))  # the outage's length

    private_redis.start()
    control_reaches_the_worker(ids[0], 30)
    wait_until(lambda: qr_status(api, showing)[0] == 200, LEASE, "the QR code again")
    status, body = pair_code(api, showing)
    assert status == 200 and body["code"] in pair_code_webhooks(receiver, showing)
    queued += send_to_each(ids, 1)
    wait_until(lambda: all_sent(queued), 30, "messages sent with Redis back")
    assert left_connected(steady, since) == []
    assert Session.objects.filter(pk__in=ids, status="connected").count() == len(ids)
    assert_every_webhook_delivered(receiver)


def test_redis_flushed_costs_no_session_message_or_webhook(
    workers: Processes, private_redis: PrivateRedis, receiver: Receiver, api, settings
) -> None:
    workers.worker("a")
    ids = link_all(workers, "a", 3)
    showing = linking("a")
    assert qr_status(api, showing)[0] == 200
    since = last_event()

    private_redis.flushall()
    queued = send_to_each(ids, 2)
    control_reaches_the_worker(ids[0], 30)
    wait_until(lambda: all_sent(queued), 30, "messages sent after the flush")
    wait_until(lambda: qr_status(api, showing)[0] == 200, LEASE, "the QR code again")
    status, body = pair_code(api, showing)
    assert status == 200 and body["code"]

    # The breaker's state went with the flush: it is counted again from nothing, and opens.
    breaker = breaker_for(settings.BACKEND_URL)
    receiver.answer = lambda headers, body: (503, {})
    queued += send_to_each(ids, 1)
    wait_until(lambda: breaker.state() == "open", 30, "the breaker to open again")
    receiver.answer = lambda headers, body: (200, {})
    wait_until(lambda: all_sent(queued), 30, "messages sent")
    assert left_connected(ids, since) == []
    assert Session.objects.filter(pk__in=ids, status="connected").count() == len(ids)
    assert_every_webhook_delivered(receiver)
