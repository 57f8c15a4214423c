"""The fence: every write a worker makes about a session it holds is conditional on the worker's
lease epoch (a fencing token). `fenced_update` and `fenced_lock` raise `LeaseLost` when another
worker owns the session now, so the caller stops that session's connection instead of fighting
the new owner."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from sessions_app.models import Session


class LeaseLost(Exception):
    """The caller's lease epoch is no longer the session's: another worker owns it now."""


def fenced(session_id: uuid.UUID, epoch: int) -> QuerySet[Session]:
    """The session's row, as long as `epoch` still holds its lease."""
    return Session.objects.filter(pk=session_id, lease_epoch=epoch)


def fenced_update(session_id: uuid.UUID, epoch: int, **fields: Any) -> None:
    """The one fenced write: UPDATE the session's row if `epoch` still holds its lease, else
    raise LeaseLost."""
    if not fenced(session_id, epoch).update(**fields):
        raise LeaseLost(f"Session {session_id} is no longer at epoch {epoch}.")


def fenced_lock(session_id: uuid.UUID, epoch: int) -> Session:
    """The session's row, locked until the transaction ends, if `epoch` still holds its lease
    (else LeaseLost): for writes that must read first, or that change the session's messages.

    Plain SQL (a raw query): every transaction of a worker begins here, and compiling the same
    queryset each time cost a tenth of a worker's CPU per message."""
    key = Session._meta.pk.get_db_prep_value(session_id, connection)  # a uuid, or hex on SQLite
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    session = next(iter(Session.objects.raw(_LOCK + lock, [key, epoch])), None)
    if session is None:
        raise LeaseLost(f"Session {session_id} is no longer at epoch {epoch}.")
    return session


_LOCK = f"SELECT * FROM {Session._meta.db_table} WHERE id = %s AND lease_epoch = %s"  # noqa: S608
