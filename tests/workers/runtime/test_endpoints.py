"""Webhook endpoints delivered by the dispatcher to real HTTP receivers that verify every request
with `standardwebhooks`: routing, each endpoint's own secret and rotation, a dead and a slow
endpoint beside a live one, a failing one's own circuit breaker, 410, and the address check
before every request."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.core.usage import usage_periods
from gateway.outbox import endpoints
from gateway.outbox.breaker import breaker_for
from gateway.outbox.models import Endpoint, WebhookDelivery
from tests.processes import free_port
from tests.workers.runtime.test_runtime import until
from tests.workers.runtime.test_webhooks import (
    Receiver,
    in_order_per_session,
    produce,
    sessions,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _local(local_endpoints):
    pass


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        receiver = Receiver(endpoints.new_secret(), **kwargs)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close()


def webhooks_usage() -> dict[str, tuple[int, int]]:
    """Each session's (webhooks delivered, failed) in the usage counters of the last day."""
    now = timezone.now()
    periods = usage_periods(
        start=now - timedelta(days=1), end=now + timedelta(days=1), granularity="day"
    )
    figures: dict[str, list[int]] = {}
    for period in periods:
        sums = figures.setdefault(str(period["session"]), [0, 0])
        sums[0] += period["webhooks"]["delivered"]
        sums[1] += period["webhooks"]["failed"]
    return {session: (d, f) for session, (d, f) in figures.items() if d or f}


def endpoint_for(receiver: Receiver | None, *, url: str = "", **fields) -> Endpoint:
    url = url or f"http://127.0.0.1:{receiver.port}/hook"
    secret = receiver.secret if receiver else endpoints.new_secret()
    return endpoints.endpoint_create(url=url, secret=secret, **fields)


async def test_each_endpoint_gets_its_events_signed_with_its_secret(receivers, dispatch) -> None:
    a, b = await sync_to_async(sessions)(2)
    first, second = receivers(), receivers()
    await sync_to_async(endpoint_for)(
        first, events=["test.*"], sessions=[str(a.pk)], headers={"X-Tenant": "one"}
    )
    await sync_to_async(endpoint_for)(second, events=["*"])
    await sync_to_async(produce)([a, b], 10)
    await dispatch()
    await until(lambda: len(first.received) == 10 and len(second.received) == 20, what="all")
    assert first.unverified == second.unverified == 0  # each verified with its own secret
    assert {body["session"]["id"] for _, body in first.received} == {str(a.pk)}
    assert {headers["x-tenant"] for headers, _ in first.received} == {"one"}
    for sequences in in_order_per_session(second.received).values():
        assert sequences == sorted(sequences) and len(sequences) == 10
    # Usage counts every delivery, per session: a's 10 twice (two endpoints), b's 10 once.
    await until(lambda: webhooks_usage() == {str(a.pk): (20, 0), str(b.pk): (10, 0)}, what="usage")
    # The same event, the same id, at both endpoints.
    assert {h["webhook-id"] for h, _ in first.received} <= {
        h["webhook-id"] for h, _ in second.received
    }


async def test_a_dead_and_a_slow_endpoint_never_delay_a_live_one(
    receivers, dispatch, settings
) -> None:
    settings.WEBHOOK_CONCURRENCY = 4  # one endpoint may hold one request at a time
    settings.WEBHOOK_TIMEOUT_SECONDS = 60
    made = await sync_to_async(sessions)(3)
    live, slow = receivers(), receivers()
    release = threading.Event()

    def stuck(headers, body):
        release.wait(60)
        return 200, {}

    slow.answer = stuck
    await sync_to_async(endpoint_for)(live)
    await sync_to_async(endpoint_for)(slow)
    await sync_to_async(endpoint_for)(None, url=f"http://127.0.0.1:{free_port()}/gone")
    await sync_to_async(produce)(made, 10)
    await dispatch()
    try:
        await until(lambda: len(live.received) == 30, timeout=30, what="the live endpoint's 30")
        assert len(slow.received) == 0  # still stuck on its first request
        for sequences in in_order_per_session(live.received).values():
            assert sequences == sorted(sequences) and len(sequences) == 10
    finally:
        release.set()
    await until(lambda: len(slow.received) == 30, timeout=60, what="the slow one catches up")


async def test_a_quick_endpoint_uses_every_slot_and_gives_them_up_when_another_waits(
    receivers, dispatch, settings
) -> None:
    """Alone, an endpoint that answers quickly gets every slot (not only its quarter); once
    another endpoint's event waits, its chains past the quarter stop after their request under
    way instead of running to their end."""
    settings.WEBHOOK_CONCURRENCY = 4  # a quarter: one slot
    busy, other = receivers(), receivers()
    in_flight, most = [0], [0]
    lock = threading.Lock()

    def quick(headers, body):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        threading.Event().wait(0.1)  # well within FAST_ANSWER
        with lock:
            in_flight[0] -= 1
        return 200, {}

    busy.answer = quick
    mine, theirs = await sync_to_async(sessions)(4), await sync_to_async(sessions)(1)
    await sync_to_async(endpoint_for)(busy, sessions=[str(s.pk) for s in mine])
    await sync_to_async(endpoint_for)(other, sessions=[str(theirs[0].pk)])
    await sync_to_async(produce)(mine, 16)  # four chains of 16, 1.6 s each
    await dispatch()
    await until(lambda: len(busy.received) >= 8, what="the busy endpoint under way")
    await sync_to_async(produce)(theirs, 1)
    await until(lambda: other.received, timeout=30, what="the other endpoint's event")
    # Its chains would each have run 1.6 s to their end before the other's event got a slot
    # (~60 of the 64 delivered by then).
    assert len(busy.received) < 40
    assert most[0] == 4  # every slot, not one
    await until(lambda: len(busy.received) == 64, timeout=30, what="the rest")
    for sequences in in_order_per_session(busy.received).values():
        assert sequences == sorted(sequences) and len(sequences) == 16


async def test_a_failing_endpoint_opens_its_own_circuit_and_a_live_one_keeps_receiving(
    receivers, dispatch, settings
) -> None:
    """Two endpoints on one receiver (one host and port): the one it answers 500 trips its own
    breaker, which then holds back every attempt; the other's stays closed and gets all."""
    settings.WEBHOOK_BREAKER_COOL_DOWN_SECONDS = 60  # open for the rest of the test
    receiver = receivers()
    receiver.answer = lambda headers, body: (500, {}) if "x-fail" in headers else (200, {})
    failing = await sync_to_async(endpoint_for)(receiver, headers={"X-Fail": "yes"})
    live = await sync_to_async(endpoint_for)(receiver)
    made = await sync_to_async(sessions)(3)
    await sync_to_async(produce)(made, 20)
    await dispatch()
    failing_breaker, live_breaker = (breaker_for(e.url, e.pk) for e in (failing, live))
    await until(lambda: failing_breaker.state() == "open", what="the failing one's circuit open")
    await until(lambda: len(receiver.received) == 60, timeout=30, what="the live one's 60")
    assert receiver.unverified == 0
    assert not any("x-fail" in headers for headers, _ in receiver.received)
    for sequences in in_order_per_session(receiver.received).values():
        assert sequences == sorted(set(sequences)) and len(sequences) == 20
    assert live_breaker.state() == "closed"
    assert breaker_for(live.url).state() == "closed"  # not the host's: per endpoint

    rows = WebhookDelivery.objects.filter(endpoint=failing)
    await until(  # the requests in flight when it opened have failed too
        lambda: not rows.filter(claimed_until__gt=timezone.now()).exists(),
        what="no request in flight",
    )

    def attempts() -> int:
        return sum(rows.values_list("attempts", flat=True))

    opened = await sync_to_async(attempts)()
    # The ones in flight when it opened: at most one chain of each session, stopped at its head.
    assert settings.WEBHOOK_BREAKER_FAILURES <= opened <= settings.WEBHOOK_BREAKER_FAILURES + 3
    await asyncio.sleep(1.5)  # the dispatcher polls every 0.1 s: an open circuit lets none by
    assert await sync_to_async(attempts)() == opened
    assert await sync_to_async(rows.filter(status="pending").count)() == 60
    await until(
        lambda: WebhookDelivery.objects.filter(endpoint=live, status="delivered").count() == 60,
        what="the live one's recorded as delivered",
    )


async def test_a_rotated_secret_signs_with_both_during_the_overlap(receivers, dispatch) -> None:
    receiver = receivers()
    endpoint = await sync_to_async(endpoint_for)(receiver)
    old = endpoint.secret
    endpoint = await sync_to_async(endpoints.endpoint_rotate_secret)(endpoint, overlap_seconds=3600)
    receiver.secret = endpoint.secret  # the receiver has switched already
    [session] = await sync_to_async(sessions)(1)
    await sync_to_async(produce)([session], 1)
    await dispatch()
    await until(lambda: len(receiver.received) == 1, what="the event")
    headers, body = receiver.received[0]
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    assert len(headers["webhook-signature"].split()) == 2
    Webhook(old).verify(raw, headers)  # a receiver not yet switched accepts it too

    # The overlap is over: the old secret no longer signs.
    await sync_to_async(Endpoint.objects.filter(pk=endpoint.pk).update)(
        previous_secret_until=timezone.now() - timedelta(seconds=1)
    )
    await sync_to_async(produce)([session], 1)
    await until(lambda: len(receiver.received) == 2, what="the second event")
    headers, body = receiver.received[1]
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    assert len(headers["webhook-signature"].split()) == 1
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(raw, headers)


async def test_410_disables_that_endpoint_only(receivers, dispatch) -> None:
    gone, live = receivers(), receivers()
    gone.answer = lambda headers, body: (410, {})
    stopped = await sync_to_async(endpoint_for)(gone)
    await sync_to_async(endpoint_for)(live)
    made = await sync_to_async(sessions)(2)
    await sync_to_async(produce)(made, 5)
    await dispatch()
    await until(lambda: len(live.received) == 10, what="the live endpoint's 10")
    await until(
        lambda: not Endpoint.objects.get(pk=stopped.pk).enabled, what="the endpoint disabled"
    )
    endpoint = await sync_to_async(Endpoint.objects.get)(pk=stopped.pk)
    assert "410" in endpoint.disabled_reason
    rows = WebhookDelivery.objects.filter(endpoint=stopped)
    await until(lambda: not rows.filter(status="pending").exists(), what="none left pending")
    assert await sync_to_async(rows.filter(status="dead").count)() == 10
    # The live endpoint's outcomes are written a moment after its receiver got them.
    counted = {str(s.pk): (5, 5) for s in made}
    await until(lambda: webhooks_usage() == counted, what="every outcome counted")
    await sync_to_async(produce)(made, 1)  # a disabled endpoint gets no new events
    assert await sync_to_async(rows.count)() == 10


async def test_the_address_is_checked_again_before_each_request(
    receivers, dispatch, settings, monkeypatch
) -> None:
    receiver = receivers()
    endpoint = await sync_to_async(endpoint_for)(receiver)
    settings.WEBHOOK_ALLOWED_NETWORKS = []  # loopback is no longer allowed
    connect = socket.socket.connect
    attempts = []

    def guarded(sock, address):
        if address[1] == receiver.port:
            attempts.append(address)
            raise AssertionError("connected to a refused address")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    [session] = await sync_to_async(sessions)(1)
    await sync_to_async(produce)([session], 1)
    await dispatch()
    row = await until(
        lambda: WebhookDelivery.objects.filter(endpoint=endpoint, attempts=1).first(),
        what="the attempt",
    )
    assert row.status == "pending" and row.last_error.startswith("url_forbidden")
    assert attempts == [] and receiver.received == []


async def test_a_worker_delivers_to_endpoints_without_a_backend(receivers, start_worker) -> None:
    receiver = receivers()
    # Only the test's events: the worker also starts the (desired running) sessions, and their
    # status changes would reach an endpoint for "*" in an order the test does not fix.
    await sync_to_async(endpoint_for)(receiver, events=["test.*"])
    await start_worker()  # BACKEND_URL is empty: its dispatcher runs all the same
    made = await sync_to_async(sessions)(2)
    await sync_to_async(produce)(made, 3)
    await until(lambda: len(receiver.received) == 6, what="the endpoint's 6")
    assert receiver.unverified == 0
