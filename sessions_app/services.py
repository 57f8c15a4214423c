"""Every write about a session goes through here.

The API and the admin change what is *wanted* (`desired_state`, restart/logout/delete requests); the
worker that holds a session's lease changes what is *true* (`status`), fenced by its lease epoch.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.core.files.storage import storages
from django.db import IntegrityError, transaction
from django.db.models.functions import Now
from django.utils import timezone

from sessions_app.models import DesiredState, Session, SessionEvent

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
        return Session.objects.create(**fields), True
    try:
        with transaction.atomic():
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
    if not rows.update(**changes):
        raise SessionBeingDeleted(f"Session {session.pk} is being deleted.")
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
    **linked: Any,
) -> Session:
    """Move a session to `status`, fenced by the caller's lease `epoch`, and record the change.

    Raises `LeaseLost` when `epoch` is not the session's current one (the caller must stop its
    connection) and `IllegalTransition` for a change the state machine forbids. Setting the status
    it already has changes nothing and records nothing. `linked` may carry phone_number, jid,
    push_name.
    """
    with transaction.atomic():
        session = Session.objects.select_for_update().get(pk=session_id)
        if session.lease_epoch != epoch:
            raise LeaseLost(f"Session {session_id} is at epoch {session.lease_epoch}, not {epoch}.")
        if session.status == status and not linked:
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
        session.save()
        if source != status:
            SessionEvent.objects.create(
                session=session,
                from_status=source,
                to_status=status,
                reason=reason,
                worker_id=worker_id,
            )
    return session
