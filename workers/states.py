"""A worker's statuses (plain values for the runtime and the API)."""

from __future__ import annotations

from django.db import models


class WorkerStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DRAINING = "draining", "Draining"
    STOPPED = "stopped", "Stopped"
    DEAD = "dead", "Dead"
