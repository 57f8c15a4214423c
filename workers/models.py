"""The worker registry: one row per `run_worker` (or `serve`) process."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models.functions import Now

from workers.states import WorkerStatus


class WorkerQuerySet(models.QuerySet):
    def expired(self) -> WorkerQuerySet:
        """Workers that claim to be alive but whose heartbeat is older than the lease TTL, judged by
        the database clock (never a worker's wall clock)."""
        ttl = timedelta(seconds=settings.WORKER_LEASE_SECONDS)
        return self.filter(
            status__in=[WorkerStatus.ACTIVE, WorkerStatus.DRAINING],
            last_heartbeat_at__lt=Now() - ttl,
        )


class Worker(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    hostname = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    version = models.CharField(max_length=40, blank=True)
    engines = models.JSONField(default=list, blank=True)
    capacity = models.PositiveIntegerField(default=100)
    status = models.CharField(
        max_length=16, choices=WorkerStatus.choices, default=WorkerStatus.ACTIVE, db_index=True
    )
    # The id the backend gave this worker at registration, used for its heartbeats.
    backend_id = models.CharField(max_length=100, blank=True)
    stats = models.JSONField(
        default=dict, blank=True, help_text="Load figures from the last heartbeat."
    )
    # By the database's clock, as every heartbeat and the dead-worker sweep: a worker whose clock
    # is behind must not look dead from its very first row.
    started_at = models.DateTimeField(db_default=Now())
    last_heartbeat_at = models.DateTimeField(db_default=Now())
    stopped_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.hostname}:{self.pid})" if self.pid else self.name
