"""What is wanted of a session, as the API and the admin ask for it: create, start, stop, restart,
log out, migrate, delete, and a pairing code. Each request is one conditional UPDATE plus a
wake-up for the workers; the owning worker carries it out."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Count
from django.db.models.functions import Now
from django.utils import timezone

from gateway.core.errors import Conflict
from gateway.core.wake import SESSIONS, wake
from sessions_app.models import Session
from sessions_app.services.lease import _delete_files
from sessions_app.states import DesiredState
from workers.models import Worker
from workers.states import WorkerStatus


class SessionBeingDeleted(Conflict):
    """The session is waiting for its worker to log it out and delete it."""

    code = "session_deleting"
    message = "The session is being deleted."


def session_create(
    *,
    external_id: str | None,
    name: str = "",
    engine: str,
    metadata: dict[str, Any] | None = None,
    start: bool = True,
    created_by_key_id: str | None = None,
) -> tuple[Session, bool]:
    """Create a session, or return the existing one with the same `external_id`.

    Returns `(session, created)`. Concurrent creates with one `external_id` make one row: the unique
    index makes the losers fail, and they return the winner's row. `created_by_key_id`: the scoped
    API key creating it (which may then reach it, whatever sessions it is limited to).
    """
    fields = {
        "name": name,
        "engine": engine,
        "metadata": metadata or {},
        "desired_state": DesiredState.RUNNING if start else DesiredState.STOPPED,
        "created_by_key_id": created_by_key_id,
    }
    if external_id is None:
        with transaction.atomic():
            wake(SESSIONS)
            return Session.objects.create(**fields), True
    try:
        with transaction.atomic():
            wake(SESSIONS)
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
            raise SessionBeingDeleted()
        wake(SESSIONS)
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


class NoWorkerAvailable(Conflict):
    """No other active worker can take the session."""

    code = "no_worker_available"
    message = "No other active worker can take this session."


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
        raise NoWorkerAvailable()
    return _request(session, target_worker=target)
