from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404

from workers.models import Worker
from workers.states import WorkerStatus


def worker_list(*, filters: dict[str, Any] | None = None) -> QuerySet[Worker]:
    workers = Worker.objects.annotate(session_count=Count("sessions"))
    if filters and filters.get("status"):
        workers = workers.filter(status__in=filters["status"])
    return workers


def worker_get(*, worker_id: Any) -> Worker:
    return get_object_or_404(worker_list(), pk=worker_id)


def worker_find(*, worker_id: Any) -> Worker | None:
    return Worker.objects.filter(pk=worker_id).first()


def worker_alive_on(*, hostname: str) -> bool:
    """Whether the newest worker registered from `hostname` (in Kubernetes: the pod) still
    heartbeats: active or draining, and not older than the lease TTL by the database clock (the
    test other workers use to declare it dead)."""
    newest = Worker.objects.filter(hostname=hostname).order_by("-started_at").first()
    if newest is None or newest.status not in (WorkerStatus.ACTIVE, WorkerStatus.DRAINING):
        return False
    return not Worker.objects.expired().filter(pk=newest.pk).exists()
