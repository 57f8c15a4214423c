"""The worker runtime, in process, on PostgreSQL, with the sandbox engine."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from gateway.outbox.models import Event
from sessions_app import services as sessions
from sessions_app.models import Session, SessionEvent
from sessions_app.services import qr
from workers.engines.sandbox import SandboxWorld
from workers.models import Worker
from workers.runtime.db import db
from workers.runtime.worker import WorkerRuntime

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def until(check: Callable[[], object], timeout: float = 10, what: str = "") -> object:
    """Wait until `check()` (run in a thread, so it may query) is truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = await sync_to_async(check)()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)


def session_row(session_id) -> Session:
    return Session.objects.select_related("worker").get(pk=session_id)


def create(**fields) -> Session:
    return sessions.session_create(external_id=None, engine="sandbox", **fields)[0]


async def linked(runtime: WorkerRuntime, phone: str = "+15550001") -> Session:
    session = await sync_to_async(create)()
    await until(lambda: session_row(session.id).status == "scan_qr", what="a QR code")
    await runtime.engines["sandbox"].scan(str(session.id), phone)
    await until(lambda: session_row(session.id).status == "connected", what="connected")
    return session


async def test_a_new_session_is_claimed_shows_a_qr_and_connects_when_scanned(start_worker) -> None:
    runtime = await start_worker()
    session = await linked(runtime)

    row = await sync_to_async(session_row)(session.id)
    assert (row.worker.name, row.lease_epoch, row.phone_number) == ("w1", 1, "+15550001")
    assert row.jid == "15550001@s.whatsapp.net" and row.linked_at is not None
    steps = await sync_to_async(
        lambda: list(
            SessionEvent.objects.filter(session=session)
            .order_by("id")
            .values_list("from_status", "to_status")
        )
    )()
    assert steps == [("stopped", "starting"), ("starting", "scan_qr"), ("scan_qr", "connected")]
    assert await sync_to_async(qr.code_get)(session_id=session.id, kind="qr") is None


async def test_the_qr_code_is_in_the_cache_while_it_is_valid(start_worker) -> None:
    await start_worker()
    session = await sync_to_async(create)()
    code = await until(lambda: qr.code_get(session_id=session.id, kind="qr"), what="a QR")
    assert code["code"].startswith("2@sandbox,") and code["expires_at"] > time.time()


async def test_a_qr_code_the_cache_forgot_is_put_back(start_worker, world) -> None:
    """A Redis restarted or flushed forgets the codes: the worker writes them again every TTL/3,
    with the time each has left (the API answered 409 `qr_not_available` until the next code,
    20 to 60 s later)."""
    import dataclasses

    from django.core.cache import cache

    from tests.workers.engines.test_sandbox import FAST
    from workers.engines.sandbox import SandboxEngine

    slow = dataclasses.replace(FAST, qr_first=60, qr_next=60)
    await start_worker(lease_seconds=3, engine=SandboxEngine(world, worker="w1", timings=slow))
    session = await sync_to_async(create)()
    code = await until(lambda: qr.code_get(session_id=session.id, kind="qr"), what="a QR")
    await sync_to_async(cache.clear)()
    assert await sync_to_async(qr.code_get)(session_id=session.id, kind="qr") is None
    again = await until(
        lambda: qr.code_get(session_id=session.id, kind="qr"), timeout=5, what="the code again"
    )
    assert again == code


async def test_a_session_links_and_reconnects_while_the_cache_is_down(
    start_worker, settings
) -> None:
    """The codes live in the cache; the session does not need it: a QR code is announced (the
    event carries it), and the connection is recorded though its codes cannot be cleared. Each
    step failed on the cache's error: the session stayed `starting`, or connected unrecorded."""
    import copy

    assert settings.REDIS_URL, "this test needs the Redis configuration of `make test`"
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = "redis://127.0.0.1:1/0"
    settings.CACHES = caches
    runtime = await start_worker()
    session = await linked(runtime)
    announced = await sync_to_async(
        lambda: Event.objects.filter(session_id=session.id, payload__qr__code__isnull=False).count()
    )()
    assert announced >= 1
    await runtime.engines["sandbox"].drop_connection(str(session.id))
    await until(
        lambda: SessionEvent.objects.filter(session=session, to_status="connected").count() == 2,
        what="connected again",
    )


async def test_a_qr_code_nobody_asks_for_is_never_drawn(start_worker, monkeypatch) -> None:
    monkeypatch.setattr(qr, "qr_image", lambda code: pytest.fail(f"{code} drawn"))
    await start_worker()
    session = await sync_to_async(create)()
    code = await until(lambda: qr.code_get(session_id=session.id, kind="qr"), what="a QR")
    assert set(code) == {"code", "expires_at"}  # stored as its text
    # …and announced: the status transaction (and its outbox row and push) ran without drawing.
    await until(lambda: session_row(session.id).status == "scan_qr", what="scan_qr")


async def test_stop_disconnects_keeps_auth_and_releases_the_lease(
    start_worker,
    tmp_path: Path,
) -> None:
    runtime = await start_worker()
    session = await linked(runtime)

    await sync_to_async(sessions.session_request_stop)(session=session)

    row = await until(lambda: (r := session_row(session.id)).status == "stopped" and r, what="stop")
    assert row.worker is None and row.lease_expires_at is None
    assert runtime.engines["sandbox"].status(str(session.id)) == "stopped"
    assert (tmp_path / "auth" / str(session.id) / "store.sqlite3").exists()


async def test_a_restart_reconnects_from_the_store_without_a_qr(start_worker) -> None:
    runtime = await start_worker()
    session = await linked(runtime)
    await sync_to_async(sessions.session_request_stop)(session=session)
    await until(lambda: session_row(session.id).status == "stopped")

    await sync_to_async(sessions.session_request_start)(session=session)

    await until(lambda: session_row(session.id).status == "connected", what="reconnected")
    statuses = await sync_to_async(
        lambda: list(
            SessionEvent.objects.filter(session=session).values_list("to_status", flat=True)
        )
    )()
    assert statuses.count("scan_qr") == 1


async def test_logout_unlinks_deletes_auth_and_links_again(
    start_worker,
    world: SandboxWorld,
    tmp_path: Path,
) -> None:
    runtime = await start_worker()
    session = await linked(runtime)

    await sync_to_async(sessions.session_request_logout)(session=session)

    await until(lambda: session_row(session.id).status == "scan_qr", what="a new QR")
    row = await sync_to_async(session_row)(session.id)
    assert row.logout_requested_at is None
    assert row.snapshot_key == ""  # a real logout is the one thing that deletes auth state
    assert not (tmp_path / "auth" / str(session.id) / "store.sqlite3").exists()
    assert "logout" in [e["event"] for e in world.read_log(str(session.id))]


async def test_delete_of_a_running_session_logs_out_then_deletes(start_worker, api) -> None:
    runtime = await start_worker()
    session = await linked(runtime)

    response = await sync_to_async(api.delete)(f"/api/v1/sessions/{session.id}")

    assert response.status_code == 202
    await until(lambda: not Session.objects.filter(pk=session.id).exists(), what="the delete")
    await until(lambda: str(session.id) not in runtime.runners, what="the runner to go")


async def test_an_unscanned_qr_window_fails_the_session(start_worker) -> None:
    await start_worker()
    session = await sync_to_async(create)()

    row = await until(
        lambda: (r := session_row(session.id)).status == "failed" and r.worker is None and r,
        what="qr_timeout, and the lease released",
    )

    assert (row.last_error_code, row.desired_state) == ("qr_timeout", "stopped")


async def test_a_lost_lease_closes_the_connection_without_writing(start_worker) -> None:
    runtime = await start_worker()
    session = await linked(runtime)
    # Another worker claimed it (a new epoch) while this one was not looking.
    await sync_to_async(lambda: Session.objects.filter(pk=session.id).update(lease_epoch=99))()

    await until(lambda: str(session.id) not in runtime.runners, what="the session to be dropped")

    assert runtime.engines["sandbox"].status(str(session.id)) == "stopped"
    row = await sync_to_async(session_row)(session.id)
    assert (row.status, row.lease_epoch) == ("connected", 99)  # nothing written by the loser


@pytest.mark.parametrize("first", ["watchdog", "claim"])
async def test_a_session_whose_lease_ran_out_here_is_claimed_again_after_its_old_connection(
    start_worker, first: str
) -> None:
    """Renewals fell behind and the lease ran out: the watchdog closes the connection, and the
    claim loop may take the session again before that close is done (`watchdog`), or even before
    the watchdog saw it (`claim`). The new connection waits for the old one to close (a start
    meanwhile fails `already_started`, a permanent failure), then reconnects from the store."""
    runtime = await start_worker()
    session = await linked(runtime)
    engine, calls, closing = runtime.engines["sandbox"], [], asyncio.Event()
    real_start, real_stop = engine.start, engine.stop

    async def start(key, auth_dir):
        calls.append("start")
        await real_start(key, auth_dir)

    async def slow_stop(key):
        calls.append("stop")
        await closing.wait()
        await real_stop(key)
        calls.append("stopped")

    engine.start, engine.stop = start, slow_stop
    key, old = str(session.id), runtime.runners[str(session.id)]
    if first == "watchdog":
        old.deadline = 0  # closed by the watchdog now; claimable once the lease has run out
        await until(lambda: runtime.runners.get(key) is not old, what="the watchdog's close")
    await sync_to_async(
        lambda: Session.objects.filter(pk=session.id).update(lease_expires_at=timezone.now())
    )()

    new = await until(
        lambda: (r := runtime.runners.get(key)) is not None and r is not old and r,
        what="the session claimed again by the same worker",
    )
    await until(lambda: calls == ["stop"], what="the old connection's close to begin")
    assert new.epoch > old.epoch
    closing.set()

    await until(lambda: "start" in calls and new.status == "connected", what="reconnected")
    row = await sync_to_async(session_row)(session.id)
    assert (row.status, row.lease_epoch, row.last_error_code) == ("connected", new.epoch, "")
    assert calls == ["stop", "stopped", "start"]


async def test_a_worker_starts_at_most_its_starting_sessions_at_once(start_worker) -> None:
    """Thousands of sessions given to one worker start a batch at a time: each start that ends
    makes room for the next claim, instead of every start queued together."""
    runtime = await start_worker(starting=3)
    engine, gate = runtime.engines["sandbox"], asyncio.Event()
    real_start = engine.start

    async def start(key, auth_dir):
        await gate.wait()
        await real_start(key, auth_dir)

    engine.start = start
    made = [(await sync_to_async(create)()).id for _ in range(8)]

    def starting() -> int:
        return sum(runner.starting for runner in runtime.runners.values())

    await until(lambda: starting() >= 3, what="three starting")
    assert not await runtime.step_claim()  # no room while three are starting
    assert (starting(), len(runtime.runners)) == (3, 3)

    gate.set()
    await until(
        lambda: Session.objects.filter(pk__in=made, status="scan_qr").count() == 8,
        what="all eight showing a QR code",
    )


async def test_renewals_never_wait_behind_the_sessions_own_database_steps(start_worker) -> None:
    runtime = await start_worker()
    session = await linked(runtime)
    gate = threading.Event()
    # Every thread of the sessions' pool busy, and more queued behind them.
    busy = [asyncio.ensure_future(db(gate.wait, 30)) for _ in range(8)]
    try:
        await asyncio.wait_for(runtime.step_renew(), 10)
    finally:
        gate.set()
        await asyncio.gather(*busy)
    assert str(session.id) in runtime.runners


async def test_what_is_wanted_is_re_read_on_a_notify_not_at_every_claim(start_worker) -> None:
    """5,000 sessions re-read at every claim poll were a third of the worker's time: the wanted
    states are re-read when a NOTIFY says one changed (and every TTL/3 for one lost)."""
    runtime = await start_worker(lease_seconds=60)
    session = await linked(runtime)
    claims, reconciles = [], []
    step_claim, step_reconcile = runtime.step_claim, runtime.step_reconcile

    async def claim():
        claims.append(1)
        return await step_claim()

    async def reconcile():
        reconciles.append(1)
        return await step_reconcile()

    runtime.step_claim, runtime.step_reconcile = claim, reconcile
    for turn in range(1, 4):  # claim rounds with nothing wanted changed
        runtime.wake.set()
        await until(lambda turn=turn: len(claims) >= turn, what="a claim round")
    assert reconciles == []

    await sync_to_async(sessions.session_request_stop)(session=session)
    await until(lambda: session_row(session.id).status == "stopped", what="the stop carried out")
    assert reconciles


async def test_a_session_waiting_for_its_scan_has_an_idle_sender(start_worker, monkeypatch) -> None:
    """Thousands of unlinked sessions cost nothing in their senders: they wait to be poked (when
    the session connects), not on a timer."""
    from workers.runtime.sender import Sender

    waits = []
    wait = Sender._wait

    async def recorded(self, seconds):
        waits.append(seconds)
        await wait(self, seconds)

    monkeypatch.setattr(Sender, "_wait", recorded)
    runtime = await start_worker()
    session = await sync_to_async(create)()
    await until(lambda: session_row(session.id).status == "scan_qr", what="a QR code")
    await until(lambda: waits, what="the sender waiting")
    assert set(waits) == {None}
    await runtime.engines["sandbox"].scan(str(session.id), "+15550001")
    await until(lambda: session_row(session.id).status == "connected", what="connected")


async def test_a_graceful_stop_releases_everything(start_worker, caplog) -> None:
    caplog.set_level(logging.INFO, logger="workers.runtime.worker")
    runtime = await start_worker()
    session = await linked(runtime)

    runtime.stop.set()
    await until(lambda: Worker.objects.get(pk=runtime.worker_id).status == "stopped")

    row = await sync_to_async(session_row)(session.id)
    assert (row.status, row.worker, row.desired_state) == ("stopped", None, "running")
    assert (await sync_to_async(Worker.objects.get)(pk=runtime.worker_id)).stopped_at
    # The worker's own lines say which worker wrote them, without each line passing it.
    [line] = await until(
        lambda: [r for r in caplog.records if r.getMessage().startswith("worker stopped")]
    )
    assert line.worker_id == str(runtime.worker_id)


async def test_another_worker_takes_over_without_a_new_qr(start_worker) -> None:
    first = await start_worker("w1")
    session = await linked(first)
    first.stop.set()
    await until(lambda: session_row(session.id).worker is None)

    await start_worker("w2")

    row = await until(
        lambda: (
            (r := session_row(session.id)).status == "connected"
            and r.worker
            and r.worker.name == "w2"
            and r
        ),
        what="w2 to connect it",
    )
    assert row.lease_epoch == 2
    steps = await sync_to_async(
        lambda: list(
            SessionEvent.objects.filter(session=session).values_list("to_status", flat=True)
        )
    )()
    assert steps.count("scan_qr") == 1


async def test_a_worker_on_another_machine_restores_the_snapshot_without_a_qr(
    start_worker,
    tmp_path: Path,
) -> None:
    first = await start_worker("w1")
    session = await linked(first)
    await until(lambda: session_row(session.id).snapshot_key, what="the snapshot after linking")
    first.stop.set()
    await until(lambda: session_row(session.id).worker is None)

    second = await start_worker("w2", auth_root=tmp_path / "machine-2")

    await until(
        lambda: (
            (r := session_row(session.id)).status == "connected"
            and r.worker
            and r.worker.name == "w2"
        ),
        what="w2 to reconnect it from the snapshot",
    )
    assert (tmp_path / "machine-2" / str(session.id) / "store.sqlite3").exists()
    steps = await sync_to_async(
        lambda: list(
            SessionEvent.objects.filter(session=session).values_list("to_status", flat=True)
        )
    )()
    assert steps.count("scan_qr") == 1
    # The runner learns its status when its write returns, a moment after the commit.
    await until(lambda: second.runners[str(session.id)].status == "connected", what="w2's runner")


async def test_a_tampered_snapshot_fails_the_session_and_keeps_auth(
    start_worker,
    tmp_path: Path,
) -> None:
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    first = await start_worker("w1")
    session = await linked(first)
    key = await until(lambda: session_row(session.id).snapshot_key, what="a snapshot")
    first.stop.set()
    await until(lambda: session_row(session.id).worker is None)

    def tamper() -> None:
        storage = storages["sessions"]
        with storage.open(key, "rb") as blob:
            data = bytearray(blob.read())
        data[20] ^= 0xFF
        storage.delete(key)
        storage.save(key, ContentFile(bytes(data)))

    await sync_to_async(tamper)()
    await start_worker("w2", auth_root=tmp_path / "machine-2")

    row = await until(
        lambda: (r := session_row(session.id)).status == "failed" and r, what="the refusal"
    )
    assert row.last_error_code == "snapshot_invalid"
    assert await sync_to_async(storages["sessions"].exists)(key)  # auth state never deleted
    assert (tmp_path / "auth" / str(session.id) / "store.sqlite3").exists()


async def test_migration_moves_a_session_with_no_overlap_and_no_qr(
    start_worker,
    api,
    world: SandboxWorld,
) -> None:
    first = await start_worker("w1")
    session = await linked(first)
    second = await start_worker("w2")

    response = await sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/migrate", {"worker": str(second.worker_id)}, format="json"
    )

    assert response.status_code == 202
    await until(
        lambda: (
            (r := session_row(session.id)).status == "connected"
            and r.worker
            and r.worker.name == "w2"
        ),
        what="w2 to hold it",
    )
    log = [
        (e["event"], e["worker"])
        for e in world.read_log(str(session.id))
        if e["event"] in ("connect", "disconnect")
    ]
    assert log == [("connect", "w1"), ("disconnect", "w1"), ("connect", "w2")]
    assert (await sync_to_async(session_row)(session.id)).target_worker_id is None


async def test_draining_a_worker_moves_all_its_sessions(start_worker, api) -> None:
    first = await start_worker("w1")
    sessions_on_first = [await linked(first, phone) for phone in ("+15550001", "+15550002")]
    await start_worker("w2")

    response = await sync_to_async(api.post)(f"/api/v1/workers/{first.worker_id}/drain")

    assert response.status_code == 202 and response.json()["status"] == "draining"
    for session in sessions_on_first:
        await until(
            lambda s=session: (
                (r := session_row(s.id)).status == "connected"
                and r.worker
                and r.worker.name == "w2"
            ),
            timeout=20,
            what="the move",
        )
    assert first.runners == {}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"worker": "not-a-uuid"}, 400),
        ({"worker": "00000000-0000-0000-0000-000000000009"}, 422),  # well-formed, no such worker
    ],
)
async def test_migrating_to_an_unknown_worker_is_refused(api, make_session, body, status) -> None:
    session = await sync_to_async(make_session)()
    response = await sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/migrate", body, format="json"
    )
    assert response.status_code == status
    assert "worker" in response.json()["error"]["details"]


async def test_migrating_with_no_other_worker_is_a_409(api, make_session) -> None:
    session = await sync_to_async(make_session)()
    response = await sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/migrate", {}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_worker_available"


async def test_a_pairing_code_links_without_a_camera(start_worker, api) -> None:
    runtime = await start_worker()
    session = await sync_to_async(create)()
    await until(lambda: session_row(session.id).status == "scan_qr", what="linking")

    response = await sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/pair-code", {"phone_number": "+15550009"}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert len(response.json()["code"]) == 9 and response.json()["code"][4] == "-"
    await until(lambda: session_row(session.id).status == "pairing", what="pairing")
    await runtime.engines["sandbox"].scan(str(session.id))  # the user types the code
    row = await until(lambda: (r := session_row(session.id)).status == "connected" and r)
    assert row.phone_number == "+15550009"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        ("scan_qr", {"phone_number": "15550009"}, 400),
        ("connected", {"phone_number": "+15550009"}, 409),
    ],
)
async def test_pairing_code_requests_that_cannot_work(
    api,
    make_session,
    status: str,
    body: dict,
    expected: int,
) -> None:
    session = await sync_to_async(make_session)(status=status)
    response = await sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/pair-code", body, format="json"
    )
    assert response.status_code == expected
    if expected == 409:
        assert response.json()["error"]["code"] == "not_linking"


async def test_a_pairing_code_nobody_answers_is_a_503(api, make_session, settings) -> None:
    settings.WORKER_CALL_SECONDS = 0.3
    session = await sync_to_async(make_session)(status="scan_qr")  # no worker runs it
    response = await sync_to_async(api.post)(
        f"/api/v1/sessions/{session.id}/pair-code", {"phone_number": "+15550009"}, format="json"
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "pair_code_unavailable"
