"""What is true about a session, as its owning worker reports it: status changes (checked
against the state machine, recorded and announced) and failures."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from sessions_app import events
from sessions_app.models import Session, SessionEvent
from sessions_app.services.fence import fenced_lock
from sessions_app.states import DesiredState, SessionStatus


class IllegalTransition(Exception):
    def __init__(self, source: str, target: str) -> None:
        super().__init__(f"A session cannot go from {source} to {target}.")
        self.source, self.target = source, target


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
    phone_number: str | None = None,
    jid: str | None = None,
    push_name: str | None = None,
    linked_at: datetime | None = None,
) -> Session:
    """Move a session to `status`, fenced by the caller's lease `epoch`, and record the change:
    a SessionEvent, a `session.status` outbox row and a live push (sessions_app.events).

    Raises `LeaseLost` when `epoch` is not the session's current one (the caller must stop its
    connection) and `IllegalTransition` for a change the state machine forbids. Setting the status
    it already has changes nothing and records nothing, unless a new `qr` or `pair_code` comes
    with it (each is announced). The linked device's `phone_number`, `jid`, `push_name` and
    `linked_at` are written when given (None: left as they are), even with an unchanged status.
    Only fields whose value changes are saved: a new code on a session already showing one
    leaves its row as it is.
    """
    linked: dict[str, object] = {
        name: value
        for name, value in (
            ("phone_number", phone_number),
            ("jid", jid),
            ("push_name", push_name),
            ("linked_at", linked_at),
        )
        if value is not None
    }
    with transaction.atomic():
        session = fenced_lock(session_id, epoch)
        if session.status == status and not (linked or qr or pair_code):
            return session
        if session.status != status and not session.can_transition_to(status):
            raise IllegalTransition(session.status, status)
        source = session.status
        if source != status:  # a new QR code or pairing code is not a change of status
            session.status_changed_at = timezone.now()
        wanted = {"status": status, "last_error": error, "last_error_code": error_code, **linked}
        changed = [field for field, value in wanted.items() if getattr(session, field) != value]
        for field in changed:
            setattr(session, field, wanted[field])
        # Only what changed: a full-row save could put back fields others changed meanwhile
        # (the lease, the desired state). A new QR code on a session already showing one changes
        # nothing in its row (no UPDATE: a tenth of a rotating code's cost).
        if changed:
            session.save(update_fields=[*changed, "status_changed_at", "updated_at"])
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
