"""A worker's storage (S3) going away and coming back, in process: snapshots and inbound media are
retried with backoff, one attempt per retry for all the worker's sessions, what waited follows as
soon as the storage is back, and /metrics says how old the snapshot its changed auth state waits
on is. (tests/workers/runtime/test_snapshot_faults.py stops a real S3 under worker processes.)"""

from __future__ import annotations

import os
import time

import pytest
from asgiref.sync import sync_to_async
from django.core.files.storage import storages
from django.test import Client

from messaging.models import Message
from sessions_app.services import snapshots
from tests.gateway.test_metrics import scrape, value
from tests.workers.runtime.test_messages import png
from tests.workers.runtime.test_runtime import linked, session_row, until
from workers.runtime.storage import StorageRetry
from workers.runtime.worker import WorkerRuntime

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_retries_back_off_and_an_early_failure_puts_nothing_off() -> None:
    clock, back = Clock(), []
    retry = StorageRetry(first=1, longest=8, on_back=lambda: back.append(clock.now), clock=clock)
    assert retry.due() and retry.wait(60) == 60

    delays = []
    for _ in range(5):
        delays.append(retry.failed("refused"))
        assert not retry.due()
        clock.now += delays[-1]
        assert retry.due()
    assert delays == [1, 2, 4, 8, 8]
    assert retry.failed("refused") == 8
    clock.now += 3
    assert retry.failed("another session's, at the same moment") == 5  # not put off
    assert retry.wait(60) == 5 and retry.wait(2) == 2

    clock.now += 5
    retry.succeeded()
    assert back == [clock.now] and not retry.down and retry.due()
    retry.succeeded()  # up already: nothing to announce
    assert back == [clock.now]
    assert retry.failed("refused") == 1  # a new outage starts from the first delay


class Uploads:
    """Counts the calls of a storage's `save`, refused while `down`."""

    def __init__(self, storage, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls, self.down, save = 0, True, storage.save

        def counted(*args, **kwargs):
            self.calls += 1
            if self.down:
                raise ConnectionRefusedError("S3 is down")
            return save(*args, **kwargs)

        monkeypatch.setattr(storage, "save", counted)


def change_store(runtime: WorkerRuntime, session_id) -> None:
    """The engine's store changed (neonize's does with every message; the sandbox's only at a
    link)."""
    store = runtime.config.auth_root / str(session_id) / snapshots.STORE
    later = time.time() + 5
    os.utime(store, (later, later))


def age_and_stale(runtime: WorkerRuntime) -> tuple[float, float]:
    samples = scrape(Client())
    return (
        value(samples, "gateway_worker_snapshot_age_seconds", worker=runtime.config.name),
        value(samples, "gateway_worker_snapshots_stale", worker=runtime.config.name),
    )


async def test_while_storage_is_down_one_snapshot_is_tried_per_retry(
    start_worker, monkeypatch
) -> None:
    runtime = await start_worker()
    ids = [(await linked(runtime, f"+1555000000{n}")).id for n in range(5)]
    await until(
        lambda: all(session_row(i).snapshot_key for i in ids), what="the snapshots after linking"
    )
    keys = {i: (await sync_to_async(session_row)(i)).snapshot_key for i in ids}
    uploads = Uploads(storages["sessions"], monkeypatch)
    for session_id in ids:
        change_store(runtime, session_id)

    assert not await runtime.step_snapshots()
    assert uploads.calls == 1  # the other four would have failed the same way
    assert runtime.counters["snapshot_failures"] == 1
    assert not await runtime.step_snapshots() and uploads.calls == 1  # its retry is not due
    assert 0 < runtime.storage.wait(60) <= 1

    runtime.storage.retry_at = 0  # due
    assert not await runtime.step_snapshots()
    assert uploads.calls == 2 and 1 < runtime.storage.wait(60) <= 2

    uploads.down = False
    runtime.storage.retry_at = 0
    assert await runtime.step_snapshots()
    assert uploads.calls == 7 and not runtime.storage.down  # the probe, then every other one
    rows = [await sync_to_async(session_row)(i) for i in ids]
    assert all(row.snapshot_key != keys[row.pk] for row in rows)
    assert all(row.status == "connected" for row in rows)


async def test_the_snapshot_age_shows_how_long_changed_auth_state_has_waited(
    start_worker, monkeypatch
) -> None:
    runtime = await start_worker()
    idle, busy = await linked(runtime, "+15550001"), await linked(runtime, "+15550002")
    await until(lambda: session_row(busy.id).snapshot_key, what="the snapshots after linking")
    await until(lambda: runtime.snapshot_figures()["oldest"] is None, what="nothing waiting")
    await runtime.step_heartbeat()  # the heartbeat carries the figures
    assert await sync_to_async(age_and_stale)(runtime) == (0, 0)

    uploads = Uploads(storages["sessions"], monkeypatch)
    runner = runtime.runners[str(busy.id)]
    runner.snapshot_at -= 300  # its newest snapshot is 5 minutes old …
    change_store(runtime, busy.id)  # … and its auth state changed since
    runtime.runners[str(idle.id)].snapshot_at -= 3600  # old, but nothing to snapshot: left out
    assert not await runtime.step_snapshots() and uploads.calls == 1
    await runtime.step_heartbeat()

    age, stale = await sync_to_async(age_and_stale)(runtime)
    assert 300 <= age < 330 and stale == 1

    uploads.down = False
    runtime.storage.retry_at = 0
    assert await runtime.step_snapshots()
    await runtime.step_heartbeat()
    assert await sync_to_async(age_and_stale)(runtime) == (0, 0)


async def test_a_worker_stopping_while_storage_is_down_does_not_try_every_snapshot(
    start_worker, monkeypatch
) -> None:
    """A SIGTERM during an outage: one failed attempt is enough to know (an unreachable S3 costs
    seconds of timeouts per attempt, and a worker of thousands of sessions would be killed before
    it released their leases). The next owner restores the last snapshot stored."""
    runtime = await start_worker()
    ids = [(await linked(runtime, f"+1555000000{n}")).id for n in range(4)]
    await until(lambda: all(session_row(i).snapshot_key for i in ids), what="the snapshots")
    uploads = Uploads(storages["sessions"], monkeypatch)
    for session_id in ids:
        change_store(runtime, session_id)
    await runtime.step_snapshots()  # finds the storage down
    tried = uploads.calls
    runtime.storage.retry_at = time.monotonic() + 60  # its next retry is a minute away

    runtime.stop.set()
    await until(lambda: all(session_row(i).worker is None for i in ids), what="the leases released")
    assert uploads.calls == tried == 1
    assert {(await sync_to_async(session_row)(i)).status for i in ids} == {"stopped"}


async def test_inbound_media_wait_for_the_storage_and_follow_at_once_when_it_is_back(
    start_worker, monkeypatch
) -> None:
    runtime = await start_worker()
    probe, session = await linked(runtime, "+15550001"), await linked(runtime, "+15550002")
    await until(lambda: session_row(probe.id).snapshot_key, what="the snapshots after linking")
    engine = runtime.engines["sandbox"]
    downloads, download = [], engine.download

    async def counted(*args):
        downloads.append(args[1])
        return await download(*args)

    engine.download = counted
    uploads = Uploads(storages["default"], monkeypatch)

    async def receive(wa_message_id: str) -> None:
        await engine.receive(
            str(session.id),
            sender_phone="+4915100000002",
            type="image",
            media=png(),
            mime_type="image/png",
            wa_message_id=wa_message_id,
        )
        await until(lambda: Message.objects.filter(wa_message_id=wa_message_id).exists())

    await receive("I1")
    await until(lambda: uploads.calls == 1, what="the refused upload")
    assert runtime.storage.down
    await receive("I2")
    await runtime.runners[str(session.id)].retry_pending_media()  # as its sender retries
    assert len(downloads) == 1 and uploads.calls == 1  # nothing downloaded only to be refused
    pending = Message.objects.filter(media_pending=True)
    assert await sync_to_async(pending.count)() == 2

    uploads.down = False
    change_store(runtime, probe.id)
    runtime.storage.retry_at = 0
    assert await runtime.step_snapshots()  # another session's snapshot finds the storage back
    # What waited follows now, not at its session's next retry (MEDIA_RETRY_SECONDS, 30 s).
    await until(lambda: not pending.exists(), timeout=10, what="every media stored")
    stored = await sync_to_async(Message.objects.get)(wa_message_id="I2")
    with stored.media.open() as f:
        assert f.read() == png()


async def test_a_session_with_no_snapshot_links_while_the_storage_is_down(start_worker) -> None:
    """Only a snapshot to download waits for the storage: a new session shows its QR code."""
    runtime = await start_worker()
    runtime.storage.failed("S3 is down")
    runtime.storage.retry_at = time.monotonic() + 60

    session = await linked(runtime)

    assert (await sync_to_async(session_row)(session.id)).status == "connected"
