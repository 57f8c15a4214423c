"""The lease protocol, as the worker runtime uses it: claims, renewals, releases, what the owner
should see of a session, and what becomes of the sessions of a worker found dead.

Every write a worker makes about a session it holds goes through the fence (`fence`). Expiry is
judged by the database clock (`Now()`), never a worker's.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.files.storage import storages
from django.db import transaction
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone

from gateway.core.failpoints import failpoint
from gateway.core.wake import SESSIONS, wake
from sessions_app.models import Session
from sessions_app.services.fence import LeaseLost, fenced_lock, fenced_update
from sessions_app.services.status import IllegalTransition, session_set_status
from sessions_app.states import DesiredState, SessionStatus
from workers.states import WorkerStatus

logger = logging.getLogger(__name__)


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
    # Set by a claim that took the session from another worker whose lease had expired (a
    # failover): that worker's id.
    taken_over_from: uuid.UUID | None = None

    @classmethod
    def of(cls, session: Session, taken_over_from: uuid.UUID | None = None) -> Lease:
        return cls(
            session_id=session.pk,
            epoch=session.lease_epoch,
            engine=session.engine,
            status=session.status,
            desired_state=session.desired_state,
            restart_requested_at=session.restart_requested_at,
            logout_requested_at=session.logout_requested_at,
            delete_requested_at=session.delete_requested_at,
            target_worker_id=session.target_worker_id,
            pair_requested_at=session.pair_requested_at,
            pair_phone=session.pair_phone,
            taken_over_from=taken_over_from,
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
    claim the same row. Expiry is judged by the database clock (`Now()`). A session that still
    names another worker is a failover: that worker's lease ran out (released ones name none).

    A session claimed to run is `starting` in the claim's own transaction: nobody ever sees the
    new owner with the old owner's status (`connected` on a worker that has not started it).
    """
    if limit <= 0:
        return []
    with transaction.atomic():
        holders = dict(
            Session.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(_claimable(), engine__in=engines)
            # A session on its way to another worker waits for that one, unless it is gone.
            .filter(
                Q(target_worker__isnull=True)
                | Q(target_worker_id=worker_id)
                | ~Q(target_worker__status__in=[WorkerStatus.ACTIVE])
            )
            .order_by("lease_expires_at", "created_at")
            .values_list("pk", "worker_id")[:limit]
        )
        if not holders:
            return []
        ids = list(holders)
        Session.objects.filter(pk__in=ids).update(
            worker_id=worker_id,
            lease_expires_at=Now() + timedelta(seconds=ttl),
            lease_epoch=F("lease_epoch") + 1,
            target_worker=None,
            updated_at=timezone.now(),
        )
        leases = []
        for session in Session.objects.filter(pk__in=ids):
            holder = holders[session.pk]  # whose lease ran out (None: released; ours: no failover)
            taken_over_from = holder if holder != worker_id else None
            lease = Lease.of(session, taken_over_from)
            if lease.wants_running and not lease.logout_requested_at:
                session = session_set_status(
                    session_id=session.pk,
                    status=SessionStatus.STARTING,
                    epoch=session.lease_epoch,
                    worker_id=worker_id,
                    reason="taken over from a lost worker" if taken_over_from else "claimed",
                )
                lease = Lease.of(session, taken_over_from)
            leases.append(lease)
    failpoint("after_claim")
    return leases


# What a session held by a worker found dead shows until another worker claims it.
_LOST_AS: dict[str, str] = {
    SessionStatus.CONNECTED: SessionStatus.RECONNECTING,
    SessionStatus.SCAN_QR: SessionStatus.STARTING,  # its QR code died with the connection
    SessionStatus.PAIRING: SessionStatus.STARTING,
}


def sessions_of_lost_workers(*, worker_ids: list[uuid.UUID], limit: int = 100) -> int:
    """Up to `limit` sessions still held by the dead workers `worker_ids` (`workers_mark_dead`)
    and showing a live connection are marked as what they are: `reconnecting` (a connected one)
    or `starting` (one that showed a QR or pairing code), with the error `worker_lost`, each
    with its status event and webhook. Until now they showed `connected` up to the moment
    another worker claimed them, and for ever with no other worker. Rows being claimed are
    skipped (the claim makes them `starting` itself). Returns how many were marked: the caller
    repeats until none."""
    with transaction.atomic():
        lost = list(
            Session.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(worker_id__in=worker_ids, status__in=list(_LOST_AS))
            .values_list("pk", "lease_epoch", "status", "worker_id")[:limit]
        )
        for pk, epoch, status, worker_id in lost:
            session_set_status(
                session_id=pk,
                status=_LOST_AS[status],
                epoch=epoch,
                worker_id=worker_id,
                reason="worker_lost",
                error_code="worker_lost",
                error="The worker running this session stopped answering; another worker "
                "takes it over.",
            )
    return len(lost)


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


def session_lease_held(*, session_id: uuid.UUID, epoch: int) -> Lease:
    """`session_lease` for an owner that must stop when it is not the owner any more: LeaseLost
    instead of None."""
    lease = session_lease(session_id=session_id, epoch=epoch)
    if lease is None:
        raise LeaseLost(f"Session {session_id} is no longer at epoch {epoch}.")
    return lease


def session_release(
    *,
    session_id: uuid.UUID,
    epoch: int,
    status: str | None = None,
    reason: str = "",
    worker_id: uuid.UUID | None = None,
) -> None:
    """Give a session's lease up (fenced): another worker may claim it at once (and is woken).
    With `status`, the session reports it in the same transaction (as `session_set_status`; a
    change the state machine refuses is logged and left out): nobody sees it `stopped` on a
    worker that has let it go, or on none while it still shows `connected`."""
    with transaction.atomic():
        if status is not None:
            try:
                session_set_status(
                    session_id=session_id,
                    status=status,
                    epoch=epoch,
                    worker_id=worker_id,
                    reason=reason,
                )
            except IllegalTransition as exc:
                logger.warning("status change refused: %s", exc)
        fenced_update(
            session_id, epoch, worker=None, lease_expires_at=None, updated_at=timezone.now()
        )
        wake(SESSIONS)


def sessions_release_all(*, worker_id: uuid.UUID) -> int:
    """Release every lease of a worker in one statement (a graceful stop); wakes the others."""
    with transaction.atomic():
        released = Session.objects.filter(worker_id=worker_id).update(
            worker=None, lease_expires_at=None, updated_at=timezone.now()
        )
        wake(SESSIONS)
    return released


def session_request_done(*, session_id: uuid.UUID, epoch: int, request: str) -> None:
    """The owner carried out a restart, logout or pairing-code request: clear it (fenced)."""
    assert request in ("restart_requested_at", "logout_requested_at", "pair_requested_at")
    fenced_update(session_id, epoch, **{request: None})


def session_delete_owned(*, session_id: uuid.UUID, epoch: int) -> None:
    """The owner logged a session out whose delete was requested: delete it now (fenced)."""
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        media = list(session.messages.exclude(media="").values_list("media", flat=True))
        session.delete()
        transaction.on_commit(lambda: _delete_files(session_id, media))


def sessions_owned(*, worker_id: uuid.UUID) -> list[Lease]:
    """Every session `worker_id` holds a lease on, as it should see them now (one query)."""
    return [
        Lease.of(s) for s in Session.objects.filter(worker_id=worker_id, lease_expires_at__gt=Now())
    ]


def session_forget_auth(*, session_id: uuid.UUID, epoch: int) -> None:
    """After a real logout: the auth snapshots are worthless, so they go, and no worker may
    restore them again (fenced; the files are deleted after commit, best effort)."""
    with transaction.atomic():
        fenced_update(session_id, epoch, snapshot_key="", snapshot_epoch=None, snapshot_at=None)
        transaction.on_commit(lambda: _delete_tree_safely(str(session_id)))


def _delete_tree_safely(directory: str) -> None:
    try:
        _delete_tree(storages["sessions"], directory)
    except Exception:
        logger.exception("could not delete auth snapshots", extra={"session_id": directory})
