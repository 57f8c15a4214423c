"""The worker registry: every write about a Worker row."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Now

from gateway.core.wake import SESSIONS, wake
from workers.models import Worker
from workers.states import WorkerStatus


def worker_register(*, name: str, capacity: int, engines: list[str]) -> Worker:
    return Worker.objects.create(
        name=name or socket.gethostname(),
        hostname=socket.gethostname(),
        pid=os.getpid(),
        version=settings.VERSION,
        engines=engines,
        capacity=capacity,
        status=WorkerStatus.ACTIVE,
    )


def worker_heartbeat(*, worker_id: uuid.UUID, stats: dict[str, Any]) -> str | None:
    """Record that the worker is alive. Returns its status (an operator may have set `draining`),
    or None when the row is gone or was marked dead by others: then its leases are forfeit."""
    with transaction.atomic():
        worker = Worker.objects.select_for_update().filter(pk=worker_id).first()
        if worker is None or worker.status in (WorkerStatus.DEAD, WorkerStatus.STOPPED):
            return None
        Worker.objects.filter(pk=worker_id).update(last_heartbeat_at=Now(), stats=stats)
        return worker.status


def workers_mark_dead() -> list[uuid.UUID]:
    """Any process may do this: workers whose heartbeat is older than the lease TTL are dead.
    Their ids (those this call marked)."""
    with transaction.atomic():
        dead = list(
            Worker.objects.expired()
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
        )
        Worker.objects.filter(pk__in=dead).update(status=WorkerStatus.DEAD, stopped_at=Now())
    return dead


def worker_stopped(*, worker_id: uuid.UUID) -> None:
    Worker.objects.filter(pk=worker_id).update(status=WorkerStatus.STOPPED, stopped_at=Now())


def worker_drain(*, worker: Worker) -> Worker:
    """Ask a worker to hand all its sessions over to others and take no new ones."""
    with transaction.atomic():
        Worker.objects.filter(pk=worker.pk, status=WorkerStatus.ACTIVE).update(
            status=WorkerStatus.DRAINING
        )
        wake(SESSIONS)
    worker.refresh_from_db()
    return worker


def worker_set_backend_id(*, worker_id: uuid.UUID, backend_id: str) -> None:
    Worker.objects.filter(pk=worker_id).update(backend_id=backend_id[:100])
