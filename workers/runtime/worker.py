"""The worker: one event loop that holds sessions' leases and connections.

    run()  ─ register the Worker row
           ├ lease loop     renew every lease each TTL/3; forget sessions whose renewal failed
           ├ heartbeat      the Worker row's, each TTL/3 on a connection of its own; mark the
           │                workers whose heartbeat is older than TTL dead, and their sessions
           ├ watchdog       close a connection before its lease could expire unrenewed
           ├ sweep          wake the senders of sessions with work every TTL/3 (PostgreSQL)
           ├ claim loop     claim free sessions (SKIP LOCKED) and re-read what is wanted of ours,
           │                woken at once by NOTIFY, and by a slow poll as well
           ├ snapshots      snapshot the auth state that changed, each SNAPSHOT_INTERVAL_SECONDS;
           │                while the storage is down, one attempt per retry (with backoff)
           ├ event pumps    engine events → the session's runner
           ├ codes          QR and pairing codes into the cache again every TTL/3 (Redis forgets)
           ├ controls: sandbox controls and calls (check numbers, mark read)
           ├ usage reports  each session's daily `usage.report`
           └ webhook dispatcher  the built-in backend's and every endpoint's deliveries
    stop (SIGTERM/SIGINT) → stop claiming, disconnect every session (never log out), report them
           stopped, release all leases in one statement, mark the Worker stopped.

Steps return whether they found work; waits end at once when `stop` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import date
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection

from gateway.core import logging as log_context
from gateway.core import wake as wakeups
from gateway.core.usage import tally
from messaging import services as messages
from sessions_app import services as sessions
from sessions_app.states import SessionStatus
from workers import services as registry
from workers.engines.base import Engine
from workers.runtime.config import RuntimeConfig
from workers.runtime.controls import ControlListener
from workers.runtime.db import db, db_close, heartbeat_db, lease_db
from workers.runtime.dispatcher import Dispatcher
from workers.runtime.session import SessionRunner
from workers.runtime.storage import StorageRetry
from workers.states import WorkerStatus

logger = logging.getLogger(__name__)
# How often a worker looks whether a day's usage reports are due (a comparison, until one is).
USAGE_REPORT_POLL_SECONDS = 60.0
# While the storage is down it is retried after 1 s, then twice as late each time up to this (or
# the snapshot period, when shorter): what waited for it follows within that of its return.
STORAGE_RETRY_MAX_SECONDS = 30.0


def build_engines(config: RuntimeConfig) -> dict[str, Engine]:
    engines: dict[str, Engine] = {}
    if "sandbox" in config.engines:
        from workers.engines.sandbox import SandboxEngine, SandboxTimings, SandboxWorld

        engines["sandbox"] = SandboxEngine(
            SandboxWorld(settings.SANDBOX_DIR),
            worker=config.name,
            timings=SandboxTimings(**settings.SANDBOX_TIMINGS),
        )
    if "neonize" in config.engines:
        from workers.engines.host.client import HostedEngine

        engines["neonize"] = HostedEngine(
            "neonize", sessions_per_host=settings.NEONIZE_SESSIONS_PER_HOST
        )
    return engines


async def cancel_all(tasks: list[asyncio.Task]) -> None:
    """Cancel `tasks` and wait until every one has ended. Cancelled again while any runs on:
    Python 3.11's `asyncio.wait_for` swallows a cancellation that arrives as the future it
    waits for completes (gh-86296), and a loop that lost its cancellation would keep a worker
    from ever stopping."""
    while pending := [task for task in tasks if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1)
    for task in tasks:  # retrieved, so none is logged as never retrieved
        if not task.cancelled():
            task.exception()


class WorkerRuntime:
    def __init__(self, config: RuntimeConfig, engines: dict[str, Engine] | None = None) -> None:
        self.config = config
        self.engines = engines if engines is not None else build_engines(config)
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()
        self.wanted = asyncio.Event()  # set: a session's wanted state may have changed (NOTIFY)
        self.runners: dict[str, SessionRunner] = {}
        self.closing: dict[str, asyncio.Event] = {}  # SessionRunner.drop
        self.worker_id: uuid.UUID | None = None
        self.claiming = True
        self._controls = ControlListener(self._engine_for, get_channel_layer())
        # Whether or not BACKEND_URL is set (endpoints made through the API need none), unless
        # the `deliver_webhooks` processes deliver them all (WORKER_DELIVERS_WEBHOOKS off).
        self.dispatcher: Dispatcher | None = (
            Dispatcher(poll_seconds=config.poll_seconds) if config.delivers_webhooks else None
        )
        self._background: set[asyncio.Task] = set()
        self._started = time.monotonic()
        # The last day whose usage reports this worker has written (or seen written).
        self.usage_reported_through: date | None = None
        # Inbound media downloads at once, across this worker's sessions (each a temporary file).
        self.downloads = asyncio.Semaphore(4)
        # Since this process started, for /metrics: `failovers` (sessions claimed from a worker
        # whose lease ran out), `snapshot_failures` (auth snapshots that could not be stored).
        self.counters: Counter[str] = Counter(failovers=0, snapshot_failures=0)
        # S3 for snapshots and inbound media: one attempt per retry while it is down.
        self.storage = StorageRetry(
            longest=min(STORAGE_RETRY_MAX_SECONDS, config.snapshot_seconds),
            on_back=self._storage_back,
        )

    def _engine_for(self, session_id: str) -> Engine | None:
        runner = self.runners.get(session_id)
        return runner.engine if runner is not None else None

    # --- life -------------------------------------------------------------------------------------

    async def run(self) -> None:
        worker = await db(
            registry.worker_register,
            name=self.config.name,
            capacity=self.config.capacity,
            engines=list(self.engines),
        )
        self.worker_id = worker.pk
        self.worker = worker
        self.config.name = worker.name
        # Every line the worker's loops write says which worker wrote it.
        with log_context.bind(worker_id=str(worker.pk)):
            logger.info("worker %s started", worker.name)
            await self._serve()

    async def _serve(self) -> None:
        loops = [
            self._lease_loop(),
            self._heartbeat_loop(),
            self._watchdog(),
            self._claim_loop(),
            self._snapshot_loop(),
            self._silence_loop(),
            self._codes_loop(),
            *(self._pump(engine) for engine in self.engines.values()),
        ]
        if connection.vendor == "postgresql":
            loops += [self._listen(), self._sweep_loop()]
        if settings.BACKEND_URL:
            loops.append(self._backend_loop())
        # Daily, whatever the destinations: the event log, the stream and endpoints take it too.
        loops.append(self._usage_loop())
        loops.append(self._controls.run(self.stop))
        if self.dispatcher is not None:
            loops.append(self.dispatcher.run(self.stop))
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            await self.stop.wait()
        finally:
            self.claiming = False
            await cancel_all(tasks)
            await self.shutdown()

    async def shutdown(self) -> None:
        """Disconnect every session (keeping auth), report it stopped, release all leases at once,
        mark the worker stopped. Never logs a session out."""
        runners = list(self.runners.values())
        await cancel_all([t for r in runners for t in (r.task, r.sender.task) if t])
        for runner in runners:  # every connection closes first, even one still starting
            runner.started = False
            with contextlib.suppress(Exception):
                await runner.engine.stop(runner.key)
        limit = asyncio.Semaphore(8)  # then snapshots and status writes, a few at a time

        async def settle(runner: SessionRunner) -> None:
            async with limit:
                with contextlib.suppress(Exception):  # best effort: the lease goes either way
                    # Not while the storage is down: each attempt would fail, and at thousands of
                    # sessions keep the worker from stopping (the next owner restores the last
                    # snapshot stored).
                    if runner.store_changed() and self.storage.due():
                        await runner.snapshot("worker stopping")
                    await runner.report_stopped("worker stopping")

        await asyncio.gather(*(settle(runner) for runner in runners))
        # The engines (and their host processes) end before any lease is released, so no
        # connection of ours can outlive the moment another worker may claim its session.
        for engine in self.engines.values():
            with contextlib.suppress(Exception):
                await engine.close()
        if self.worker_id is not None:
            released = await db(sessions.sessions_release_all, worker_id=self.worker_id)
            await db(registry.worker_stopped, worker_id=self.worker_id)
            logger.info("worker stopped; %s leases released", released)
        self.runners.clear()
        await db_close()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def _forever(self, step, period: float | Callable[[], float]) -> None:
        """Run `step` every `period` seconds, start to start (a slow database must not space
        renewals out by their own duration), or, when `period` is a function, pause for what it
        answers after each step; a failing step (database down) is logged and tried again next
        period."""
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                await step()
            except Exception:
                logger.exception("%s failed; retrying", step.__name__)
            elapsed = time.monotonic() - started
            await self._sleep(period() if callable(period) else max(0.0, period - elapsed))

    # --- leases -----------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        await self._forever(self.step_renew, self.config.lease_seconds / 3)

    async def _heartbeat_loop(self) -> None:
        await self._forever(self.step_heartbeat, self.config.lease_seconds / 3)

    async def step_renew(self) -> None:
        started = time.monotonic()
        held = await lease_db(
            sessions.sessions_renew,
            worker_id=self.worker_id,
            session_ids=[runner.id for runner in self.runners.values()],
            ttl=self.config.lease_seconds,
        )
        for key, runner in list(self.runners.items()):
            if runner.id in held and held[runner.id] == runner.epoch:
                runner.deadline = started + self.config.lease_seconds
                continue
            # Missing from the renewal: lost, or claimed by us while the renewal ran (its commit
            # came after our read). Ask once more before closing anything.
            checked = time.monotonic()
            if await lease_db(sessions.session_lease, session_id=runner.id, epoch=runner.epoch):
                runner.deadline = max(runner.deadline, checked + self.config.lease_seconds / 2)
                continue
            logger.warning("lease not renewed; closing", extra={"session_id": key})
            await runner.drop()

    async def step_heartbeat(self) -> None:
        """Tell others this worker is alive, on a connection of its own beside the renewals' (at
        500 ms a round trip, the two in one step took longer than a renewal may: measured
        with tests/workers/runtime/test_partitions.py), and look for dead workers."""
        stats = {
            "sessions": len(self.runners),
            "by_status": dict(Counter(r.status for r in self.runners.values())),
            # When each connected session last had an event (Unix time): /metrics shows ages.
            "last_event_at": {
                r.key: round(r.last_event_wall, 1)
                for r in self.runners.values()
                if r.status == SessionStatus.CONNECTED
            },
            "counters": self.figures(),
            "snapshots": self.snapshot_figures(),
        }
        status = await heartbeat_db(
            registry.worker_heartbeat, worker_id=self.worker_id, stats=stats
        )
        if status is None:
            # Paused past the TTL, others took over: drop everything and exit (a supervisor
            # starts a fresh worker) rather than claim again under a row marked dead.
            logger.error("this worker was declared dead; dropping every session and stopping")
            self.claiming = False
            for runner in list(self.runners.values()):
                await runner.drop()
            self.stop.set()
        elif status == WorkerStatus.DRAINING and self.claiming:
            logger.warning("draining: handing every session over to other workers")
            self.claiming = False
            for runner in list(self.runners.values()):
                runner.queue.put_nowait(("handover", "worker draining"))
        if lost := await heartbeat_db(registry.workers_mark_dead):
            self._spawn(self._mark_lost(lost))

    async def _mark_lost(self, worker_ids: list[uuid.UUID]) -> None:
        """The sessions of workers just found dead show it (in batches, beside the leases'
        thread: a dead worker may have held thousands)."""
        logger.warning("workers found dead: %s", ", ".join(map(str, worker_ids)))
        try:
            while await db(sessions.sessions_of_lost_workers, worker_ids=worker_ids):
                pass
        except Exception:  # the next claim makes them `starting` anyway
            logger.warning("could not mark the sessions of dead workers", exc_info=True)

    def snapshot_figures(self) -> dict[str, float | int | None]:
        """For /metrics: of the connected sessions whose auth state changed since their newest
        snapshot, when the oldest of those snapshots was taken (`oldest`, Unix time; None: every
        snapshot is current) and how many are older than two snapshot periods (`stale`: a
        working storage never lets that happen). Sessions whose auth state has not changed are
        left out: their snapshot is old because nothing needs a newer one."""
        behind = [runner.snapshot_at for runner in self._snapshots_behind()]
        stale = time.time() - 2 * self.config.snapshot_seconds
        return {"oldest": min(behind, default=None), "stale": sum(at < stale for at in behind)}

    def figures(self) -> dict[str, float]:
        """This process's counters (from 0 at its start): its own, its engines' host restarts and
        what its services counted (messages by outcome, send latency; gateway.core.usage)."""
        restarts = sum(engine.host_restarts() for engine in self.engines.values())
        return {**tally.figures(), **self.counters, "engine_host_restarts": restarts}

    async def _watchdog(self) -> None:
        while not self.stop.is_set():
            now = time.monotonic()
            expiring = [r for r in self.runners.values() if r.check_deadline(now)]
            for runner in expiring:
                logger.error(
                    "lease about to expire unrenewed; closing the connection",
                    extra={"session_id": runner.key},
                )
            # All at once: one slow engine call must not keep another session open past its lease.
            await asyncio.gather(*(runner.drop() for runner in expiring), return_exceptions=True)
            await self._sleep(0.5)

    # --- auth snapshots ---------------------------------------------------------------------------

    async def _snapshot_loop(self) -> None:
        await self._forever(
            self.step_snapshots, lambda: self.storage.wait(self.config.snapshot_seconds)
        )

    def _snapshots_behind(self) -> list[SessionRunner]:
        """The connected sessions whose store changed since their last snapshot, oldest first."""
        behind = [
            runner
            for runner in self.runners.values()
            if runner.status == SessionStatus.CONNECTED and runner.store_changed()
        ]
        return sorted(behind, key=lambda runner: runner.snapshot_at)

    async def step_snapshots(self) -> bool:
        """Snapshot every connected session whose store changed since its last snapshot (a
        debounce: at most one snapshot per session per period), the longest-waiting first. While
        the storage is down, one session's per retry: the others would fail the same way."""
        if not self.storage.due():
            return False
        taken = False
        for runner in self._snapshots_behind():
            try:
                taken |= await runner.snapshot("store changed")
            except sessions.LeaseLost:
                await runner.drop()
            if not self.storage.due():
                break  # down: retried with backoff (`storage.wait`)
        return taken

    def _storage_back(self) -> None:
        self._spawn(self._retry_media())

    async def _retry_media(self) -> None:
        """The storage is back after an outage: the sessions whose inbound media waited for it
        retry them now, not at their next retry (up to MEDIA_RETRY_SECONDS later)."""
        try:
            waiting = await db(messages.sessions_with_work, worker_id=self.worker_id)
        except Exception:  # the senders' own retries come anyway
            logger.warning("could not look up the sessions with media to store", exc_info=True)
            return
        for session_id in waiting:
            if (runner := self.runners.get(str(session_id))) is not None:
                runner.sender.retry_media()

    # --- zombies ----------------------------------------------------------------------------------

    async def _silence_loop(self) -> None:
        await self._forever(self.step_silence, min(60.0, self.config.silence_seconds / 4))

    async def step_silence(self) -> int:
        """Probe every connected session silent for `silence_seconds` (on its own queue)."""
        now, probed = time.monotonic(), 0
        for runner in list(self.runners.values()):
            silent = now - runner.last_event_at
            if runner.status == SessionStatus.CONNECTED and silent >= self.config.silence_seconds:
                runner.touch()  # one probe per silent period
                runner.queue.put_nowait(("probe", silent))
                probed += 1
        return probed

    # --- QR and pairing codes ---------------------------------------------------------------------

    async def _codes_loop(self) -> None:
        await self._forever(self.step_codes, self.config.lease_seconds / 3)

    async def step_codes(self) -> None:
        """The codes of the sessions that show one (a few, linking), into the cache again: a
        Redis restarted or flushed has forgotten them, and the API would answer that there is no
        QR code until the next one (20 to 60 s away, or never for a pairing code)."""
        for runner in list(self.runners.values()):
            runner.keep_codes_again()

    # --- usage reports ----------------------------------------------------------------------------

    async def _usage_loop(self) -> None:
        await self._forever(self.step_usage_reports, USAGE_REPORT_POLL_SECONDS)

    async def step_usage_reports(self) -> int:
        """Once a day (and at start): the daily `usage.report` of every session with activity,
        written by whichever worker comes first (the service claims each day once)."""
        if self.usage_reported_through == sessions.usage_report_due_day():
            return 0
        reports = await db(sessions.usage_reports_send)
        self.usage_reported_through = reports.through
        return reports.sent

    # --- claims and wanted state ------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        # What is wanted of our sessions changes with a NOTIFY (`wanted`): re-read it then, and
        # otherwise every TTL/3 for one lost (re-reading thousands of rows each poll was a third
        # of a 5,000-session worker's time). Without NOTIFY (SQLite), at every poll.
        sweep = self.config.lease_seconds / 3 if connection.vendor == "postgresql" else 0.0
        swept = float("-inf")
        while not self.stop.is_set():
            try:
                await self.step_claim()
                if self.wanted.is_set() or time.monotonic() - swept >= sweep:
                    self.wanted.clear()
                    swept = time.monotonic()
                    await self.step_reconcile()
            except Exception:
                logger.exception("claim step failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.config.poll_seconds)
            self.wake.clear()

    async def step_claim(self) -> bool:
        if not self.claiming:
            return False
        starting = sum(runner.starting for runner in self.runners.values())
        room = min(self.config.capacity - len(self.runners), self.config.starting - starting)
        if room <= 0:
            return False  # each start that ends wakes this loop
        started = time.monotonic()
        leases = await db(
            sessions.sessions_claim,
            worker_id=self.worker_id,
            engines=list(self.engines),
            limit=room,
            ttl=self.config.lease_seconds,
        )
        for lease in leases:
            if (previous := self.runners.get(str(lease.session_id))) is not None:
                # Our own lease on it ran out before the watchdog closed it (renewals fell
                # behind) and this claim took it again: close the old connection first.
                logger.warning(
                    "claimed a session again before its expired lease was closed here",
                    extra={"session_id": previous.key},
                )
                self._spawn(previous.drop())
            if lease.taken_over_from is not None:
                self.counters["failovers"] += 1
                logger.info(
                    "took the session over from a worker whose lease ran out",
                    extra={"session_id": str(lease.session_id)},
                )
            runner = SessionRunner(
                self,
                lease,
                engine=self.engines[lease.engine],
                config=self.config,
                claimed_at=started,
                downloads=self.downloads,
            )
            self.runners[runner.key] = runner
            try:
                await self._controls.join(runner.key)
            except Exception:  # the layer is down: the listener rejoins when it is back
                logger.warning("could not join the session's controls group", exc_info=True)
            runner.launch()
        return bool(leases)

    async def step_reconcile(self) -> bool:
        """Re-read what is wanted of the sessions we hold (one query) and queue a look at those
        whose wanted state changed."""
        owned = {
            str(lease.session_id): lease
            for lease in await db(sessions.sessions_owned, worker_id=self.worker_id)
        }
        changed = False
        for key, runner in list(self.runners.items()):
            lease = owned.get(key)
            if lease is None or lease.epoch != runner.epoch:
                continue  # the lease loop decides about lost leases
            if lease.wanted() != runner.lease.wanted():
                runner.lease = lease
                runner.recheck()
                changed = True
        return changed

    def retry_later(self, runner: SessionRunner, delay: float) -> None:
        async def later() -> None:
            await self._sleep(delay)
            if self.holds(runner):
                runner.recheck()

        self._spawn(later())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def holds(self, runner: SessionRunner) -> bool:
        return self.runners.get(runner.key) is runner

    def forget(self, runner: SessionRunner) -> None:
        if not self.holds(runner):
            return
        del self.runners[runner.key]

        async def leave() -> None:
            if runner.key in self.runners:  # claimed again meanwhile: its new runner joined
                return
            try:
                await self._controls.leave(runner.key)
            except Exception:  # the layer is down: a control for it then finds no runner here
                logger.warning("could not leave the session's controls group", exc_info=True)

        self._spawn(leave())

    # --- engine events ----------------------------------------------------------------------------

    async def _pump(self, engine: Engine) -> None:
        async for event in engine.events():
            runner = self.runners.get(event.session_id)
            if runner is not None:
                runner.deliver(event)

    # --- the backend ----------------------------------------------------------------------------

    def _report(self) -> dict:
        by_status = Counter(runner.status for runner in self.runners.values())
        return {
            "worker_id": str(self.worker_id),
            "status": "draining" if not self.claiming else "active",
            "sessions": {"total": len(self.runners), **by_status},
            "capacity": self.config.capacity,
            "memory_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "uptime_seconds": round(time.monotonic() - self._started, 1),
        }

    async def _backend_loop(self) -> None:
        """Register with the backend (retrying with backoff), then heartbeat. Failures are logged
        and skipped: the backend being down never touches WhatsApp traffic."""
        from gateway.outbox.backend import BackendClient, BackendUnavailable

        client = BackendClient()
        worker = self.worker
        body = {
            "worker_id": str(worker.pk),
            "name": worker.name,
            "hostname": worker.hostname,
            "endpoint": settings.PUBLIC_URL,
            "capacity": worker.capacity,
            "engines": worker.engines,
            "version": worker.version,
            "started_at": worker.started_at.isoformat(),
        }
        backend_id, delay = "", 1.0
        try:
            while not self.stop.is_set() and not backend_id:
                try:
                    backend_id = await client.register(body)
                    await db(
                        registry.worker_set_backend_id, worker_id=worker.pk, backend_id=backend_id
                    )
                    logger.info("registered with the backend as %s", backend_id)
                except BackendUnavailable as exc:
                    logger.warning(
                        "backend registration failed (%s); retrying in %.0fs", exc, delay
                    )
                    await self._sleep(delay)
                    delay = min(delay * 2, 60)
            while not self.stop.is_set():
                try:
                    await client.heartbeat(backend_id, self._report())
                except BackendUnavailable as exc:
                    logger.warning("backend heartbeat skipped: %s", exc)
                await self._sleep(settings.BACKEND_HEARTBEAT_SECONDS)
        finally:
            await client.close()

    # --- wake-ups ---------------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        await self._forever(self.step_sweep, self.config.lease_seconds / 3)

    async def step_sweep(self) -> None:
        """Wake the senders of the sessions with a message queued or media to store: what a
        NOTIFY lost meanwhile would have missed (idle senders make no queries of their own)."""
        for session_id in await db(messages.sessions_with_work, worker_id=self.worker_id):
            if (runner := self.runners.get(str(session_id))) is not None:
                runner.sender.poke()

    async def _listen(self) -> None:
        """LISTEN gateway_sessions (claims), gateway_messages (a session's send queue, payload:
        its id) and gateway_webhooks (the dispatcher)."""

        def messages(session_id: str) -> None:
            runners = [self.runners.get(session_id)] if session_id else self.runners.values()
            for runner in list(runners):
                if runner is not None:
                    runner.sender.poke()

        def sessions_changed(_: str) -> None:
            self.wanted.set()
            self.wake.set()

        handlers = {wakeups.SESSIONS: sessions_changed, wakeups.MESSAGES: messages}
        if (dispatcher := self.dispatcher) is not None:
            handlers[wakeups.WEBHOOKS] = dispatcher.notified
        await wakeups.listen(handlers, self.stop)
