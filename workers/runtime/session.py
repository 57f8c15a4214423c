"""One session held by this worker: its lease, its connection, and the status it reports.

Each runner works through its own queue (engine events and "look at what is wanted" requests) one
item at a time, so its writes are ordered; an error in one item is logged and recorded and never
reaches another session. Every write is fenced by the lease epoch: a refused write (`LeaseLost`)
means another worker owns the session now, and this one closes its connection without a word.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from typing import Any, Protocol

from django.utils import timezone

from gateway.core import logging as log_context
from groups import services as groups
from messaging import services as messages
from sessions_app import services as sessions
from sessions_app.services import qr, snapshots
from sessions_app.states import SessionStatus
from workers.engines.base import (
    BlocklistChanged,
    Connected,
    Disconnected,
    Engine,
    EngineError,
    Event,
    GroupJoined,
    GroupParticipantsChanged,
    GroupUpdated,
    HistorySynced,
    LoggedOut,
    MessageEdited,
    MessageReceived,
    MessageRevoked,
    PairCode,
    PollVote,
    Presence,
    QrCode,
    Receipt,
    StreamReplaced,
    spawn_into,
)
from workers.runtime.config import RuntimeConfig
from workers.runtime.db import db, io
from workers.runtime.inbound import Inbound, received
from workers.runtime.sender import Sender
from workers.runtime.storage import StorageRetry

logger = logging.getLogger(__name__)
S = SessionStatus
_RECHECK = object()  # queue item: re-read what is wanted of the session
_CODES = object()  # queue item: the session's QR and pairing codes into the cache again
# Receipts applied in one transaction at most (those that come together behind one another).
RECEIPT_BATCH = 200
# How long a receipt waits for the next ones to apply them together: at 50 messages a second a
# session's two receipts a message come 10 ms apart, each its own transaction on the session's
# row (and the next message's send waits for it); a receipt that comes seconds after its send
# anyway is not late for 50 ms more.
RECEIPT_LINGER_SECONDS = 0.05
# How long a probe of a silent session may take before it counts as unanswered.
PROBE_SECONDS = 45.0
# How often a session with no auth state to start from looks whether the storage is back.
RESTORE_RETRY_SECONDS = 5.0


class Host(Protocol):
    """What a runner needs of the worker that holds it (WorkerRuntime is one)."""

    worker_id: uuid.UUID | None
    counters: Counter[str]  # the worker's counters for /metrics (`snapshot_failures`)
    storage: StorageRetry  # the worker's storage, retried with backoff while it is down
    # Sessions whose dropped runner's connection is still closing, set once it is closed: a new
    # runner of the same session (claimed again meanwhile) waits for it before it starts.
    closing: dict[str, asyncio.Event]
    wake: asyncio.Event  # set: the worker's claim loop looks again now

    def holds(self, runner: SessionRunner) -> bool:
        """Whether `runner` is still the worker's runner of its session."""
        ...

    def forget(self, runner: SessionRunner) -> None:
        """Take `runner` off the worker's sessions (it holds the session no longer)."""
        ...

    def retry_later(self, runner: SessionRunner, delay: float) -> None:
        """Queue a look at what is wanted of the session after `delay` seconds."""
        ...


class SessionRunner:
    def __init__(
        self,
        host: Host,
        lease: sessions.Lease,
        *,
        engine: Engine,
        config: RuntimeConfig,
        claimed_at: float,
        downloads: asyncio.Semaphore,
    ) -> None:
        self.host = host
        self.id: uuid.UUID = lease.session_id
        self.key = str(self.id)
        self.epoch = lease.epoch
        self.engine = engine
        self.lease = lease
        self.status = lease.status
        # Self-fencing: the connection must close before the lease could expire unrenewed. Timed
        # on the monotonic clock from when the claim or the last successful renewal started.
        self.deadline = claimed_at + config.lease_seconds
        self.started = False
        self.starting = True  # until its first start is over, however it ended (WorkerRuntime)
        self.awaiting_storage = False  # no auth state to start from until the storage is back
        self.connected = False
        self.snapshot_mtime = 0.0
        # When the newest snapshot of the auth state this runner holds was taken (Unix time): the
        # claim until it takes one (the store it started from is the one restored, or nothing).
        self.snapshot_at = time.time()
        self.snapshot_lock = asyncio.Lock()
        self.history_lock = asyncio.Lock()
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.auth_dir = config.auth_root / self.key
        self.sender = Sender(
            self,
            poll_seconds=config.poll_seconds,
            idle_seconds=config.queue_poll_seconds,
            worker_id=host.worker_id,
        )
        self.side_tasks: set[asyncio.Task] = set()  # pairing codes, media downloads
        self.inbound = Inbound(
            session_id=self.id,
            epoch=self.epoch,
            engine=engine,
            downloads=downloads,
            storage=host.storage,
            tasks=self.side_tasks,
        )
        self.last_event_at = self.last_event_wall = 0.0
        self.touch()
        # The QR and pairing codes it shows now, by kind (qr.code_made), none once linked: the
        # cache is made to hold them on each change and again every TTL/3 (`keep_codes`).
        # `codes_kept`: whether the last write went through.
        self.codes: dict[str, dict[str, Any]] = {}
        self.codes_kept = True

    # --- the loop ---------------------------------------------------------------------------------

    def launch(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"session-{self.key}")
        self.recheck()
        self.sender.start()

    def recheck(self) -> None:
        self.queue.put_nowait(_RECHECK)

    def deliver(self, event: Event) -> None:
        self.touch()
        if isinstance(event, HistorySynced):
            # Off the session's queue: a large history never holds its live messages back.
            spawn_into(self.side_tasks, self._history(event))
            return
        self.queue.put_nowait(event)

    async def _history(self, event: HistorySynced) -> None:
        async with self.history_lock:  # batches in the order they came
            try:
                await db(
                    messages.history_store,
                    session_id=self.id,
                    epoch=self.epoch,
                    messages=[received(m) for m in event.messages],
                    sync_type=event.sync_type,
                )
            except sessions.LeaseLost:
                return  # not ours any more: its next owner gets the history from the phone
            except Exception:
                logger.exception("history batch could not be stored")

    def touch(self) -> None:
        """The session showed life (an event, an answered probe)."""
        self.last_event_at, self.last_event_wall = time.monotonic(), time.time()

    async def _run(self) -> None:
        with log_context.bind(session_id=self.key, worker_id=str(self.host.worker_id)):
            held = None  # taken from the queue after a run of receipts: the next to handle
            while True:
                if held is None:
                    item = await self.queue.get()
                else:
                    item, held = held, None
                try:
                    if item is _RECHECK:
                        await self._reconcile()
                    elif isinstance(item, Receipt):
                        receipts, held = await self._receipts_after(item)
                        await self._receipts(receipts)
                    elif isinstance(item, tuple) and item[0] == "handover":
                        await self.handover(item[1])
                    elif isinstance(item, tuple) and item[0] == "probe":
                        await self._probe(item[1])
                    elif item is _CODES:
                        await self.keep_codes(self.codes)
                    else:
                        await self._handle(item)
                except sessions.LeaseLost:
                    logger.warning("lease lost; closing the connection")
                    await self.drop()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("session step failed")
                if not self.host.holds(self):
                    return

    async def _receipts_after(self, first: Receipt) -> tuple[list[Receipt], Any]:
        """`first` and the receipts that come right behind it, within RECEIPT_LINGER_SECONDS of
        it (up to RECEIPT_BATCH), and the item after them that was taken from the queue too
        (None if none): anything else ends the wait at once."""
        receipts: list[Receipt] = [first]
        loop = asyncio.get_running_loop()
        until = loop.time() + RECEIPT_LINGER_SECONDS
        while len(receipts) < RECEIPT_BATCH:
            if self.queue.empty():
                try:
                    item = await asyncio.wait_for(self.queue.get(), until - loop.time())
                except TimeoutError:
                    break
            else:
                item = self.queue.get_nowait()
            if not isinstance(item, Receipt):
                return receipts, item
            receipts.append(item)
        return receipts, None

    async def _receipts(self, receipts: list[Receipt]) -> None:
        """Receipts that came together, applied in one transaction (a busy session's sent
        messages come back as two receipts each: measured, applying each apart made them most of
        the transactions on its row)."""
        await db(
            messages.receipts_apply,
            session_id=self.id,
            epoch=self.epoch,
            receipts=[(list(r.message_ids), r.status, r.timestamp) for r in receipts],
        )

    # --- helpers ----------------------------------------------------------------------------------

    async def _status(self, status: str, reason: str = "", **fields: object) -> None:
        try:
            session = await db(
                sessions.session_set_status,
                session_id=self.id,
                status=status,
                epoch=self.epoch,
                worker_id=self.host.worker_id,
                reason=reason,
                **fields,
            )
        except sessions.IllegalTransition as exc:
            logger.warning("status change refused: %s", exc)
            return
        self.status = session.status
        # Connected by us, now (the status read at the claim is the previous owner's).
        self.connected = self.status == S.CONNECTED
        if self.connected:
            self.sender.poke()

    async def _engine_stop(self) -> None:
        self.connected = False
        if self.started:
            self.started = False
            try:
                await self.engine.stop(self.key)
            except EngineError as exc:
                logger.warning("engine stop failed: %s", exc)

    def _forget(self) -> None:
        self.sender.cancel()
        for task in list(self.side_tasks):
            task.cancel()
        self.host.forget(self)

    async def report_stopped(self, reason: str) -> None:
        """Report the session `stopped` (the worker is stopping; the lease goes with it)."""
        await self._status(S.STOPPED, reason)

    def drop(self) -> Coroutine[Any, Any, None]:
        """Close the connection locally and forget the session, writing nothing (not ours now).
        Work in progress for it is cancelled, and the engine is told to stop even if a start was
        under way. The runner is forgotten and its session marked closing on the call, before
        anything is awaited: a runner made for the session after the call waits for the close."""
        closed = self.host.closing[self.key] = asyncio.Event()
        self._forget()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
        self.started = False
        return self._close(closed)

    async def _close(self, closed: asyncio.Event) -> None:
        try:
            await self.engine.stop(self.key)
        except EngineError as exc:
            logger.warning("engine stop failed: %s", exc)
        finally:
            closed.set()
            if self.host.closing.get(self.key) is closed:
                del self.host.closing[self.key]
        # Fenced, so harmless when another worker owns it; when the lease is still ours (renewals
        # were slow), others may take the session now instead of after the TTL.
        with contextlib.suppress(Exception):
            await db(sessions.session_release, session_id=self.id, epoch=self.epoch)

    async def handover(self, reason: str) -> None:
        """Give the session to another worker: disconnect, snapshot, report stopped, release. The
        next owner restores the snapshot; the two connections never overlap."""
        await self._engine_stop()
        if self.store_changed() or not self.snapshot_mtime:
            await self.snapshot(reason)
        await self.release(S.STOPPED, reason)

    async def release(self, status: str = S.STOPPED, reason: str = "") -> None:
        """Stop the connection (keeping auth), report `status` and give the lease up (in one
        transaction)."""
        await self._engine_stop()
        await db(
            sessions.session_release,
            session_id=self.id,
            epoch=self.epoch,
            status=status,
            reason=reason,
            worker_id=self.host.worker_id,
        )
        self._forget()

    # --- QR and pairing codes --------------------------------------------------------------------

    async def _show(self, kind: str, code: str, expires_in: float) -> dict[str, Any]:
        """A new code of `kind` shown: kept in the cache beside the other kind's."""
        made = qr.code_made(code, expires_in)
        await self.keep_codes({**self.codes, kind: made})
        return made

    async def keep_codes(self, codes: dict[str, dict[str, Any]]) -> None:
        """Make the cache hold `codes` (those still valid), the session's codes from now on. The
        cache being down never stops the session: the codes are announced all the same, and
        written again at the next call (every TTL/3 while there are codes, or a write failed);
        so are codes a restarted or flushed Redis forgot."""
        now = time.time()
        self.codes = {kind: code for kind, code in codes.items() if code["expires_at"] > now}
        try:
            await db(qr.codes_keep, session_id=self.id, codes=self.codes)
        except Exception:
            if self.codes_kept:  # once per outage, not at each retry
                logger.warning("QR and pairing codes not kept: cache unavailable", exc_info=True)
            self.codes_kept = False
            return
        self.codes_kept = True

    def keep_codes_again(self) -> None:
        """Queue the codes' write again, if there are codes or the last write failed: on the
        session's queue, so no code can overwrite a newer one."""
        if self.codes or not self.codes_kept:
            self.queue.put_nowait(_CODES)

    # --- what is wanted ---------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        lease = await db(sessions.session_lease_held, session_id=self.id, epoch=self.epoch)
        self.lease = lease
        self.status = lease.status
        if lease.logout_requested_at or lease.delete_requested_at:
            await self._logout()
        elif not lease.wants_running:
            await self.release(S.STOPPED, "stop requested")
        elif lease.target_worker_id and lease.target_worker_id != self.host.worker_id:
            await self.handover("moving to another worker")
        elif lease.restart_requested_at:
            await self._engine_stop()
            await db(
                sessions.session_request_done,
                session_id=self.id,
                epoch=self.epoch,
                request="restart_requested_at",
            )
            await self._start("restart requested")
        elif lease.pair_requested_at and self.started:
            await db(
                sessions.session_request_done,
                session_id=self.id,
                epoch=self.epoch,
                request="pair_requested_at",
            )
            # The engine may wait for its websocket first: the session's events go on meanwhile.
            spawn_into(self.side_tasks, self._pair_code(lease.pair_phone))
        elif not self.started:
            await self._start("claimed")
            if lease.pair_requested_at:  # asked for before the connection was up: now
                self.recheck()

    async def _probe(self, silent: float) -> None:
        """Silent for long: is the connection alive? A zombie (no answer) is restarted."""
        if not self.started or self.status != S.CONNECTED:
            return
        try:
            await asyncio.wait_for(self.engine.probe(self.key), PROBE_SECONDS)
        except (EngineError, TimeoutError) as exc:
            reason = (
                f"no event for {silent:.0f} s and WhatsApp did not answer a probe "
                f"({exc or 'timed out'}); restarting the connection"
            )
            logger.warning(reason)
            await self._engine_stop()
            await self._start(reason)
            return
        self.touch()

    async def _pair_code(self, phone_number: str) -> None:
        try:  # the code comes back as a PairCode event
            await self.engine.request_pair_code(self.key, phone_number)
        except EngineError as exc:
            logger.warning("pairing code refused by the engine: %s", exc)

    async def _start(self, reason: str) -> None:
        try:
            await self._start_once(reason)
        finally:
            if self.starting:
                self.starting = False
                self.host.wake.set()  # room for the next claim

    async def _start_once(self, reason: str) -> None:
        if (closing := self.host.closing.get(self.key)) is not None:
            # Dropped by this worker a moment ago and claimed again: its old connection still
            # uses the store and the engine's slot (a start now fails `already_started`).
            await closing.wait()
        if not self.awaiting_storage:  # else it shows `reconnecting` until the storage is back
            await self._status(S.STARTING, reason)
        self.auth_dir.mkdir(parents=True, exist_ok=True)
        if not await self._restore():
            return
        try:
            await self.engine.start(self.key, self.auth_dir)
        except EngineError as exc:
            if exc.permanent:
                await self._fail(exc.code, str(exc))
                return
            await self._status(S.RECONNECTING, "start failed", error_code=exc.code, error=str(exc))
            self.host.retry_later(self, delay=5)
            return
        self.started = True

    async def _restore(self) -> bool:
        """Make the auth directory hold the session's latest snapshot, unless its local store
        already is that snapshot or newer. True when the session may start: restored, or from its
        local store while the storage is down. A snapshot that does not decrypt fails the session.
        While the storage is down (`host.storage`) no download is tried before its retry is due:
        at thousands of sessions, one attempt per retry rather than one each."""
        attempt = self.host.storage.due()
        try:
            restored = await io(
                snapshots.snapshot_restore,
                session_id=self.id,
                auth_dir=self.auth_dir,
                download=attempt,
            )
        except snapshots.SnapshotInvalid as exc:
            await self._fail("snapshot_invalid", str(exc))
            return False
        except Exception as exc:  # noqa: BLE001 - storage unreachable: try again, never relink
            if attempt and isinstance(exc, snapshots.StorageUnavailable):
                self.host.storage.failed(exc)
            return await self._without_snapshot(exc)
        if restored:
            logger.info("auth state restored from the latest snapshot")
            self.host.storage.succeeded()
        self.awaiting_storage = False
        return True

    async def _without_snapshot(self, error: Exception) -> bool:
        """The snapshot could not be read: start from the local store when there is one, else
        wait for the storage, `reconnecting` (one status change, where a `starting` and a
        `reconnecting` at each retry made two, and two webhooks, every 5 s), looking again every
        RESTORE_RETRY_SECONDS. Never relinked: the snapshot is still there."""
        if (self.auth_dir / snapshots.STORE).exists():
            logger.warning("snapshot storage unavailable; starting from the local store")
            return True
        await self._status(
            S.RECONNECTING,
            "auth snapshot unavailable",
            error_code="storage_unavailable",
            error=str(error)[:500],
        )
        self.awaiting_storage = True
        self.host.retry_later(self, delay=RESTORE_RETRY_SECONDS)
        return False

    async def _logout(self) -> None:
        if self.started:
            try:
                await self.engine.logout(self.key)  # its LoggedOut event finishes the job
                self.started = False
                return
            except EngineError as exc:
                logger.warning("engine logout failed (%s); deleting the auth state anyway", exc)
                await self._engine_stop()
        await self._logged_out("logout requested")

    async def _logged_out(self, reason: str) -> None:
        """The device is unlinked: auth state goes; then delete, restart with a new QR, or stop."""
        self.started = False
        shutil.rmtree(self.auth_dir, ignore_errors=True)
        await db(sessions.session_forget_auth, session_id=self.id, epoch=self.epoch)
        await self.keep_codes({})
        await db(groups.groups_forget_all, session_id=self.id, epoch=self.epoch)
        await self._status(S.LOGGED_OUT, reason)
        await db(
            sessions.session_request_done,
            session_id=self.id,
            epoch=self.epoch,
            request="logout_requested_at",
        )
        lease = await db(sessions.session_lease_held, session_id=self.id, epoch=self.epoch)
        if lease.delete_requested_at:
            await db(sessions.session_delete_owned, session_id=self.id, epoch=self.epoch)
            self._forget()
        elif lease.wants_running:
            await self._start("logged out; linking again")
        else:
            await self.release(S.STOPPED, "logged out")

    async def _fail(self, code: str, error: str) -> None:
        await self._engine_stop()
        await db(
            sessions.session_fail,
            session_id=self.id,
            epoch=self.epoch,
            worker_id=self.host.worker_id,
            code=code,
            error=error,
        )
        await db(sessions.session_release, session_id=self.id, epoch=self.epoch)
        self._forget()

    # --- what the engine says ---------------------------------------------------------------------

    async def _handle(self, event: Event) -> None:
        if isinstance(event, QrCode):
            # Only the text: the PNG is drawn where the code is shown (qr.code_image, the browser).
            code = await self._show("qr", event.code, event.expires_in)
            # Once a pairing code was asked for, the session stays `pairing`: the rotating QR stays
            # current (and scannable), but the status does not flip back and forth.
            status = S.PAIRING if self.status == S.PAIRING else S.SCAN_QR
            await self._status(status, "new QR code", qr=qr.announced(code))
        elif isinstance(event, PairCode):
            code = await self._show("pair_code", event.code, event.expires_in)
            await self._status(S.PAIRING, "pairing code requested", pair_code=qr.announced(code))
        elif isinstance(event, Connected):
            await self.keep_codes({})
            new_link = self.status in (S.SCAN_QR, S.PAIRING)
            await self._status(
                S.CONNECTED,
                "connected",
                phone_number=event.phone_number,
                jid=event.jid,
                push_name=event.push_name,
                linked_at=timezone.now() if new_link else None,
            )
            if new_link:
                await self.snapshot("linked")
        elif isinstance(event, Disconnected):
            if event.will_reconnect:
                await self._status(
                    S.RECONNECTING, event.reason, error_code=event.code, error=event.reason
                )
            else:
                self.started = False
                await self._fail(event.code or "disconnected", event.reason)
        elif isinstance(event, LoggedOut):
            await self._logged_out(event.reason or "logged out")
        elif isinstance(event, StreamReplaced):
            self.started = False
            # Never reconnect without re-checking the lease: if another worker owns the session
            # now, this raises LeaseLost and we close quietly.
            await db(sessions.session_lease_held, session_id=self.id, epoch=self.epoch)
            await self._fail("stream_replaced", "another connection took this session over")
        elif isinstance(event, Presence):
            await db(
                sessions.presence_announce,
                session_id=self.id,
                epoch=self.epoch,
                chat=event.chat,
                sender=event.sender,
                state=event.state,
                last_seen=event.last_seen,
                sender_phone=event.sender_phone,
            )
        elif isinstance(event, BlocklistChanged):
            await db(
                sessions.blocklist_announce,
                session_id=self.id,
                epoch=self.epoch,
                changes=[dataclasses.asdict(change) for change in event.changes],
            )
        elif isinstance(event, GroupJoined):
            await db(
                groups.group_joined_announce,
                session_id=self.id,
                epoch=self.epoch,
                group=dataclasses.asdict(event.group),
                by=event.by,
                by_phone=event.by_phone,
                reason=event.reason,
            )
        elif isinstance(event, GroupUpdated):
            changes = {
                name: getattr(event, name)
                for name in ("subject", "description", "announce", "locked", "picture")
                if getattr(event, name) is not None
            }
            await db(
                groups.group_updated_announce,
                session_id=self.id,
                epoch=self.epoch,
                group=event.group,
                changes=changes,
                by=event.by,
                by_phone=event.by_phone,
            )
        elif isinstance(event, GroupParticipantsChanged):
            await db(
                groups.group_participants_announce,
                session_id=self.id,
                epoch=self.epoch,
                group=event.group,
                action=event.action,
                participants=[dataclasses.asdict(m) for m in event.participants],
                by=event.by,
                by_phone=event.by_phone,
            )
        elif isinstance(event, MessageReceived):
            await self.inbound.receive(event.message)
        elif isinstance(event, MessageEdited):
            await db(
                messages.inbound_edited,
                session_id=self.id,
                epoch=self.epoch,
                chat=event.chat,
                wa_message_id=event.wa_message_id,
                text=event.text,
                sender=event.sender,
                sender_phone=event.sender_phone,
            )
        elif isinstance(event, PollVote):
            await db(
                messages.poll_vote_record,
                session_id=self.id,
                epoch=self.epoch,
                chat=event.chat,
                poll_id=event.poll_id,
                voter=event.voter,
                selected=list(event.selected),
                voter_phone=event.voter_phone,
                error=event.error,
            )
        elif isinstance(event, MessageRevoked):
            await db(
                messages.inbound_revoked,
                session_id=self.id,
                epoch=self.epoch,
                chat=event.chat,
                wa_message_id=event.wa_message_id,
                sender=event.sender,
                sender_phone=event.sender_phone,
            )

    async def retry_pending_media(self) -> None:
        await self.inbound.retry_pending_media()

    async def snapshot(self, reason: str) -> bool:
        """Snapshot the auth state (fenced). Storage being down never disconnects anything: the
        worker's snapshot loop tries again, with backoff (`host.storage`). Returns True when a
        snapshot was taken."""
        store = self.auth_dir / snapshots.STORE
        if not store.exists():
            return False
        changed_at, taken_at = store.stat().st_mtime, time.time()
        try:
            async with self.snapshot_lock:  # one at a time: the pointer must end on the newest
                key = await io(
                    snapshots.snapshot_take,
                    session_id=self.id,
                    epoch=self.epoch,
                    auth_dir=self.auth_dir,
                )
        except sessions.LeaseLost:
            raise
        except Exception as exc:  # noqa: BLE001 - storage errors of any kind
            self.host.counters["snapshot_failures"] += 1
            if isinstance(exc, snapshots.StorageUnavailable):
                self.host.storage.failed(exc)
            logger.warning("auth snapshot failed (%s): %s; will retry", reason, exc)
            return False
        self.host.storage.succeeded()
        self.snapshot_mtime, self.snapshot_at = changed_at, taken_at
        logger.info("auth snapshot taken (%s)", reason, extra={"snapshot": key})
        return True

    def store_changed(self) -> bool:
        store = self.auth_dir / snapshots.STORE
        return store.exists() and store.stat().st_mtime > self.snapshot_mtime

    def check_deadline(self, now: float) -> bool:
        """True when the lease may have run out unrenewed: the caller closes the connection."""
        return now >= self.deadline - 1.0
