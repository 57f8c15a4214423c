"""Every write about a session goes through here.

The API and the admin change what is *wanted* (`desired_state`, restart/logout/delete requests); the
worker that holds a session's lease changes what is *true* (`status`), fenced by its lease epoch.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.storage import storages
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Now
from django.utils import timezone

from gateway.failpoints import failpoint
from gateway.throttling import rate_wait
from sessions_app import events, qr
from sessions_app.models import DesiredState, Session, SessionEvent, SessionStatus
from workers.models import Worker, WorkerStatus

logger = logging.getLogger(__name__)


class IllegalTransition(Exception):
    def __init__(self, source: str, target: str) -> None:
        super().__init__(f"A session cannot go from {source} to {target}.")
        self.source, self.target = source, target


class LeaseLost(Exception):
    """The caller's lease epoch is no longer the session's: another worker owns it now."""


class SessionBeingDeleted(Exception):
    """The session is waiting for its worker to log it out and delete it."""


def session_create(
    *,
    external_id: str | None,
    name: str = "",
    engine: str,
    metadata: dict[str, Any] | None = None,
    start: bool = True,
) -> tuple[Session, bool]:
    """Create a session, or return the existing one with the same `external_id`.

    Returns `(session, created)`. Concurrent creates with one `external_id` make one row: the unique
    index makes the losers fail, and they return the winner's row.
    """
    fields = {
        "name": name,
        "engine": engine,
        "metadata": metadata or {},
        "desired_state": DesiredState.RUNNING if start else DesiredState.STOPPED,
    }
    if external_id is None:
        with transaction.atomic():
            notify_workers()
            return Session.objects.create(**fields), True
    try:
        with transaction.atomic():
            notify_workers()
            return Session.objects.create(external_id=external_id, **fields), True
    except IntegrityError:
        return Session.objects.get(external_id=external_id), False


def _request(session: Session, *, running: bool = False, **changes: Any) -> Session:
    """Record a request in one conditional UPDATE. `running` requests (start, restart) are refused
    once a delete is pending, so a delete cannot be undone by a start racing it."""
    changes["updated_at"] = timezone.now()
    rows = Session.objects.filter(pk=session.pk)
    if running:
        rows = rows.filter(delete_requested_at__isnull=True)
    with transaction.atomic():
        if not rows.update(**changes):
            raise SessionBeingDeleted(f"Session {session.pk} is being deleted.")
        notify_workers()
    session.refresh_from_db()
    return session


def session_request_start(*, session: Session) -> Session:
    return _request(session, running=True, desired_state=DesiredState.RUNNING)


def session_request_stop(*, session: Session) -> Session:
    """Stop: the owning worker disconnects (keeping the auth state) and releases the lease."""
    return _request(session, desired_state=DesiredState.STOPPED)


def session_request_restart(*, session: Session) -> Session:
    return _request(
        session,
        running=True,
        desired_state=DesiredState.RUNNING,
        restart_requested_at=timezone.now(),
    )


def session_request_logout(*, session: Session) -> Session:
    """Log out: a worker unlinks the device on WhatsApp and deletes the auth state. The desired
    state is kept: a running session then starts over with a new QR code, a stopped one stays
    stopped."""
    return _request(session, logout_requested_at=timezone.now())


def session_delete(*, session: Session) -> bool:
    """Delete a session with its messages, media and auth state. Returns True when it is gone now.

    A session that a worker is running is only marked: that worker logs it out first and then
    deletes it, since only the connection can unlink the device on WhatsApp. A session nobody runs
    is deleted at once (its device stays listed on the phone until WhatsApp expires it or the user
    removes it).
    """
    with transaction.atomic():
        locked = Session.objects.select_for_update().get(pk=session.pk)
        # Lease expiry is judged by the database clock, like the workers' claims are.
        leased = Session.objects.filter(
            pk=session.pk, worker__isnull=False, lease_expires_at__gt=Now()
        ).exists()
        if leased:
            _request(
                locked,
                desired_state=DesiredState.STOPPED,
                delete_requested_at=timezone.now(),
                logout_requested_at=locked.logout_requested_at or timezone.now(),
            )
            return False
        media = list(locked.messages.exclude(media="").values_list("media", flat=True))
        session_id = locked.pk
        locked.delete()
        transaction.on_commit(lambda: _delete_files(session_id, media))
    return True


def _delete_files(session_id: uuid.UUID, media: list[str]) -> None:
    """Best effort after commit: a storage outage leaves orphan files (logged), not a session."""
    try:
        media_storage = storages["default"]
        for name in media:
            media_storage.delete(name)
        _delete_tree(storages["sessions"], str(session_id))
    except Exception:
        logger.exception(
            "could not delete the files of a deleted session", extra={"session_id": str(session_id)}
        )


def _delete_tree(storage: Any, directory: str) -> None:
    try:
        directories, files = storage.listdir(directory)
    except FileNotFoundError:  # the file-system storage, when nothing was ever stored there
        return
    for name in files:
        storage.delete(f"{directory}/{name}")
    for name in directories:
        _delete_tree(storage, f"{directory}/{name}")


def session_set_status(
    *,
    session_id: uuid.UUID,
    status: str,
    epoch: int,
    worker_id: uuid.UUID | None = None,
    reason: str = "",
    error_code: str = "",
    error: str = "",
    qr: dict[str, Any] | None = None,
    pair_code: dict[str, Any] | None = None,
    **linked: Any,
) -> Session:
    """Move a session to `status`, fenced by the caller's lease `epoch`, and record the change:
    a SessionEvent, a `session.status` outbox row and a live push (sessions_app.events).

    Raises `LeaseLost` when `epoch` is not the session's current one (the caller must stop its
    connection) and `IllegalTransition` for a change the state machine forbids. Setting the status
    it already has changes nothing and records nothing, unless a new `qr` or `pair_code` comes
    with it (each is announced). `linked` may carry phone_number, jid, push_name, linked_at.
    """
    with transaction.atomic():
        session = Session.objects.select_for_update().get(pk=session_id)
        if session.lease_epoch != epoch:
            raise LeaseLost(f"Session {session_id} is at epoch {session.lease_epoch}, not {epoch}.")
        if session.status == status and not (linked or qr or pair_code):
            return session
        if session.status != status and not session.can_transition_to(status):
            raise IllegalTransition(session.status, status)
        now = timezone.now()
        source = session.status
        session.status = status
        session.status_changed_at = now
        session.last_error = error
        session.last_error_code = error_code
        for field, value in linked.items():
            setattr(session, field, value)
        # Only what changed: a full-row save could put back fields others changed meanwhile
        # (the lease, the desired state).
        session.save(
            update_fields=[
                "status",
                "status_changed_at",
                "last_error",
                "last_error_code",
                "updated_at",
                *linked,
            ]
        )
        if source != status:
            SessionEvent.objects.create(
                session=session,
                from_status=source,
                to_status=status,
                reason=reason,
                worker_id=worker_id,
            )
        if source != status or qr or pair_code:
            events.session_status_changed(session, qr=qr, pair_code=pair_code)
    return session


# --- Leases: what the worker runtime calls (ARCHITECTURE.md, "Leases") -----------------------


@dataclass(frozen=True)
class Lease:
    """A session as its owning worker sees it: its fencing `epoch` and what is wanted of it."""

    session_id: uuid.UUID
    epoch: int
    engine: str
    status: str
    desired_state: str
    restart_requested_at: datetime | None
    logout_requested_at: datetime | None
    delete_requested_at: datetime | None
    target_worker_id: uuid.UUID | None = None
    pair_requested_at: datetime | None = None
    pair_phone: str = ""

    @classmethod
    def of(cls, session: Session) -> Lease:
        return cls(
            session.pk,
            session.lease_epoch,
            session.engine,
            session.status,
            session.desired_state,
            session.restart_requested_at,
            session.logout_requested_at,
            session.delete_requested_at,
            session.target_worker_id,
            session.pair_requested_at,
            session.pair_phone,
        )

    def wanted(self) -> tuple:
        """What the owner acts on; a change in it makes the owner look again."""
        return (
            self.desired_state,
            self.restart_requested_at,
            self.logout_requested_at,
            self.delete_requested_at,
            self.target_worker_id,
            self.pair_requested_at,
        )

    @property
    def wants_running(self) -> bool:
        return self.desired_state == DesiredState.RUNNING and self.delete_requested_at is None


def _claimable() -> Q:
    """Sessions a worker should hold: wanted running, or with a logout/delete to carry out."""
    wanted = (
        Q(desired_state=DesiredState.RUNNING)
        | Q(logout_requested_at__isnull=False)
        | Q(delete_requested_at__isnull=False)
    )
    free = Q(worker__isnull=True) | Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=Now())
    return wanted & free


def sessions_claim(
    *, worker_id: uuid.UUID, engines: list[str], limit: int, ttl: float
) -> list[Lease]:
    """Claim up to `limit` free sessions for `worker_id`, each with a new lease epoch.

    `SELECT … FOR UPDATE SKIP LOCKED`: workers claiming at once never wait for each other and never
    claim the same row. Expiry is judged by the database clock (`Now()`).
    """
    if limit <= 0:
        return []
    with transaction.atomic():
        ids = list(
            Session.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(_claimable(), engine__in=engines)
            # A session on its way to another worker waits for that one, unless it is gone.
            .filter(
                Q(target_worker__isnull=True)
                | Q(target_worker_id=worker_id)
                | ~Q(target_worker__status__in=[WorkerStatus.ACTIVE])
            )
            .order_by("lease_expires_at", "created_at")
            .values_list("pk", flat=True)[:limit]
        )
        if not ids:
            return []
        Session.objects.filter(pk__in=ids).update(
            worker_id=worker_id,
            lease_expires_at=Now() + timedelta(seconds=ttl),
            lease_epoch=F("lease_epoch") + 1,
            target_worker=None,
            updated_at=timezone.now(),
        )
        leases = [Lease.of(session) for session in Session.objects.filter(pk__in=ids)]
    failpoint("after_claim")
    return leases


def sessions_renew(
    *, worker_id: uuid.UUID, session_ids: list[uuid.UUID], ttl: float
) -> dict[uuid.UUID, int]:
    """Extend the leases of `session_ids` that `worker_id` still holds; returns {session id:
    epoch} of those. Only sessions the worker actually runs are renewed, so a lease it holds by
    mistake (a crash between claim and start) expires and another worker takes the session.

    A lease that has already expired is not renewed (another worker may have claimed it, or may
    at any moment): its session is missing from the result and the caller must stop it.
    """
    with transaction.atomic():
        held = Session.objects.filter(
            worker_id=worker_id, pk__in=session_ids, lease_expires_at__gt=Now()
        )
        held.update(lease_expires_at=Now() + timedelta(seconds=ttl))
        return dict(held.values_list("pk", "lease_epoch"))


def session_lease(*, session_id: uuid.UUID, epoch: int) -> Lease | None:
    """The session as its owner should see it now, or None when the lease is no longer `epoch`'s
    (or has expired by the database clock)."""
    session = Session.objects.filter(
        pk=session_id, lease_epoch=epoch, lease_expires_at__gt=Now()
    ).first()
    return Lease.of(session) if session else None


def session_release(*, session_id: uuid.UUID, epoch: int) -> bool:
    """Give a session's lease up (fenced): another worker may claim it at once (and is woken)."""
    with transaction.atomic():
        released = Session.objects.filter(pk=session_id, lease_epoch=epoch).update(
            worker=None, lease_expires_at=None, updated_at=timezone.now()
        )
        notify_workers()
    return bool(released)


def sessions_release_all(*, worker_id: uuid.UUID) -> int:
    """Release every lease of a worker in one statement (a graceful stop); wakes the others."""
    with transaction.atomic():
        released = Session.objects.filter(worker_id=worker_id).update(
            worker=None, lease_expires_at=None, updated_at=timezone.now()
        )
        notify_workers()
    return released


def session_request_done(*, session_id: uuid.UUID, epoch: int, request: str) -> None:
    """The owner carried out a restart, logout or pairing-code request: clear it (fenced)."""
    assert request in ("restart_requested_at", "logout_requested_at", "pair_requested_at")
    Session.objects.filter(pk=session_id, lease_epoch=epoch).update(**{request: None})


def session_fail(
    *, session_id: uuid.UUID, epoch: int, worker_id: uuid.UUID | None, code: str, error: str
) -> Session:
    """Unrecoverable: `failed` with a code, and no longer wanted running, so no worker retries it
    until someone starts it again."""
    with transaction.atomic():
        session = session_set_status(
            session_id=session_id,
            status=SessionStatus.FAILED,
            epoch=epoch,
            worker_id=worker_id,
            reason=code,
            error_code=code,
            error=error,
        )
        Session.objects.filter(pk=session_id).update(desired_state=DesiredState.STOPPED)
    return session


def session_delete_owned(*, session_id: uuid.UUID, epoch: int) -> bool:
    """The owner logged a session out whose delete was requested: delete it now (fenced)."""
    session = Session.objects.filter(pk=session_id, lease_epoch=epoch).first()
    if session is None:
        return False
    with transaction.atomic():
        media = list(session.messages.exclude(media="").values_list("media", flat=True))
        session.delete()
        transaction.on_commit(lambda: _delete_files(session_id, media))
    return True


def sessions_owned(*, worker_id: uuid.UUID) -> list[Lease]:
    """Every session `worker_id` holds a lease on, as it should see them now (one query)."""
    return [
        Lease.of(s) for s in Session.objects.filter(worker_id=worker_id, lease_expires_at__gt=Now())
    ]


def notify_workers() -> None:
    """Wake the workers (LISTEN gateway_sessions) when the transaction commits; PostgreSQL
    delivers NOTIFY only on commit, and drops it on rollback. Workers also poll: it is a hint."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify('gateway_sessions', '')")


def session_forget_auth(*, session_id: uuid.UUID, epoch: int) -> None:
    """After a real logout: the auth snapshots are worthless, so they go, and no worker may
    restore them again (fenced; the files are deleted after commit, best effort)."""
    with transaction.atomic():
        updated = Session.objects.filter(pk=session_id, lease_epoch=epoch).update(
            snapshot_key="", snapshot_epoch=None, snapshot_at=None
        )
        if not updated:
            raise LeaseLost(f"session {session_id} is no longer at epoch {epoch}")
        transaction.on_commit(lambda: _delete_tree_safely(str(session_id)))


def _delete_tree_safely(directory: str) -> None:
    try:
        _delete_tree(storages["sessions"], directory)
    except Exception:
        logger.exception("could not delete auth snapshots", extra={"session_id": directory})


class NoWorkerAvailable(Exception):
    """No other active worker can take the session."""


def session_request_migrate(*, session: Session, target: Worker | None = None) -> Session:
    """Move a session to `target`, or to the least loaded other active worker that runs its
    engine. Its owner hands it over (disconnect, snapshot, release) and only the target claims it.
    """
    if target is None:
        # Workers are few: filter their engines here rather than with JSON lookups per backend.
        candidates = (
            Worker.objects.filter(status=WorkerStatus.ACTIVE)
            .exclude(pk=session.worker_id)
            .annotate(load=Count("sessions"))
            .order_by("load", "started_at")
        )
        target = next((w for w in candidates if session.engine in w.engines), None)
    if target is None or target.pk == session.worker_id or target.status != WorkerStatus.ACTIVE:
        raise NoWorkerAvailable("No other active worker can take this session.")
    return _request(session, target_worker=target)


# A phone number as WhatsApp wants it for linking: E.164 with its country code.
E164 = r"^\+[1-9][0-9]{6,14}$"


class NotLinking(Exception):
    """The session is not waiting to be linked (it is linked already, or not running)."""


class PairCodeUnavailable(Exception):
    """The owning worker gave no pairing code in time."""


class PairCodeRateLimited(Exception):
    """Too many pairing codes for this session or number (`PAIR_CODE_RATE`)."""

    def __init__(self, wait: float) -> None:
        super().__init__("Too many pairing codes asked for; try again later.")
        self.wait = wait


def session_pair_code(*, session: Session, phone_number: str) -> dict[str, Any]:
    """Ask the owning worker for a pairing code for `phone_number` (linking without a camera) and
    wait for it (`code`, `expires_at` as a Unix time). The code also arrives like a QR code: in the
    cache, as a `session.pair_code` event and webhook.

    At most `PAIR_CODE_RATE` per session and per number: WhatsApp bans numbers that ask for codes
    in bulk, as for number checks. Raises NotLinking, SessionBeingDeleted, PairCodeRateLimited,
    PairCodeUnavailable."""
    if session.status not in (SessionStatus.STARTING, SessionStatus.SCAN_QR, SessionStatus.PAIRING):
        raise NotLinking(f"The session is {session.status}, not waiting to be linked.")
    rate = settings.PAIR_CODE_RATE
    waits = [
        rate_wait(f"pair_code:session:{session.pk}", rate),
        rate_wait(f"pair_code:number:{phone_number}", rate),
    ]
    if any(waits):
        raise PairCodeRateLimited(max(w for w in waits if w))
    asked = time.time()
    _request(session, pair_phone=phone_number, pair_requested_at=timezone.now())
    wait = settings.WORKER_CALL_SECONDS
    code = qr.pair_code_wait(session_id=session.pk, since=asked, timeout=wait)
    if code is None:
        raise PairCodeUnavailable("No pairing code came from the worker in time; try again.")
    return code
