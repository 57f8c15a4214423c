"""What only a worker's process can count reaches /metrics through its heartbeat, counted where it
happens: failovers at the claim, engine host restarts by the host's supervisor, messages and their
send latency by the services (`gateway.core.usage.tally`). In process, with the sandbox engine."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.db.models.functions import Now
from django.test import Client

from gateway.core.usage import tally
from sessions_app import services as sessions
from sessions_app.models import Session
from tests.gateway.test_metrics import scrape, value
from tests.workers.engines.test_hosts import sandbox_hosts
from tests.workers.engines.test_sandbox import FAST
from tests.workers.runtime.test_messages import TO
from tests.workers.runtime.test_runtime import create, linked, session_row, until
from workers import services as registry
from workers.models import Worker
from workers.runtime.worker import WorkerRuntime

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


def counted(runtime: WorkerRuntime, name: str) -> float:
    """`name` as the worker's last heartbeat reported it."""
    stats = Worker.objects.get(pk=runtime.worker_id).stats
    return stats.get("counters", {}).get(name, 0)


async def metrics() -> dict:
    return await sync_to_async(scrape)(Client())


async def test_a_session_taken_from_a_worker_whose_lease_ran_out_is_a_failover(
    start_worker,
) -> None:
    # A worker claims a session and dies: its lease runs out with its row still named on it.
    ghost = await sync_to_async(registry.worker_register)(name="ghost", capacity=1, engines=[])
    orphan = await sync_to_async(create)()
    [lease] = await sync_to_async(sessions.sessions_claim)(
        worker_id=ghost.pk, engines=["sandbox"], limit=1, ttl=0.2
    )
    assert lease.taken_over_from is None  # it was free
    await until(
        lambda: Session.objects.filter(pk=orphan.pk, lease_expires_at__lt=Now()).exists(),
        what="the ghost's lease to run out",
    )
    free = await sync_to_async(create)()  # never held: claiming it is no failover

    runtime = await start_worker("w1")

    await until(
        lambda: all(session_row(s.pk).worker_id == runtime.worker_id for s in (orphan, free)),
        what="w1 to claim both",
    )
    await until(lambda: counted(runtime, "failovers") == 1, what="the failover in the heartbeat")
    assert runtime.counters["failovers"] == 1
    assert value(await metrics(), "gateway_failovers_total", worker="w1") == 1


async def test_an_engine_host_that_dies_is_counted_as_a_restart(
    start_worker, tmp_path: Path
) -> None:
    engine = sandbox_hosts(tmp_path / "world", timings=FAST, restart_delay=0.2)
    runtime = await start_worker("h1", engine=engine)
    session = await sync_to_async(create)()
    await until(lambda: session_row(session.id).status == "scan_qr", what="a QR code")
    await engine.control(str(session.id), "scan", phone_number="+15550001")
    await until(lambda: session_row(session.id).status == "connected", what="connected")
    assert value(await metrics(), "gateway_engine_host_restarts_total", worker="h1") == 0

    os.kill(engine.hosts[0].pid, signal.SIGKILL)

    await until(lambda: counted(runtime, "engine_host_restarts") == 1, what="the restart counted")
    assert value(await metrics(), "gateway_engine_host_restarts_total", worker="h1") == 1
    await until(lambda: session_row(session.id).status == "connected", what="it reconnected")


async def test_messages_sent_and_received_and_the_send_latency_are_counted(
    start_worker, api, settings
) -> None:
    settings.SEND_INTERVAL_MIN_SECONDS = settings.SEND_INTERVAL_MAX_SECONDS = 0
    runtime = await start_worker("w1")
    session = await linked(runtime)
    before = tally.figures()

    def grew(name: str) -> float:
        return counted(runtime, name) - before.get(name, 0)

    response = await sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/messages", {"to": TO, "text": "hi"}, format="json"
    )
    assert response.status_code == 202, response.json()
    await runtime.engines["sandbox"].receive(
        str(session.id), sender_phone="+4915100000002", text="hello", wa_message_id="IN1"
    )

    await until(
        lambda: grew("messages_sent") == 1 and grew("messages_received") == 1,
        what="the heartbeat to count both",
    )
    assert await sync_to_async(grew)("send_latency_count") == 1
    samples = await metrics()
    for direction, outcome, name in [
        ("out", "sent", "messages_sent"),
        ("in", "received", "messages_received"),
    ]:
        shown = value(
            samples, "gateway_messages_total", worker="w1", direction=direction, outcome=outcome
        )
        assert shown == before.get(name, 0) + 1
    latency_count = value(samples, "gateway_message_send_latency_seconds_count", worker="w1")
    assert latency_count == before.get("send_latency_count", 0) + 1
