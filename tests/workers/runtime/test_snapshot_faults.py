"""Auth snapshots under faults, with real worker processes: S3 down for a while (a private
SeaweedFS stopped, never the suite's), and a worker killed in the middle of a snapshot upload.

The outage lasts S3_OUTAGE_SECONDS (20 s by default; a chaos run raises it to minutes with the
environment variable of that name).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
from django.core.files.storage import storages
from django.test import Client
from storages.backends.s3 import S3Storage

from gateway.outbox.models import Event
from messaging.models import Message
from scripts.run_tests import SeaweedFS, start_seaweedfs
from sessions_app import services as sessions
from sessions_app.models import Session, SessionEvent
from sessions_app.sandbox import sandbox_control_send
from tests.gateway.test_metrics import scrape, value
from tests.processes import Processes, wait_until
from tests.workers.runtime.test_faults import (
    LEASE,
    assert_one_connection_at_a_time,
    counters,
    held_by,
    link_all,
    qr_counts,
)
from tests.workers.runtime.test_messages import png

pytestmark = pytest.mark.django_db(transaction=True)
S3_OUTAGE_SECONDS = float(os.environ.get("S3_OUTAGE_SECONDS", "20"))
SNAPSHOT_SECONDS = 5  # SNAPSHOT_INTERVAL_SECONDS's minimum


@pytest.fixture
def s3(tmp_path: Path):
    seaweedfs = start_seaweedfs(tmp_path / "s3")
    yield seaweedfs
    seaweedfs.stop()


def fleet(tmp_path: Path, database_url: str, **env: str) -> Processes:
    return Processes(
        tmp_path,
        DATABASE_URL=database_url,
        SANDBOX_TIMINGS=json.dumps({"qr_first": 120, "qr_next": 120}),
        WORKER_LEASE_SECONDS=str(LEASE),
        SNAPSHOT_INTERVAL_SECONDS=str(SNAPSHOT_SECONDS),
        **env,
    )


@pytest.fixture
def workers(tmp_path: Path, test_database_url: str, s3: SeaweedFS):
    """Workers on the private S3."""
    processes = fleet(tmp_path, test_database_url, **s3.env)
    yield processes
    processes.stop_all()


def metric(name: str, worker: str) -> float:
    return value(scrape(Client()), name, worker=worker)


def media_storage(s3: SeaweedFS) -> S3Storage:
    """The workers' media storage (this process's is the suite's S3)."""
    return S3Storage(
        bucket_name=s3.env["S3_BUCKET"],
        endpoint_url=s3.env["S3_ENDPOINT_URL"],
        access_key=s3.access_key,
        secret_key=s3.secret_key,
        region_name="us-east-1",
        location="media",
    )


def receive_media(session_id, wa_message_id: str) -> Message:
    sandbox_control_send(
        session=Session.objects.get(pk=session_id),
        action="receive",
        sender_phone="+4915100000002",
        type="image",
        media_base64=base64.b64encode(png()).decode(),
        mime_type="image/png",
        wa_message_id=wa_message_id,
    )
    return wait_until(
        lambda: Message.objects.filter(wa_message_id=wa_message_id).first(), 30, "the message"
    )


def waiting_for_s3(name: str, ids: list) -> bool:
    return Session.objects.filter(
        pk__in=ids, worker__name=name, status="reconnecting", last_error_code="storage_unavailable"
    ).count() == len(ids)


def steps_since(session_id, since: datetime) -> list[str]:
    events = SessionEvent.objects.filter(session_id=session_id, created_at__gte=since)
    return list(events.order_by("created_at", "id").values_list("to_status", flat=True))


def test_sessions_stay_connected_through_an_s3_outage_and_their_snapshots_follow(
    workers: Processes, s3: SeaweedFS
) -> None:
    """a's sessions stay connected through the outage; one linked meanwhile gets its snapshot
    when S3 is back, and a media received meanwhile is stored then. c is killed as the outage
    starts: b takes its sessions and waits for S3 to restore them (`reconnecting`, no QR code),
    then connects them. Last, a is killed: b restores its sessions too, three from snapshots
    taken before the outage."""
    workers.worker("a", capacity=4)
    ids = link_all(workers, "a", 3)
    late, _ = sessions.session_create(external_id=None, engine="sandbox")
    wait_until(lambda: held_by("a", [late.pk], "scan_qr"), 60, "its QR code")
    doomed = workers.worker("c")
    moved = link_all(workers, "c", 2)
    workers.worker("b")

    s3.stop()
    down, down_at = time.monotonic(), datetime.now().astimezone()
    doomed.kill()
    sandbox_control_send(session=late, action="scan", phone_number="+15559999999")
    message = receive_media(ids[0], "OUTAGE1")
    wait_until(lambda: held_by("a", [late.pk], "connected"), 30, "the link")
    wait_until(lambda: counters("a").get("snapshot_failures", 0) >= 1, 30, "failures counted")
    wait_until(lambda: waiting_for_s3("b", moved), LEASE + 30, "b to wait for S3 with c's")
    # The late session's auth state has waited over two snapshot periods: /metrics says so.
    wait_until(
        lambda: metric("gateway_worker_snapshots_stale", "a") == 1,
        S3_OUTAGE_SECONDS,
        "the stale snapshot on /metrics",
    )
    assert metric("gateway_worker_snapshot_age_seconds", "a") > 2 * SNAPSHOT_SECONDS
    time.sleep(max(0.0, S3_OUTAGE_SECONDS - (time.monotonic() - down)))  # the outage goes on

    everyone = [*ids, late.pk]
    assert held_by("a", everyone, "connected")
    assert not SessionEvent.objects.filter(session_id__in=ids, created_at__gte=down_at).exists()
    assert waiting_for_s3("b", moved)
    for session_id in moved:  # one `starting` (the claim), then `reconnecting` until S3 is back
        steps = steps_since(session_id, down_at)
        assert steps.count("starting") == 1 and steps[-1] == "reconnecting", steps
    assert Session.objects.get(pk=late.pk).snapshot_key == ""
    message.refresh_from_db()
    assert message.media_pending  # kept, waiting for the storage
    received = Event.objects.filter(event_type="message.received")
    assert not received.exists()  # announced once its media is stored

    s3.start()
    up = time.monotonic()
    follow = SNAPSHOT_SECONDS + 10  # the storage's retries come at most every snapshot period
    wait_until(lambda: Session.objects.get(pk=late.pk).snapshot_key, follow, "its snapshot")
    wait_until(lambda: not Message.objects.get(pk=message.pk).media_pending, follow, "the media")
    wait_until(lambda: held_by("b", moved, "connected"), follow, "b to restore c's sessions")
    assert time.monotonic() - up < follow
    message.refresh_from_db()
    with media_storage(s3).open(message.media.name) as stored:
        assert stored.read() == png()
    assert received.get().payload["message"]["wa_message_id"] == "OUTAGE1"
    wait_until(
        lambda: metric("gateway_worker_snapshot_age_seconds", "a") == 0,
        3 * LEASE,
        "the snapshot age back to 0",
    )
    assert metric("gateway_worker_snapshots_stale", "a") == 0

    os.kill(workers.processes["a"].pid, signal.SIGKILL)
    everyone += moved
    wait_until(lambda: held_by("b", everyone, "connected"), LEASE + 60, "b to reconnect them")
    assert set(qr_counts(everyone).values()) == {1}
    assert_one_connection_at_a_time(workers.world, everyone)


def test_a_worker_killed_during_a_snapshot_upload_leaves_the_previous_one_restored(
    tmp_path: Path, test_database_url: str
) -> None:
    """The upload is stored but never made the latest (that is a fenced update after it): the
    next owner restores the snapshot before it and reconnects without a QR code."""
    workers = fleet(tmp_path, test_database_url)  # the suite's S3: nothing is stopped here
    try:
        first = workers.worker("a")
        ids = link_all(workers, "a", 2)
        previous = dict(Session.objects.filter(pk__in=ids).values_list("pk", "snapshot_key"))
        first.send_signal(signal.SIGTERM)  # releases them; their snapshots of the link stay
        assert first.wait(timeout=30) == 0

        # b restores them, and its first snapshot (a restored store counts as changed) dies
        # half-way through.
        doomed = workers.worker("b", GATEWAY_FAILPOINTS="during_snapshot_upload=exit")
        wait_until(lambda: held_by("b", ids, "connected"), 60, "b to reconnect them")
        assert doomed.wait(timeout=SNAPSHOT_SECONDS + 30) == 86  # the failpoint's exit code
        rows = {row.pk: row for row in Session.objects.filter(pk__in=ids)}
        assert {pk: row.snapshot_key for pk, row in rows.items()} == previous
        uploaded = [
            storages["sessions"].listdir(f"{pk}/epoch-{row.lease_epoch:010d}")[1]
            for pk, row in rows.items()
        ]
        assert sorted(map(len, uploaded)) == [0, 1]  # one upload was under way

        workers.worker("c")
        wait_until(lambda: held_by("c", ids, "connected"), LEASE + 60, "c to reconnect them")
        assert set(qr_counts(ids).values()) == {1}
        assert_one_connection_at_a_time(workers.world, ids)
        assert "auth state restored from the latest snapshot" in workers.log("c")
    finally:
        workers.stop_all()
