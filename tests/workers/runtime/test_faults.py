"""Faults with real worker processes (PostgreSQL, Redis, SeaweedFS, the sandbox engine).

Each worker gets a directory of its own (as if on its own machine), so a session can only move
between them through its encrypted snapshot in S3; they share the simulated WhatsApp servers.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import timedelta

import pytest

from sessions_app import services as sessions
from sessions_app.models import Session, SessionEvent
from sessions_app.sandbox import sandbox_control_send
from tests.history import check_history
from tests.processes import Processes, wait_until
from workers.engines.sandbox import SandboxWorld
from workers.models import Worker

pytestmark = pytest.mark.django_db(transaction=True)
LEASE = 6


def held_by(name: str, ids: list, status: str) -> bool:
    """Every session is in `status`, and got there through `name` (a status left behind by
    another worker does not count)."""
    reached = (
        SessionEvent.objects.filter(session_id__in=ids, to_status=status, worker__name=name)
        .values("session_id")
        .distinct()
    )
    return reached.count() == len(ids) and Session.objects.filter(
        pk__in=ids, worker__name=name, status=status
    ).count() == len(ids)


def counters(name: str) -> dict:
    """The counters of the live worker `name`'s last heartbeat (what /metrics shows)."""
    worker = Worker.objects.filter(name=name, status="active").first()
    return (worker.stats if worker else {}).get("counters", {})


def heartbeats_for(name: str, seconds: float) -> None:
    """Wait until worker `name`, alive, heartbeats `seconds` from now by the database's clock:
    time in which any worker could have done what it must not (taken over, reconnected)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        after = cursor.fetchone()[0] + timedelta(seconds=seconds)
    wait_until(
        lambda: Worker.objects.filter(
            name=name, status="active", last_heartbeat_at__gte=after
        ).exists(),
        seconds + 3 * LEASE,
        f"{name} to heartbeat {seconds}s from now",
    )


def link_all(workers: Processes, name: str, count: int) -> list:
    ids = [sessions.session_create(external_id=None, engine="sandbox")[0].pk for _ in range(count)]
    wait_until(lambda: held_by(name, ids, "scan_qr"), 60, f"{name} to show {count} QR codes")
    for number, session in enumerate(Session.objects.filter(pk__in=ids)):
        sandbox_control_send(session=session, action="scan", phone_number=f"+1555{number:07d}")
    wait_until(lambda: held_by(name, ids, "connected"), 60, f"{count} sessions to connect")
    wait_until(
        lambda: Session.objects.filter(pk__in=ids).exclude(snapshot_key="").count() == count,
        60,
        "their snapshots",
    )
    return ids


def assert_one_connection_at_a_time(world: SandboxWorld, ids: list) -> None:
    """In the simulated servers' log, a session never has two open connections."""
    for session_id in ids:
        open_connections: set[str] = set()
        for entry in world.read_log(str(session_id)):
            if entry["event"] == "connect":
                assert not open_connections, (session_id, entry)
                open_connections.add(entry["connection"])
            elif entry["event"] == "disconnect":
                open_connections.discard(entry["connection"])


def qr_counts(ids: list) -> Counter:
    return Counter(
        SessionEvent.objects.filter(session_id__in=ids, to_status="scan_qr").values_list(
            "session_id", flat=True
        )
    )


def test_a_killed_worker_s_sessions_reconnect_elsewhere_without_a_qr(workers: Processes) -> None:
    first = workers.worker("a")
    ids = link_all(workers, "a", 50)
    workers.worker("b")

    os.kill(first.pid, signal.SIGKILL)
    killed = time.monotonic()

    wait_until(lambda: held_by("b", ids, "connected"), LEASE + 60, "b to reconnect all 50")
    assert time.monotonic() - killed < LEASE + 60
    assert set(qr_counts(ids).values()) == {1}  # only the first link ever showed a QR
    assert_one_connection_at_a_time(workers.world, ids)
    # a, killed, never closed its connections: the servers replaced them.
    assert check_history(workers.world, ids, replaced_ok=True) == []
    assert all((workers.workdir / "b" / "auth" / str(i) / "store.sqlite3").exists() for i in ids)
    # Every one a failover (a's leases ran out), counted by b and shown by its next heartbeat.
    wait_until(lambda: counters("b").get("failovers") == 50, LEASE, "b's heartbeat to count 50")


def test_a_killed_neonize_worker_s_sessions_reconnect_elsewhere_without_a_qr(
    neonize_fleet,
) -> None:
    """The same failover with the real neonize adapter in each worker's engine hosts, over the
    double: the sessions move through their encrypted snapshots, WhatsApp sees logins with the
    stored device, never a new QR."""
    fleet, world = neonize_fleet
    first = fleet.worker("a", engines="neonize")
    ids = [sessions.session_create(external_id=None, engine="neonize")[0].pk for _ in range(5)]
    wait_until(lambda: held_by("a", ids, "scan_qr"), 60, "a to show 5 QR codes")
    for number, session_id in enumerate(ids):
        world.scan(str(session_id), f"+1555{number:07d}")
    wait_until(lambda: held_by("a", ids, "connected"), 60, "5 sessions to connect")
    wait_until(
        lambda: Session.objects.filter(pk__in=ids).exclude(snapshot_key="").count() == 5,
        60,
        "their snapshots",
    )
    fleet.worker("b", engines="neonize")
    os.kill(first.pid, signal.SIGKILL)
    wait_until(lambda: held_by("b", ids, "connected"), LEASE + 60, "b to reconnect all 5")
    assert set(qr_counts(ids).values()) == {1}
    for session_id in ids:
        logins = [how for uuid, how, _ in world.logins if uuid == str(session_id)]
        assert logins.count("qr") == 1 and logins[-1].endswith("@s.whatsapp.net")


def test_a_paused_worker_cannot_take_its_sessions_back(workers: Processes) -> None:
    first = workers.worker("a")
    ids = link_all(workers, "a", 3)
    workers.worker("b")

    os.kill(first.pid, signal.SIGSTOP)
    wait_until(lambda: held_by("b", ids, "connected"), LEASE + 60, "b to take over")
    epochs = dict(Session.objects.filter(pk__in=ids).values_list("pk", "lease_epoch"))
    os.kill(first.pid, signal.SIGCONT)

    # Awake again, `a` finds its leases gone and closes its connections; it writes nothing.
    wait_until(
        lambda: workers.log("a").count("closing") >= len(ids),
        30,
        "a to close its stale connections",
    )
    rows = {s.pk: s for s in Session.objects.select_related("worker").filter(pk__in=ids)}
    assert all(r.worker.name == "b" and r.status == "connected" for r in rows.values())
    assert {pk: r.lease_epoch for pk, r in rows.items()} == epochs
    assert_one_connection_at_a_time(workers.world, ids)
    for session_id in ids:
        reconnects_by_a = [
            e
            for e in workers.world.read_log(str(session_id))[2:]
            if e["event"] == "connect" and e["worker"] == "a"
        ]
        assert reconnects_by_a == []
    # Paused, a could not close its connections: b's replaced them.
    assert check_history(workers.world, ids, replaced_ok=True) == []


def test_a_crash_right_after_a_claim_only_delays_the_session(workers: Processes) -> None:
    doomed = workers.worker("a", GATEWAY_FAILPOINTS="after_claim=exit")
    session, _ = sessions.session_create(external_id=None, engine="sandbox")

    assert doomed.wait(timeout=30) == 86  # the failpoint's exit code
    row = Session.objects.get(pk=session.pk)
    # The claim committed the new owner with `starting`, in one transaction.
    assert (row.worker.name, row.lease_epoch, row.status) == ("a", 1, "starting")
    workers.worker("b")
    wait_until(
        lambda: held_by("b", [session.pk], "scan_qr"),
        LEASE + 30,
        "b to take it once a's lease expired",
    )


def test_workers_survive_their_database_connections_being_killed(workers: Processes) -> None:
    from django.db import connection

    workers.worker("a")
    ids = link_all(workers, "a", 3)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1

    # Still alive and in charge: a change is carried out, the other sessions stay connected.
    sessions.session_request_stop(session=Session.objects.get(pk=ids[0]))
    wait_until(
        lambda: (
            held_by("a", [ids[0]], "stopped")
            or Session.objects.filter(pk=ids[0], status="stopped", worker=None).exists()
        ),
        30,
        "the stop to be carried out",
    )
    assert Session.objects.filter(pk__in=ids[1:], worker__name="a", status="connected").count() == 2
    assert workers.processes["a"].poll() is None


def test_storage_being_down_never_disconnects_a_session(workers: Processes) -> None:
    workers.worker("a", S3_ENDPOINT_URL="http://127.0.0.1:1")  # nothing listens there
    session, _ = sessions.session_create(external_id=None, engine="sandbox")
    wait_until(lambda: held_by("a", [session.pk], "scan_qr"), 60, "a QR code")

    sandbox_control_send(session=session, action="scan", phone_number="+15550001")

    wait_until(lambda: held_by("a", [session.pk], "connected"), 60, "the link")
    wait_until(lambda: "auth snapshot failed" in workers.log("a"), 60, "the failed snapshot")
    wait_until(lambda: counters("a").get("snapshot_failures", 0) >= 1, LEASE, "it counted")
    row = Session.objects.get(pk=session.pk)
    assert (row.status, row.snapshot_key) == ("connected", "")
    assert (workers.workdir / "a" / "auth" / str(session.pk) / "store.sqlite3").exists()


def test_a_crash_after_sending_before_the_commit_never_sends_twice(workers: Processes) -> None:
    from messaging.models import Message
    from messaging.services import message_send

    no_pacing = {"SEND_INTERVAL_MIN_SECONDS": "0", "SEND_INTERVAL_MAX_SECONDS": "0"}
    doomed = workers.worker("a", GATEWAY_FAILPOINTS="after_send_before_commit=exit", **no_pacing)
    [session_id] = link_all(workers, "a", 1)
    message = message_send(
        session=Session.objects.get(pk=session_id),
        to="4915123456789@s.whatsapp.net",
        type="text",
        text="only once",
        fingerprint="",
    ).message
    wait_until(lambda: doomed.poll() is not None, 30, "a to exit at the failpoint")
    assert Message.objects.get(pk=message.pk).status == "sending"  # sent, but not recorded

    workers.worker("b", **no_pacing)
    wait_until(
        lambda: Message.objects.get(pk=message.pk).status in ("sent", "delivered", "read"),
        LEASE + 60,
        "b to finish the send",
    )
    on_phone = [
        m for m in workers.world.phone_messages(str(session_id)) if m["text"] == "only once"
    ]
    assert len(on_phone) == 1  # the retry used the same WhatsApp id: no second copy
    assert on_phone[0]["id"] == Message.objects.get(pk=message.pk).wa_message_id


def test_a_crash_after_the_response_redelivers_with_the_same_webhook_id(
    workers: Processes, settings
) -> None:
    from django.db import transaction

    from gateway.outbox.models import WebhookDelivery
    from sessions_app.events import outbox_event
    from tests.workers.runtime.test_webhooks import Receiver, new_secret

    secret = new_secret()
    receiver = Receiver(secret)
    backend = {
        "BACKEND_URL": f"http://127.0.0.1:{receiver.port}",
        "WEBHOOK_SECRET": secret,
        "WEBHOOK_TIMEOUT_SECONDS": "2",  # a crashed claim runs out after 2 * 2 + 5 s
    }
    settings.BACKEND_URL = backend["BACKEND_URL"]
    session = Session.objects.create(engine="sandbox")
    with transaction.atomic():
        outbox_event(session, "test.event", "/api/webhooks/test")
    try:
        doomed = workers.start(
            "d1",
            "deliver_webhooks",
            GATEWAY_FAILPOINTS="after_webhook_response_before_commit=exit",
            **backend,
        )
        wait_until(lambda: doomed.poll() is not None, 30, "the dispatcher to exit at the failpoint")
        assert len(receiver.received) == 1  # the backend has it; the gateway never recorded it
        assert WebhookDelivery.objects.get().status == "pending"

        workers.start("d2", "deliver_webhooks", **backend)
        wait_until(
            lambda: WebhookDelivery.objects.get().status == "delivered",
            60,  # after the crashed claim runs out
            "the redelivery",
        )
        ids = [headers["webhook-id"] for headers, _ in receiver.received]
        assert len(ids) == 2 and ids[0] == ids[1] == str(WebhookDelivery.objects.get().event_id)
    finally:
        receiver.close()


def test_deliver_webhooks_runs_for_endpoints_alone_without_a_backend_url(
    workers: Processes, local_endpoints
) -> None:
    """Endpoints made through the API need no BACKEND_URL: a dispatcher on its own delivers to
    them (it refused to start without one)."""
    from django.db import transaction

    from sessions_app.events import outbox_event
    from tests.workers.runtime.test_endpoints import endpoint_for
    from tests.workers.runtime.test_webhooks import Receiver, new_secret

    receiver = Receiver(new_secret())
    try:
        endpoint_for(receiver)
        session = Session.objects.create(engine="sandbox")
        with transaction.atomic():
            outbox_event(session, "test.event", "/api/webhooks/test")
        dispatcher = workers.start(
            "d1", "deliver_webhooks", BACKEND_URL="", WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8"
        )
        wait_until(lambda: receiver.received or dispatcher.poll() is not None, 30, "the delivery")
        assert dispatcher.poll() is None, "deliver_webhooks exited"
        [(_, body)] = receiver.received
        assert body["session"]["id"] == str(session.pk)
    finally:
        receiver.close()


def test_a_crash_before_a_batch_of_outcomes_is_written_redelivers_each_in_order(
    workers: Processes, settings
) -> None:
    """Outcomes are written in batches: every delivery answered but not yet written when the
    dispatcher died is delivered again (same `webhook-id`), and each session's events still
    arrive in order."""
    import threading

    from django.db import transaction

    from gateway.outbox.models import WebhookDelivery
    from sessions_app.events import outbox_event
    from tests.workers.runtime.test_webhooks import Receiver, new_secret

    secret = new_secret()
    receiver = Receiver(secret)
    # The first 8 requests (one dispatcher's slots) are answered together: a batch to write.
    together = threading.Barrier(8)
    receiver.answer = lambda headers, body: (
        together.wait(10) if len(receiver.received) < 8 else None,
        (200, {}),
    )[1]
    backend = {
        "BACKEND_URL": f"http://127.0.0.1:{receiver.port}",
        "WEBHOOK_SECRET": secret,
        "WEBHOOK_CONCURRENCY": "8",
        "WEBHOOK_TIMEOUT_SECONDS": "2",  # a crashed claim runs out after 2 * 2 + 5 s
    }
    settings.BACKEND_URL = backend["BACKEND_URL"]
    made = [Session.objects.create(engine="sandbox") for _ in range(10)]
    for n in range(3):
        for session in made:
            with transaction.atomic():
                outbox_event(session, "test.event", "/api/webhooks/test", n=n)
    try:
        doomed = workers.start(
            "d1",
            "deliver_webhooks",
            GATEWAY_FAILPOINTS="after_webhook_response_before_commit=exit",
            **backend,
        )
        wait_until(lambda: doomed.poll() is not None, 30, "the dispatcher to exit at the failpoint")
        answered = [headers["webhook-id"] for headers, _ in receiver.received]
        assert answered and WebhookDelivery.objects.filter(status="delivered").count() == 0

        workers.start("d2", "deliver_webhooks", **backend)
        wait_until(
            lambda: WebhookDelivery.objects.filter(status="delivered").count() == 30,
            60,  # after the crashed claims run out
            "every event delivered",
        )
        ids = Counter(headers["webhook-id"] for headers, _ in receiver.received)
        assert set(ids) == {
            str(e) for e in WebhookDelivery.objects.values_list("event_id", flat=True)
        }
        assert all(ids[event_id] == 2 for event_id in answered)  # each answered one again
        per_session: dict[str, list[int]] = {}
        for _, body in receiver.received:
            per_session.setdefault(body["session"]["id"], []).append(body["sequence"])
        for sequences in per_session.values():
            assert sequences == sorted(sequences)  # a redelivery comes before the next event
    finally:
        receiver.close()
